"""The embedded warm tier: a dict in this process. NOT durable (``durable`` is False).

Used when no PostgreSQL is configured, so that everything runs in one process;
a restart loses every memory, and the coordinator reports that through
:attr:`memory.coordinator.MemoryCoordinator.durable`.

Example:
    >>> import asyncio
    >>> from memory.records import Memory
    >>> async def demo():
    ...     warm = InMemoryWarmTier()
    ...     await warm.put(Memory(id="a", namespace="n", content="x"))
    ...     return [m.id for m in await warm.scan(after=None, limit=10)], warm.durable
    >>> asyncio.run(demo())
    (['a'], False)
"""

from __future__ import annotations

import asyncio
import bisect
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

import msgspec

from memory.records import Memory, effective_score

__all__ = ["InMemoryWarmTier"]


class InMemoryWarmTier:
    """Memories in a dict plus a sorted id list for cursor scans."""

    durable = False

    def __init__(self) -> None:
        self._items: dict[str, Memory] = {}
        self._accessed: dict[str, float] = {}
        self._order: list[str] = []
        self._locks: dict[str, asyncio.Lock] = {}
        self._cursors: dict[str, str] = {}

    async def start(self) -> None:
        """Nothing to connect."""

    async def close(self) -> None:
        """Nothing to release (the data stays for a later start in this process)."""

    def _add(self, memory: Memory) -> bool:
        if memory.id in self._items:
            return False
        self._items[memory.id] = memory
        if not self._order or memory.id > self._order[-1]:
            self._order.append(memory.id)
        else:
            bisect.insort(self._order, memory.id)
        return True

    async def put(self, memory: Memory) -> None:
        """Store one memory (an existing id is kept)."""
        self._add(memory)

    async def put_many(self, memories: Sequence[Memory]) -> int:
        """Store memories; returns how many were new."""
        return sum(self._add(m) for m in memories)

    async def get(self, memory_id: str) -> Memory | None:
        """The memory or None."""
        return self._items.get(memory_id)

    async def delete_many(self, memory_ids: Sequence[str]) -> int:
        """Delete memories; returns how many existed."""
        n = 0
        for memory_id in memory_ids:
            if self._items.pop(memory_id, None) is not None:
                self._accessed.pop(memory_id, None)
                i = bisect.bisect_left(self._order, memory_id)
                del self._order[i]
                n += 1
        return n

    async def adjust_score(
        self, memory_id: str, delta: float, now: float, half_life: float
    ) -> Memory | None:
        """Decay the score to ``now`` and add ``delta``."""
        memory = self._items.get(memory_id)
        if memory is None:
            return None
        score = effective_score(memory.score, memory.score_at, now, half_life) + delta
        memory = msgspec.structs.replace(memory, score=score, score_at=now)
        self._items[memory_id] = memory
        return memory

    async def touch(self, accessed: dict[str, float]) -> None:
        """Record last-access times."""
        for memory_id, at in accessed.items():
            if memory_id in self._items:
                self._accessed[memory_id] = max(at, self._accessed.get(memory_id, 0.0))

    async def scan(self, *, after: str | None, limit: int) -> list[Memory]:
        """Memories with id greater than ``after``, in id order."""
        start = 0 if after is None else bisect.bisect_right(self._order, after)
        return [self._items[i] for i in self._order[start : start + limit]]

    async def stale(self, *, before: float, limit: int) -> list[Memory]:
        """Memories created and last read before ``before``, oldest first."""
        out: list[Memory] = []
        for memory_id in self._order:
            memory = self._items[memory_id]
            if memory.created_at < before and self._accessed.get(memory_id, 0.0) < before:
                out.append(memory)
                if len(out) >= limit:
                    break
        return out

    async def expired(self, *, now: float, limit: int) -> list[str]:
        """Ids whose TTL ran out."""
        out = [m.id for m in self._items.values() if m.expired(now)]
        return out[:limit]

    @asynccontextmanager
    async def job_lock(self, job: str) -> AsyncIterator[bool]:
        """Yield True to one runner of ``job`` at a time in this process, False to others."""
        lock = self._locks.setdefault(job, asyncio.Lock())
        if lock.locked():
            yield False
            return
        async with lock:
            yield True

    async def job_cursor(self, job: str) -> str | None:
        """The job's cursor, if set."""
        return self._cursors.get(job)

    async def set_job_cursor(self, job: str, cursor: str) -> None:
        """Set the job's cursor."""
        self._cursors[job] = cursor
