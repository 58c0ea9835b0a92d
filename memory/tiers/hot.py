"""The in-process LRU hot tier of the embedded default.

It lives and dies with the process: it is a cache, and says so (``durable``
is False). Operations do no I/O, so they never yield to the event loop.

Example:
    >>> import asyncio
    >>> from memory.records import Memory
    >>> async def demo():
    ...     hot = LruHotTier(capacity=1)
    ...     await hot.put(Memory(id="a", namespace="n", content="x"))
    ...     await hot.put(Memory(id="b", namespace="n", content="y"))
    ...     return await hot.get("a"), (await hot.get("b")).id
    >>> asyncio.run(demo())
    (None, 'b')
"""

from __future__ import annotations

from collections import OrderedDict

from memory.records import Memory
from memory.tiers.base import strip_vector

__all__ = ["LruHotTier"]


class LruHotTier:
    """Least-recently-used cache of memories.

    Args:
        capacity: Entries kept; the least recently used is evicted beyond it.
    """

    durable = False

    def __init__(self, *, capacity: int = 10_000) -> None:
        if capacity <= 0:
            raise ValueError("capacity must be positive")
        self.capacity = capacity
        self._items: OrderedDict[str, Memory] = OrderedDict()

    def __len__(self) -> int:
        return len(self._items)

    async def get(self, memory_id: str) -> Memory | None:
        """The cached memory, or None; marks it recently used."""
        memory = self._items.get(memory_id)
        if memory is not None:
            self._items.move_to_end(memory_id)
        return memory

    async def put(self, memory: Memory) -> None:
        """Cache a memory, evicting the least recently used beyond capacity."""
        self._items[memory.id] = strip_vector(memory)
        self._items.move_to_end(memory.id)
        while len(self._items) > self.capacity:
            self._items.popitem(last=False)

    async def delete(self, memory_id: str) -> None:
        """Drop a cached memory."""
        self._items.pop(memory_id, None)

    async def close(self) -> None:
        """Nothing to release."""
        self._items.clear()
