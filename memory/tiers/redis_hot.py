"""The Redis hot tier: one hash per memory, expiring after the hot TTL.

A read refreshes the TTL, so memories in use stay hot and the rest age out
(tiering by access). Concurrent operations are coalesced into one pipeline
per round trip. Values are JSON, so a client created with
``decode_responses=True`` works as well as one without.

Example:
    >>> from memory.tiers.redis_hot import RedisHotTier
    >>> RedisHotTier.durable
    False
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import time
from typing import Any

import msgspec
import redis.asyncio as aioredis
from redis.exceptions import NoScriptError, RedisError

from memory.records import Memory
from memory.settings import RedisHotSettings
from memory.tiers.base import strip_vector
from swarm.constants import KEY_PREFIX, memory_key
from swarm.errors import TransportError
from swarm.tasks import TaskSet

__all__ = ["RedisHotTier"]

_GET = """
local v = redis.call('HGET', KEYS[1], 'data')
if v then redis.call('EXPIRE', KEYS[1], ARGV[1]) end
return v
"""
_PUT = """
redis.call('HSET', KEYS[1], 'data', ARGV[1], 'namespace', ARGV[2], 'kind', ARGV[3])
redis.call('EXPIRE', KEYS[1], ARGV[4])
return 1
"""
# One command per operation instead of two (HGET/HSET + EXPIRE): the client's
# per-command cost is what bounds throughput.
_LUA = {"get": _GET, "put": _PUT}
_SHA = {name: hashlib.sha1(lua.encode()).hexdigest() for name, lua in _LUA.items()}
_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(Memory)


class RedisHotTier:
    """Memories cached in Redis hashes with a TTL.

    Args:
        redis: An existing ``redis.asyncio`` client (not closed by the tier).
        settings: Used to create a client when ``redis`` is not given.
        prefix: Key prefix (default from ``settings`` or ``swarm``).
        ttl: Seconds a cached memory lives without being read.
    """

    durable = False

    def __init__(
        self,
        *,
        redis: Any = None,
        settings: RedisHotSettings | None = None,
        prefix: str | None = None,
        ttl: int | None = None,
    ) -> None:
        if redis is None and settings is None:
            raise ValueError("pass redis= or settings=")
        self._own = redis is None
        self._redis: Any = redis if redis is not None else aioredis.Redis.from_url(
            settings.url if settings is not None else ""
        )
        self.prefix = prefix or (settings.prefix if settings else KEY_PREFIX)
        self.ttl = ttl or (settings.ttl if settings else 3600)
        self._pending: list[tuple[list[tuple[str, tuple[Any, ...]]], asyncio.Future[Any]]] = []
        self._wake = asyncio.Event()
        self._tasks = TaskSet("memory.redis-hot")

    def key(self, memory_id: str) -> str:
        """Redis key of one memory."""
        return memory_key(memory_id, self.prefix)

    async def _call(self, commands: list[tuple[str, tuple[Any, ...]]]) -> Any:
        """Queue commands for the next pipeline; returns the first command's reply.

        Concurrent callers share one round trip: while a pipeline is in flight
        the next batch accumulates (redis-py costs ~0.3 ms of CPU per command
        round trip, so one pipeline per caller cannot reach tens of thousands
        of operations per second).
        """
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending.append((commands, future))
        self._wake.set()
        if not self._tasks:
            self._tasks.spawn(self._flusher(), name="redis-hot-flusher")
        return await future

    async def _flusher(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            batch, self._pending = self._pending, []
            if not batch:
                continue
            try:
                replies = await self._execute([c for commands, _ in batch for c in commands])
            except asyncio.CancelledError:
                for _, fut in batch:
                    fut.cancel()
                raise
            except Exception as exc:
                # Whatever went wrong, every caller of the batch hears about it:
                # a flusher that died silently would leave them waiting forever.
                error = TransportError(f"redis hot tier: {exc!r}")
                for _, fut in batch:
                    if not fut.done():
                        fut.set_exception(error)
                continue
            i = 0
            for commands, fut in batch:
                reply = replies[i]
                i += len(commands)
                if fut.done():
                    continue
                if isinstance(reply, Exception):
                    fut.set_exception(TransportError(f"redis hot tier: {reply}"))
                else:
                    fut.set_result(reply)

    async def _execute(self, commands: list[tuple[str, tuple[Any, ...]]]) -> list[Any]:
        """Run commands in one pipeline; reload the scripts once if Redis lost them."""
        for attempt in range(2):
            async with self._redis.pipeline(transaction=False) as pipe:
                for name, args in commands:
                    if name in _SHA:
                        pipe.evalsha(_SHA[name], 1, *args)
                    else:
                        getattr(pipe, name)(*args)
                replies: list[Any] = await pipe.execute(raise_on_error=False)
            if len(replies) != len(commands):
                raise RedisError(f"{len(replies)} replies to {len(commands)} commands")
            if attempt == 0 and any(isinstance(r, NoScriptError) for r in replies):
                # First use, or Redis restarted and flushed its script cache.
                for lua in _LUA.values():
                    await self._redis.script_load(lua)
                continue
            return replies
        raise RedisError("scripts missing after reload")

    async def get(self, memory_id: str) -> Memory | None:
        """The cached memory or None; a hit refreshes its TTL."""
        key = self.key(memory_id)
        data = await self._call([("get", (key, self.ttl))])
        if data is None:
            return None
        try:
            return _decoder.decode(data)
        except msgspec.DecodeError:
            # A foreign or corrupt value is a cache miss, not an outage.
            return None

    async def put(self, memory: Memory) -> None:
        """Cache a memory (without its vector) for ``ttl`` seconds."""
        key = self.key(memory.id)
        data = _encoder.encode(strip_vector(memory))
        ttl = self.ttl
        if memory.expires_at is not None:
            # Never cache a memory beyond its own lifetime.
            ttl = max(1, min(ttl, math.ceil(memory.expires_at - time.time())))
        await self._call([("put", (key, data, memory.namespace, memory.kind.value, ttl))])

    async def delete(self, memory_id: str) -> None:
        """Drop a cached memory."""
        await self._call([("delete", (self.key(memory_id),))])

    async def close(self) -> None:
        """Stop the flusher; close the client if the tier created it."""
        await self._tasks.close()
        if self._own:
            await self._redis.aclose()
