"""Settings of the memory coordinator and its tiers (dataclasses with ``from_dsn``).

Environment variables are never read here; the CLI builds these.

Example:
    >>> from memory.settings import PostgresSettings
    >>> s = PostgresSettings.from_dsn("postgresql://postgres@127.0.0.1:5432/test?schema=mem_a")
    >>> s.schema, s.dsn
    ('mem_a', 'postgresql://postgres@127.0.0.1:5432/test')
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from swarm.constants import KEY_PREFIX
from swarm.errors import ConfigError

__all__ = ["MemorySettings", "PostgresSettings", "RedisHotSettings"]

_IDENT = re.compile(r"[a-z_][a-z0-9_]{0,62}")


@dataclass(frozen=True, kw_only=True)
class PostgresSettings:
    """Warm tier on PostgreSQL.

    Attributes:
        dsn: libpq-style URL (without the ``schema`` query parameter).
        schema: Schema holding the tables (created on start).
        min_size: Smallest pool size, when the tier creates its own pool.
        max_size: Largest pool size, when the tier creates its own pool.
        batch_max: Most memories written in one transaction.
        writers: Concurrent batch writers (each holds one connection per batch).
        command_timeout: Seconds before a statement is abandoned.
    """

    dsn: str
    schema: str = "queenswarm_memory"
    min_size: int = 1
    max_size: int = 4
    batch_max: int = 1000
    writers: int = 2
    command_timeout: float = 10.0

    def __post_init__(self) -> None:
        if not _IDENT.fullmatch(self.schema):
            raise ConfigError(f"schema {self.schema!r} is not a lowercase SQL identifier")
        if self.batch_max <= 0 or self.writers <= 0 or self.max_size < self.min_size:
            raise ConfigError("batch_max and writers must be positive, max_size >= min_size")

    @classmethod
    def from_dsn(cls, dsn: str, **overrides: Any) -> PostgresSettings:
        """Parse ``postgresql://...[?schema=name]``; keyword overrides win."""
        parts = urlsplit(dsn)
        if parts.scheme not in ("postgresql", "postgres"):
            raise ConfigError(f"not a PostgreSQL DSN: {dsn!r}")
        query = dict(parse_qsl(parts.query))
        schema = query.pop("schema", None)
        clean = urlunsplit(parts._replace(query=urlencode(query)))
        kwargs: dict[str, Any] = {"dsn": clean}
        if schema:
            kwargs["schema"] = schema
        kwargs.update(overrides)
        return cls(**kwargs)


@dataclass(frozen=True, kw_only=True)
class RedisHotSettings:
    """Hot tier on Redis.

    Attributes:
        url: ``redis://host:port/db``.
        prefix: Key prefix (see :func:`swarm.constants.memory_key`).
        ttl: Seconds a cached memory lives without being read.
        near_cache: Entries of the coherent in-process near-cache in front of
            Redis (see :class:`memory.tiers.near_cache.NearCache`); 0 turns it off.
        near_max_age: Seconds a near-cached memory is served without asking Redis.
        fastpath: Send batches packed by hand (:mod:`swarm.redis.fastpath`) where
            the installed redis-py is verified; False uses redis-py's pipelines;
            None takes :func:`swarm.redis.fastpath.default`.
    """

    url: str
    prefix: str = KEY_PREFIX
    ttl: int = 3600
    near_cache: int = 0
    near_max_age: float = 30.0
    fastpath: bool | None = None

    @classmethod
    def from_dsn(cls, dsn: str, **overrides: Any) -> RedisHotSettings:
        """Parse ``redis://...[?prefix=p&ttl=s&near_cache=n]``; keyword overrides win."""
        parts = urlsplit(dsn)
        if parts.scheme not in ("redis", "rediss", "unix"):
            raise ConfigError(f"not a Redis URL: {dsn!r}")
        query = dict(parse_qsl(parts.query))
        kwargs: dict[str, Any] = {"url": urlunsplit(parts._replace(query=""))}
        if "prefix" in query:
            kwargs["prefix"] = query["prefix"]
        if "ttl" in query:
            kwargs["ttl"] = int(query["ttl"])
        if "near_cache" in query:
            kwargs["near_cache"] = int(query["near_cache"])
        kwargs.update(overrides)
        return cls(**kwargs)


@dataclass(frozen=True, kw_only=True)
class MemorySettings:
    """Behaviour of the coordinator.

    Attributes:
        max_content_bytes: Largest content accepted.
        embed_dim: Dimension of the default embedder.
        hot_capacity: Entries of the in-process LRU hot tier.
        feedback_half_life: Seconds for a feedback score to halve.
        feedback_step: Score added (useful) or removed (not useful) per feedback.
        synthesis_interval: Seconds between synthesis runs; ``None`` disables the job.
        synthesis_min_sources: Findings a topic needs before it is synthesised.
        tiering_interval: Seconds between tiering passes; ``None`` disables the job.
        index_refresh_interval: Seconds between re-reads of recently stored memories
            into the recall index (repairs lost notices); ``None`` disables the job.
        index_refresh_overlap: How far back (seconds) each re-read starts before the
            previous one, to cover clock skew between nodes and slow commits.
        archive_after: Memories neither created nor read for this long go to the archive.
        archive_dir: Directory of the cold archive; ``None`` keeps everything warm.
        postgres: Warm tier settings; ``None`` is the embedded, non-durable default.
        redis: Redis hot tier settings; ``None`` uses the in-process LRU.
    """

    max_content_bytes: int = 32 * 1024
    embed_dim: int = 128
    hot_capacity: int = 10_000
    feedback_half_life: float = 7 * 86400.0
    feedback_step: float = 1.0
    synthesis_interval: float | None = 90.0
    synthesis_min_sources: int = 2
    tiering_interval: float | None = 300.0
    index_refresh_interval: float | None = 30.0
    index_refresh_overlap: float = 60.0
    archive_after: float = 30 * 86400.0
    archive_dir: str | None = None
    postgres: PostgresSettings | None = None
    redis: RedisHotSettings | None = None

    @classmethod
    def from_dsn(cls, dsn: str, **overrides: Any) -> MemorySettings:
        """Settings with the warm tier on the PostgreSQL ``dsn``; keyword overrides win."""
        return replace(cls(postgres=PostgresSettings.from_dsn(dsn)), **overrides)
