"""A coherent in-process near-cache in front of the Redis hot tier.

Redis server-assisted client-side caching keeps it coherent: one dedicated
connection turns on ``CLIENT TRACKING`` in broadcast mode for the tier's key
prefix, redirected to itself, and subscribes to the invalidation channel.
Every change of a key under the prefix (a put, delete, TTL refresh or expiry
by any client, a ``FLUSHDB``) then evicts the key here.

Coherence rules:

* A read from Redis may be cached only if no invalidation of its key arrived
  while it was in flight: :meth:`NearCache.begin` leaves a pending marker
  that an invalidation (or a local write) removes, and :meth:`NearCache.fill`
  caches only over the marker it was given.
* Nothing is cached or served unless the tracking connection is up; when it
  drops, everything cached is dropped, and caching resumes only after
  tracking is on again on a new connection. A connection that goes silent is
  probed with ``PING`` and given up after a second quiet interval.
* Entries are served for at most ``max_age`` seconds, which bounds staleness
  in cases no protocol can see (a half-open connection not yet detected).

Redis Cluster is not supported: broadcast tracking is per node, and the
redis-py cluster client has no single connection pool to take the tracking
connection from (the tier refuses a cluster client with the near-cache on).

Example:
    >>> from memory.tiers.near_cache import NearCache
    >>> NearCache.__name__
    'NearCache'
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import OrderedDict
from typing import Any

import structlog

from memory.records import Memory
from swarm.constants import CHANNEL_REDIS_INVALIDATE
from swarm.errors import TransportError
from swarm.tasks import TaskSet

__all__ = ["NearCache"]

_log = structlog.get_logger("memory.near-cache")


class _Pending:
    """Marker of a read in flight; replaced by its value unless invalidated first."""

    __slots__ = ()


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class NearCache:
    """Bounded LRU of decoded memories, invalidated by Redis key tracking.

    Args:
        redis: The ``redis.asyncio.Redis`` client of the tier; a connection of
            its own is opened with the client's settings (in RESP2).
        prefix: Key prefix to track (every key cached must start with it).
        capacity: Entries kept; the least recently used is evicted beyond it.
        max_age: Seconds an entry is served without asking Redis again.
        ping_interval: Seconds of silence before the connection is probed.
        retry_delay: First delay before reconnecting (doubles up to 5 s).
    """

    def __init__(
        self,
        *,
        redis: Any,
        prefix: str,
        capacity: int,
        max_age: float,
        ping_interval: float = 5.0,
        retry_delay: float = 0.2,
    ) -> None:
        if capacity <= 0 or max_age <= 0:
            raise ValueError("capacity and max_age must be positive")
        self._redis = redis
        self.prefix = prefix
        self.capacity = capacity
        self.max_age = max_age
        self.ping_interval = ping_interval
        self.retry_delay = retry_delay
        self.live = False
        #: Tracking connections established so far (a reconnect increments it).
        self.generation = 0
        #: Invalidation messages received.
        self.invalidations = 0
        #: Lookups answered from the cache, and not.
        self.hits = 0
        self.misses = 0
        #: Redis client id of the current tracking connection (0 before the first).
        self.client_id = 0
        self._entries: OrderedDict[str, tuple[Memory, float] | _Pending] = OrderedDict()
        self._tick = asyncio.Event()
        self._tasks = TaskSet("memory.near-cache")
        self._conn: Any = None

    def __len__(self) -> int:
        return len(self._entries)

    def ensure_started(self) -> None:
        """Start the tracking connection's task if it is not running."""
        if not self._tasks:
            self._tasks.supervise(self._run, name="tracking")

    async def close(self) -> None:
        """Stop tracking and drop everything cached."""
        await self._tasks.close()
        self._go_dark()

    # -- the cache -------------------------------------------------------------
    def lookup(self, key: str) -> Memory | None:
        """The fresh cached memory of ``key``, or None."""
        entry = self._entries.get(key)
        if entry is None or entry.__class__ is _Pending:
            self.misses += 1
            return None
        memory, fresh_until = entry  # type: ignore[misc]
        if fresh_until < time.monotonic():
            del self._entries[key]
            self.misses += 1
            return None
        self._entries.move_to_end(key)
        self.hits += 1
        return memory

    def peek(self, key: str) -> bool:
        """Whether a value (not a pending read) is cached for ``key``."""
        entry = self._entries.get(key)
        return entry is not None and entry.__class__ is not _Pending

    def begin(self, key: str) -> object | None:
        """Mark a read of ``key`` as in flight; returns the token for :meth:`fill`."""
        if not self.live:
            return None
        entry = self._entries.get(key)
        if entry.__class__ is _Pending:
            return entry
        token = _Pending()
        self._entries[key] = token
        self._entries.move_to_end(key)
        while len(self._entries) > self.capacity:
            self._entries.popitem(last=False)
        return token

    def fill(self, key: str, token: object | None, memory: Memory) -> None:
        """Cache what a read returned, unless ``key`` changed since :meth:`begin`."""
        if token is not None and self._entries.get(key) is token:
            self._entries[key] = (memory, time.monotonic() + self.max_age)

    def abandon(self, key: str, token: object | None) -> None:
        """Forget a read that found nothing or failed."""
        if token is not None and self._entries.get(key) is token:
            del self._entries[key]

    def discard(self, key: str) -> None:
        """Drop ``key`` (a local write; its invalidation arrives later)."""
        self._entries.pop(key, None)

    async def wait_live(self) -> None:
        """Start tracking if needed and wait until it is on (caching can begin)."""
        self.ensure_started()
        while not self.live:
            await self.next_invalidation()

    async def next_invalidation(self) -> None:
        """Wait for the next invalidation message (or a reconnect or disconnect)."""
        await self._tick.wait()

    def _signal(self) -> None:
        tick, self._tick = self._tick, asyncio.Event()
        tick.set()

    def _go_dark(self) -> None:
        self.live = False
        self._entries.clear()
        self._signal()

    # -- the tracking connection -----------------------------------------------
    async def _run(self) -> None:
        delay = self.retry_delay
        while True:
            try:
                await self._track()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                # Any failure means invalidations may have been missed: the
                # cache is dropped (below) and rebuilt once tracking is back.
                _log.warning("near-cache tracking lost; cache dropped", prefix=self.prefix,
                             error=repr(exc))
            finally:
                self._go_dark()
                conn, self._conn = self._conn, None
                if conn is not None:
                    with contextlib.suppress(Exception):  # it is being given up anyway
                        await conn.disconnect()
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)

    async def _track(self) -> None:
        pool = self._redis.connection_pool
        # RESP2 whatever the client uses: invalidations then come as ordinary
        # pub/sub messages on this connection, which redirects them to itself.
        conn = self._conn = pool.connection_class(**{**pool.connection_kwargs, "protocol": 2})
        await conn.connect()
        await conn.send_command("CLIENT", "ID")
        self.client_id = int(await conn.read_response())
        await conn.send_command(
            "CLIENT", "TRACKING", "ON", "REDIRECT", self.client_id, "BCAST", "PREFIX", self.prefix
        )
        await conn.read_response()
        await conn.send_command("SUBSCRIBE", CHANNEL_REDIS_INVALIDATE)
        await conn.read_response()
        self._entries.clear()  # anything cached before is suspect
        self.live = True
        self.generation += 1
        self._signal()
        probing = False
        while True:
            message = await conn.read_response(timeout=self.ping_interval)
            if message is None:
                if probing:
                    raise TransportError("near-cache tracking connection went silent")
                await conn.send_command("PING")
                probing = True
                continue
            probing = False
            if _text(message[0]) != "message":
                continue  # a pong
            keys = message[2]
            self.invalidations += 1
            if keys is None:  # FLUSHDB / FLUSHALL
                self._entries.clear()
            else:
                pop = self._entries.pop
                for key in keys:
                    pop(_text(key), None)
            self._signal()
