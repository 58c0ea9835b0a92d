"""The tier Protocols: a hot cache over a warm store of record, with a cold archive below.

Example:
    >>> from memory.tiers.base import HotTier, WarmTier
    >>> from memory.tiers.hot import LruHotTier
    >>> from memory.tiers.memory_warm import InMemoryWarmTier
    >>> isinstance(LruHotTier(), HotTier), isinstance(InMemoryWarmTier(), WarmTier)
    (True, True)
"""

from __future__ import annotations

from collections.abc import Awaitable, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Protocol, runtime_checkable

import msgspec

from memory.records import Memory

__all__ = ["HotTier", "WarmTier", "id_floor", "strip_vector"]


def strip_vector(memory: Memory) -> Memory:
    """The memory without its embedding (what callers of ``get`` see)."""
    return msgspec.structs.replace(memory, vector=b"") if memory.vector else memory


def id_floor(timestamp: float) -> str:
    """The smallest possible memory id created at or after ``timestamp`` (a catch-up cursor).

    Example:
        >>> id_floor(0.001)
        '0000000000010000000000000000000'
    """
    return f"{int(timestamp * 1000):012x}" + "0" * 19


@runtime_checkable
class HotTier(Protocol):
    """A cache in front of the warm tier; never the record of anything."""

    durable: bool

    # Awaitables rather than coroutines, so a tier may hand out a future it
    # settles itself (the Redis tier's batches); ``async def`` methods fit too.
    def get(self, memory_id: str) -> Awaitable[Memory | None]:
        """The cached memory, or None."""
        ...

    def put(self, memory: Memory) -> Awaitable[None]:
        """Cache a memory (its vector is not cached)."""
        ...

    def delete(self, memory_id: str) -> Awaitable[None]:
        """Drop a cached memory."""
        ...

    async def close(self) -> None:
        """Release resources the tier created."""
        ...


@runtime_checkable
class WarmTier(Protocol):
    """The store of record. ``durable`` says whether a returned write survives a crash."""

    durable: bool

    async def start(self) -> None:
        """Connect and migrate."""
        ...

    async def close(self) -> None:
        """Flush pending writes and release resources the tier created."""
        ...

    async def put(self, memory: Memory) -> None:
        """Write one memory; returns only once it is committed (batched with others)."""
        ...

    async def put_many(self, memories: Sequence[Memory]) -> int:
        """Write memories in one transaction, skipping ids already present; returns rows added."""
        ...

    async def get(self, memory_id: str) -> Memory | None:
        """The memory, vector included, or None."""
        ...

    async def delete_many(self, memory_ids: Sequence[str]) -> int:
        """Delete memories; returns how many existed."""
        ...

    async def adjust_score(
        self, memory_id: str, delta: float, now: float, half_life: float
    ) -> Memory | None:
        """Atomically decay the feedback score to ``now`` and add ``delta``."""
        ...

    async def touch(self, accessed: dict[str, float]) -> None:
        """Record last-access times (for tiering by access)."""
        ...

    async def scan(self, *, after: str | None, limit: int) -> list[Memory]:
        """Memories with id greater than ``after``, in id order, vectors included."""
        ...

    async def stale(self, *, before: float, limit: int) -> list[Memory]:
        """Memories created and last read before ``before`` (archive candidates)."""
        ...

    async def expired(self, *, now: float, limit: int) -> list[str]:
        """Ids of memories whose TTL ran out."""
        ...

    def job_lock(self, job: str) -> AbstractAsyncContextManager[bool]:
        """Try to become the one runner of a periodic job; yields whether it did.

        Never waits: a node that does not get the lock skips this run.
        """
        ...

    async def job_cursor(self, job: str) -> str | None:
        """The shared cursor of a job (the last memory id it processed), if any."""
        ...

    async def set_job_cursor(self, job: str, cursor: str) -> None:
        """Record a job's progress for whichever node runs it next."""
        ...
