"""Shared memory of the swarm: store, recall, cross-pollination, synthesis, tiers, backup.

:class:`MemoryCoordinator` is the entry point. Tiers, top to bottom:

* hot: :class:`LruHotTier` (in-process) or :class:`RedisHotTier` (hashes with a
  TTL refreshed on read); a cache only, a miss backfills it from below;
* warm: :class:`PostgresWarmTier`, the durable record (``store`` returns after
  its batch committed), or :class:`InMemoryWarmTier` for the embedded default,
  which is NOT durable (``MemoryCoordinator.durable`` is False);
* cold: :class:`ArchiveTier`, gzip JSON Lines segments for memories neither
  created nor read for ``archive_after`` seconds; a read restores them.

Recall runs on :class:`VectorIndex`, an in-process NumPy index of every warm
memory's embedding (:class:`HashingEmbedder` by default), re-ranked with
keyword overlap and decayed feedback. New memories are announced on the
memory-sync channel (:class:`MemoryNotice`); subscribers that were away call
``catch_up(since=cursor)``.

Example:
    >>> import asyncio
    >>> from memory import MemoryCoordinator, MemoryFilter
    >>> async def demo():
    ...     async with MemoryCoordinator() as mem:
    ...         await mem.store(namespace="research.tge", content="Project X TGE on 1 May",
    ...                         author="scout", tags=["tge"], confidence=0.8)
    ...         hits = await mem.recall("project x tge", filters=MemoryFilter(tags=("tge",)))
    ...         return [h.memory.content for h in hits]
    >>> asyncio.run(demo())
    ['Project X TGE on 1 May']
"""

from memory.backup import (
    BACKUP_FORMAT,
    BackupHeader,
    BackupReport,
    export_memories,
    import_memories,
)
from memory.coordinator import MemoryCoordinator, TieringReport
from memory.embedding import Embedder, HashingEmbedder, tokenize, vector_from_bytes, vector_to_bytes
from memory.index import RankWeights, VectorIndex
from memory.records import (
    MAX_CONTENT_BYTES,
    Memory,
    MemoryEvent,
    MemoryFilter,
    MemoryKind,
    MemoryNotice,
    RecallHit,
    effective_score,
    namespace_matches,
    validate_confidence,
    validate_content,
    validate_namespace,
    validate_tags,
    validate_ttl,
)
from memory.schema import Migration, apply_migrations, load_migrations
from memory.settings import MemorySettings, PostgresSettings, RedisHotSettings
from memory.sync import MemoryCallback, MemorySubscription, SyncHub
from memory.synthesis import (
    ExtractiveSummarizer,
    LlmSummarizer,
    Summarizer,
    TopicGroup,
    cite,
    group_by_topic,
)
from memory.tiers import (
    ArchiveTier,
    HotTier,
    InMemoryWarmTier,
    LruHotTier,
    NearCache,
    PostgresWarmTier,
    RedisHotTier,
    WarmTier,
    id_floor,
    strip_vector,
)
from swarm.errors import MemoryStoreError, MemoryUnavailable, MemoryValidationError

__all__ = [
    "BACKUP_FORMAT",
    "MAX_CONTENT_BYTES",
    "ArchiveTier",
    "BackupHeader",
    "BackupReport",
    "Embedder",
    "ExtractiveSummarizer",
    "HashingEmbedder",
    "HotTier",
    "InMemoryWarmTier",
    "LlmSummarizer",
    "LruHotTier",
    "Memory",
    "MemoryCallback",
    "MemoryCoordinator",
    "MemoryEvent",
    "MemoryFilter",
    "MemoryKind",
    "MemoryNotice",
    "MemorySettings",
    "MemoryStoreError",
    "MemorySubscription",
    "MemoryUnavailable",
    "MemoryValidationError",
    "Migration",
    "NearCache",
    "PostgresSettings",
    "PostgresWarmTier",
    "RankWeights",
    "RecallHit",
    "RedisHotSettings",
    "RedisHotTier",
    "Summarizer",
    "SyncHub",
    "TieringReport",
    "TopicGroup",
    "VectorIndex",
    "WarmTier",
    "apply_migrations",
    "cite",
    "effective_score",
    "export_memories",
    "group_by_topic",
    "id_floor",
    "import_memories",
    "load_migrations",
    "namespace_matches",
    "strip_vector",
    "tokenize",
    "validate_confidence",
    "validate_content",
    "validate_namespace",
    "validate_tags",
    "validate_ttl",
    "vector_from_bytes",
    "vector_to_bytes",
]
