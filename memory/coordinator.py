"""The memory coordinator: what agents (through their context) and users call.

``store`` validates, embeds, commits to the warm tier (the record), then
caches the memory hot, indexes it for recall and announces it on the
memory-sync channel. ``get`` reads hot, then warm, then cold, backfilling the
tiers above on a miss. ``recall`` ranks by semantic similarity, keyword
overlap and decayed feedback. Background jobs (synthesis, tiering) are owned
by a :class:`~swarm.tasks.TaskSet` and stopped by :meth:`MemoryCoordinator.close`.

Example:
    >>> import asyncio
    >>> async def demo():
    ...     async with MemoryCoordinator() as mem:
    ...         mid = await mem.store(namespace="research", content="Solana TGE set for May",
    ...                               author="scout-1", tags=["tge"])
    ...         hits = await mem.recall("when is the solana tge", k=1)
    ...         return hits[0].memory.id == mid, mem.durable
    >>> asyncio.run(demo())
    (True, False)
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from functools import partial
from types import TracebackType
from typing import Any, TypeVar

import msgspec
import numpy as np
import numpy.typing as npt
import structlog

from memory.embedding import Embedder, HashingEmbedder, vector_from_bytes, vector_to_bytes
from memory.index import RankWeights, VectorIndex
from memory.records import (
    Memory,
    MemoryEvent,
    MemoryFilter,
    MemoryKind,
    RecallHit,
    validate_confidence,
    validate_content,
    validate_namespace,
    validate_tags,
    validate_ttl,
)
from memory.settings import MemorySettings
from memory.sync import MemoryCallback, MemorySubscription, SyncHub
from memory.synthesis import ExtractiveSummarizer, Summarizer, group_by_topic
from memory.tiers.archive import ArchiveTier
from memory.tiers.base import HotTier, WarmTier, id_floor, strip_vector
from memory.tiers.hot import LruHotTier
from memory.tiers.memory_warm import InMemoryWarmTier
from memory.tiers.postgres import PostgresWarmTier
from memory.tiers.redis_hot import RedisHotTier
from swarm import tracing
from swarm.errors import MemoryValidationError, SwarmError
from swarm.messages import new_id
from swarm.metrics import REJECTED, memory_histo
from swarm.runtime import Runtime
from swarm.tasks import TaskSet

__all__ = ["MemoryCoordinator", "TieringReport"]

_log = structlog.get_logger("memory.coordinator")

_F = TypeVar("_F", bound=Callable[..., Awaitable[Any]])


def _observed(op: str, tier: str) -> Callable[[_F], _F]:
    """Time an operation into its metrics histogram, inside a span while tracing is on."""

    def wrap(func: _F) -> _F:
        histo = memory_histo(op, tier)
        name = f"memory.{op}"

        @functools.wraps(func)
        async def run(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                if tracing._enabled:
                    with tracing.span(name, tier=tier):
                        return await func(*args, **kwargs)
                return await func(*args, **kwargs)
            finally:
                histo.observe(time.perf_counter() - started)

        return run  # type: ignore[return-value]

    return wrap
_PAGE = 1000
SYNTHESIZER = "memory.synthesizer"


class TieringReport(msgspec.Struct, frozen=True, kw_only=True):
    """What one tiering pass did.

    Attributes:
        expired: Memories dropped because their TTL ran out.
        archived: Memories moved from the warm tier to the cold archive.
    """

    expired: int = 0
    archived: int = 0


class MemoryCoordinator:
    """Shared memory of the swarm.

    Args:
        settings: Behaviour and, when ``warm``/``hot`` are not given, which tiers to build.
        runtime: Runtime whose pub/sub carries memory notices (cross-pollination).
        warm: Store of record (default: PostgreSQL from settings, else in-process, not durable).
        hot: Cache tier (default: Redis from settings, else an in-process LRU).
        archive: Cold tier (default: from ``settings.archive_dir``, else none).
        embedder: Turns text into vectors (default: :class:`HashingEmbedder`).
        summarizer: Writes synthesis text (default: :class:`ExtractiveSummarizer`).
        node_id: Id of this coordinator in notices (default: a new id).
        pool: An existing asyncpg pool for the default PostgreSQL warm tier.
        redis: An existing redis.asyncio client for the default Redis hot tier.
    """

    def __init__(
        self,
        *,
        settings: MemorySettings | None = None,
        runtime: Runtime | None = None,
        warm: WarmTier | None = None,
        hot: HotTier | None = None,
        archive: ArchiveTier | None = None,
        embedder: Embedder | None = None,
        summarizer: Summarizer | None = None,
        node_id: str | None = None,
        pool: Any = None,
        redis: Any = None,
    ) -> None:
        s = self.settings = settings or MemorySettings()
        self.node_id = node_id or f"memory-{new_id()}"
        if warm is None:
            warm = (PostgresWarmTier(pool=pool, settings=s.postgres) if s.postgres
                    else InMemoryWarmTier())
        if hot is None:
            hot = (RedisHotTier(redis=redis, settings=s.redis) if s.redis or redis is not None
                   else LruHotTier(capacity=s.hot_capacity))
        if archive is None and s.archive_dir is not None:
            archive = ArchiveTier(directory=s.archive_dir)
        self.warm: WarmTier = warm
        self.hot: HotTier = hot
        self.archive = archive
        self.embedder: Embedder = embedder or HashingEmbedder(dim=s.embed_dim)
        self.summarizer: Summarizer = summarizer or ExtractiveSummarizer()
        self.index = VectorIndex(
            dim=self.embedder.dim, weights=RankWeights(half_life=s.feedback_half_life)
        )
        self.sync = SyncHub(runtime=runtime, origin=self.node_id, on_remote=self._index_remote)
        self._tasks = TaskSet("memory")
        self._accessed: dict[str, float] = {}
        self._synth_floor = ""
        self._started = False
        self._refreshed_at = 0.0

    @property
    def durable(self) -> bool:
        """Whether a memory ``store`` returned survives a crash (False for the embedded default)."""
        return self.warm.durable

    async def __aenter__(self) -> MemoryCoordinator:
        await self.start()
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def start(self) -> None:
        """Connect and migrate the tiers, load the recall index, start the jobs.

        Raises:
            MemoryUnavailable: The warm tier could not be reached.
        """
        if self._started:
            return
        try:
            await self.warm.start()
            if self.archive is not None:
                await self.archive.start()
            self._refreshed_at = time.time()
            await self._load_index()
        except BaseException:
            # Release what was opened (pool, Redis client) before reporting.
            await self.close()
            raise
        self._synth_floor = id_floor(time.time() - (self.settings.synthesis_interval or 0))
        await self.sync.start()
        s = self.settings
        jobs = (
            ("synth", s.synthesis_interval, self.synthesize_once),
            ("tiering", s.tiering_interval, self.tier_once),
            ("index-refresh", s.index_refresh_interval, self.refresh_index),
        )
        for name, interval, job in jobs:
            if interval:
                self._tasks.supervise(partial(self._every, interval, job), name=name)
        self._started = True

    async def close(self) -> None:
        """Stop the jobs and pub/sub, flush access times, close the tiers."""
        await self._tasks.close()
        await self.sync.close()
        if self._started:
            try:
                await self.warm.touch(self._accessed)
            except SwarmError as exc:
                _log.warning("access times not flushed", error=repr(exc))
        self._accessed.clear()
        await self.hot.close()
        await self.warm.close()
        self._started = False

    async def _every(self, interval: float, job: Callable[[], Awaitable[object]]) -> None:
        while True:
            await asyncio.sleep(interval)
            try:
                await job()
            except Exception as exc:
                # A down database or a full disk must not end the job for good:
                # it is logged and retried at the next interval.
                _log.error("memory job failed", job=getattr(job, "__name__", "?"),
                           error=repr(exc))

    async def _load_index(self) -> None:
        after: str | None = None
        now = time.time()
        while True:
            page = await self.warm.scan(after=after, limit=_PAGE * 10)
            if not page:
                break
            for memory in page:
                if not memory.expired(now):
                    self._index(memory)
            after = page[-1].id

    def _index(self, memory: Memory) -> None:
        vector = vector_from_bytes(memory.vector, self.embedder.dim)
        if not vector.any():
            vector = self.embedder.embed([memory.content])[0]
        self.index.add(memory, vector)

    def _index_remote(self, event: MemoryEvent, memory: Memory) -> None:
        # Keeps this node's recall index in step with changes made elsewhere;
        # a lost notice is repaired by ``refresh_index`` (stores) or is only a
        # stale score until the next restart (feedback).
        if event is MemoryEvent.FORGOTTEN:
            self.index.remove(memory.id)
        elif event is MemoryEvent.SCORED:
            self.index.update(memory)
        elif memory.id not in self.index and not memory.expired(time.time()):
            self._index(memory)

    # The hot tier is a cache: its failures cost misses (or, for a delete while
    # Redis is down, a stale entry until its TTL), never a failed operation.
    async def _hot_put(self, memory: Memory) -> None:
        try:
            await self.hot.put(memory)
        except SwarmError as exc:
            _log.warning("hot tier put failed", memory_id=memory.id, error=repr(exc))

    async def _hot_delete(self, memory_id: str) -> None:
        try:
            await self.hot.delete(memory_id)
        except SwarmError as exc:
            _log.warning("hot tier delete failed", memory_id=memory_id, error=repr(exc))

    # -- the API -----------------------------------------------------------
    def _build(
        self,
        *,
        namespace: str,
        content: str,
        kind: MemoryKind | str,
        author: str,
        task_id: str | None,
        trace_id: str | None,
        tags: Iterable[str],
        confidence: float,
        ttl: float | None,
        sources: Iterable[str],
    ) -> tuple[Memory, npt.NDArray[np.float32]]:
        if not isinstance(kind, MemoryKind):  # the enum's own lookup is slow
            try:
                kind = MemoryKind(kind)
            except ValueError:
                raise MemoryValidationError(f"unknown memory kind {kind!r}") from None
        validate_namespace(namespace)
        validate_content(content, self.settings.max_content_bytes)
        ttl = validate_ttl(ttl)
        now = time.time()
        vector = self.embedder.embed([content])[0]
        memory = Memory(
            id=new_id(), namespace=namespace, content=content, kind=kind, author=author,
            task_id=task_id, trace_id=trace_id, tags=validate_tags(tags),
            confidence=validate_confidence(confidence), created_at=now,
            expires_at=None if ttl is None else now + ttl, score=0.0, score_at=now,
            sources=tuple(sources), vector=vector_to_bytes(vector),
        )
        return memory, vector

    @_observed("store", "warm")
    async def store(
        self,
        *,
        namespace: str,
        content: str,
        kind: MemoryKind | str = MemoryKind.FINDING,
        author: str = "",
        task_id: str | None = None,
        trace_id: str | None = None,
        tags: Iterable[str] = (),
        confidence: float = 1.0,
        ttl: float | None = None,
        sources: Sequence[str] = (),
    ) -> str:
        """Store a memory; returns its id once the warm tier committed it.

        Args:
            namespace: Dotted lowercase name, e.g. ``research.tge``.
            content: The text (at most ``settings.max_content_bytes`` UTF-8 bytes).
            kind: ``finding``, ``observation`` or ``synthesis``.
            author: Id of the storing agent.
            task_id: Task it was learnt in (provenance).
            trace_id: Trace it was learnt in (provenance).
            tags: Lowercase tags.
            confidence: 0..1.
            ttl: Seconds until it is forgotten.
            sources: Ids of the memories it was derived from.

        Raises:
            MemoryValidationError: Bad input; nothing was written.
            MemoryUnavailable: The warm tier did not commit; do not assume it is stored.
        """
        try:
            memory, vector = self._build(
                namespace=namespace, content=content, kind=kind, author=author,
                task_id=task_id, trace_id=trace_id, tags=tags, confidence=confidence, ttl=ttl,
                sources=sources,
            )
        except MemoryValidationError:
            REJECTED.labels(reason="memory_invalid").inc()
            raise
        await self.warm.put(memory)
        light = strip_vector(memory)
        self.index.add(light, vector)
        await self._hot_put(light)
        # Remote coordinators index the notice, so it carries the vector.
        await self.sync.publish(memory if self.sync.runtime is not None else light)
        return memory.id

    async def get(self, memory_id: str) -> Memory | None:
        """The memory (without its vector), from the hottest tier that has it.

        A hot miss backfills the hot tier from the warm one; a warm miss
        restores the memory from the archive into the warm tier and the index.
        """
        if tracing._enabled:
            with tracing.span("memory.get"):
                return await self._get(memory_id)
        return await self._get(memory_id)

    async def _get(self, memory_id: str) -> Memory | None:
        started = time.perf_counter()
        now = time.time()
        memory: Memory | None = None
        tier = "hot"
        try:
            memory = await self.hot.get(memory_id)
        except SwarmError as exc:
            _log.warning("hot tier get failed", memory_id=memory_id, error=repr(exc))
        if memory is None:
            tier = "warm"
            memory = await self.warm.get(memory_id)
            if memory is None and self.archive is not None:
                tier = "cold"
                memory = await self.archive.get(memory_id)
                if memory is not None and not memory.expired(now):
                    await self.warm.put_many([memory])
                    self._index(memory)
            if memory is not None and not memory.expired(now):
                await self._hot_put(memory)
        memory_histo("get", tier if memory is not None else "miss").observe(
            time.perf_counter() - started
        )
        # Inlined expired() and strip_vector(): this is the hottest path of all.
        if memory is None or (memory.expires_at is not None and now >= memory.expires_at):
            return None
        self._accessed[memory_id] = now
        return strip_vector(memory) if memory.vector else memory

    @_observed("recall", "index")
    async def recall(
        self, query: str, *, k: int = 10, filters: MemoryFilter | None = None
    ) -> list[RecallHit]:
        """The ``k`` memories most relevant to ``query``, best first.

        Relevance mixes cosine similarity of embeddings, the fraction of query
        words found in the content, and the decayed feedback score.
        """
        if k <= 0:
            return []
        now = time.time()
        vector = self.embedder.embed([query])[0]
        hits = self.index.search(query, vector, k=k, flt=filters, now=now)
        for hit in hits:
            self._accessed[hit.memory.id] = now
        return hits

    @_observed("feedback", "warm")
    async def feedback(self, memory_id: str, *, useful: bool) -> float:
        """Raise (useful) or lower a memory's score; returns the new score.

        Scores decay with ``settings.feedback_half_life``, so old praise fades.

        Raises:
            KeyError: No such memory in the warm tier.
        """
        s = self.settings
        delta = s.feedback_step if useful else -s.feedback_step
        memory = await self.warm.adjust_score(memory_id, delta, time.time(), s.feedback_half_life)
        if memory is None:
            raise KeyError(memory_id)
        light = strip_vector(memory)
        self.index.update(light)
        await self._hot_put(light)
        await self.sync.publish(light, MemoryEvent.SCORED)
        return memory.score

    @_observed("forget", "all")
    async def forget(self, memory_id: str) -> bool:
        """Delete a memory from every tier; returns whether it existed anywhere."""
        known = self.index.get(memory_id)
        existed = await self.warm.delete_many([memory_id]) > 0
        if self.archive is not None:
            existed = await self.archive.delete(memory_id) or existed
        existed = self.index.remove(memory_id) or existed
        self._accessed.pop(memory_id, None)
        await self._hot_delete(memory_id)
        if existed:
            stub = known or Memory(id=memory_id, namespace="forgotten", content="-")
            await self.sync.publish(stub, MemoryEvent.FORGOTTEN)
        return existed

    # -- cross-pollination -------------------------------------------------------
    def subscribe(
        self,
        callback: MemoryCallback,
        *,
        filters: MemoryFilter | None = None,
        name: str = "",
        cursor: str | None = None,
    ) -> MemorySubscription:
        """Receive new memories matching ``filters`` as they are stored (at-most-once).

        Use :meth:`catch_up` with the subscription's ``cursor`` after a gap.
        """
        sub = MemorySubscription(name=name, flt=filters or MemoryFilter(), callback=callback)
        sub.cursor = cursor
        return self.sync.add(sub)

    async def catch_up(
        self, *, since: str | None, filters: MemoryFilter | None = None, limit: int = 1000
    ) -> list[Memory]:
        """Memories stored after the ``since`` cursor (a memory id), oldest first.

        Ids sort by creation time, so ``since`` may be the last id seen, or
        :func:`memory.tiers.id_floor` of a time. Vectors are left out.

        An id is taken before its batch commits, so a store still in flight
        can land just below a cursor already handed out; when that matters,
        catch up from ``id_floor`` of a few seconds before and skip known ids.
        """
        out: list[Memory] = []
        after = since
        now = time.time()
        while len(out) < limit:
            page = await self.warm.scan(after=after, limit=_PAGE)
            if not page:
                break
            out.extend(
                strip_vector(m) for m in page
                if not m.expired(now) and (filters is None or filters.matches(m))
            )
            after = page[-1].id
        return out[:limit]

    # -- background jobs ----------------------------------------------------------
    async def refresh_index(self) -> int:
        """Index memories other nodes stored whose notices never arrived; returns how many.

        Pub/sub is at-most-once, so the recall index of a node re-reads the
        recent part of the warm tier (since the previous run, minus
        ``settings.index_refresh_overlap``).
        """
        started = time.time()
        after: str | None = id_floor(self._refreshed_at - self.settings.index_refresh_overlap)
        added = 0
        while page := await self.warm.scan(after=after, limit=_PAGE):
            for memory in page:
                if memory.id not in self.index and not memory.expired(started):
                    self._index(memory)
                    added += 1
            after = page[-1].id
        self._refreshed_at = started
        return added

    async def synthesize_once(self) -> list[str]:
        """Synthesise the findings stored since the last run; returns the new memory ids.

        One node at a time runs it (a lock in the warm tier); the cursor lives
        in the warm tier too, so whichever node runs next resumes from it. A
        crash between storing a synthesis and saving the cursor may repeat a
        synthesis, never skip one.
        """
        async with self.warm.job_lock("synthesis") as held:
            if not held:
                return []
            cursor = await self.warm.job_cursor("synthesis") or self._synth_floor
            start = cursor
            recent: list[Memory] = []
            while page := await self.warm.scan(after=cursor, limit=_PAGE):
                recent.extend(m for m in page if m.kind is MemoryKind.FINDING)
                cursor = page[-1].id
            ids: list[str] = []
            for group in group_by_topic(recent, min_size=self.settings.synthesis_min_sources):
                text = await self.summarizer.summarize(group.topic, group.memories)
                text = text[: self.settings.max_content_bytes // 4]
                confidence = sum(m.confidence for m in group.memories) / len(group.memories)
                ids.append(await self.store(
                    namespace=group.namespace, content=text, kind=MemoryKind.SYNTHESIS,
                    author=SYNTHESIZER, tags=[group.tag] if group.tag else (),
                    confidence=confidence, sources=[m.id for m in group.memories],
                ))
            if cursor != start:
                await self.warm.set_job_cursor("synthesis", cursor)
            return ids

    async def tier_once(self, *, now: float | None = None) -> TieringReport:
        """Drop expired memories and move stale ones (by age and access) to the archive."""
        now = time.time() if now is None else now
        accessed, self._accessed = self._accessed, {}
        await self.warm.touch(accessed)
        async with self.warm.job_lock("tiering") as held:
            if not held:
                return TieringReport()
            return await self._tier(now)

    async def _tier(self, now: float) -> TieringReport:
        expired = 0
        while ids := await self.warm.expired(now=now, limit=_PAGE):
            expired += await self.warm.delete_many(ids)
            for memory_id in ids:
                self.index.remove(memory_id)
                await self._hot_delete(memory_id)
        archived = 0
        if self.archive is not None:
            before = now - self.settings.archive_after
            while stale := await self.warm.stale(before=before, limit=_PAGE):
                # Archive first, then delete: a crash in between leaves a duplicate,
                # never a loss (the warm copy wins on read).
                await self.archive.archive(stale)
                await self.warm.delete_many([m.id for m in stale])
                for memory in stale:
                    self.index.remove(memory.id)
                    await self._hot_delete(memory.id)
                archived += len(stale)
        return TieringReport(expired=expired, archived=archived)
