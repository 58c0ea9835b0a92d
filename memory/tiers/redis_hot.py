"""The Redis hot tier: one hash per memory, expiring after the hot TTL.

A read refreshes the TTL, so memories in use stay hot and the rest age out
(tiering by access). Values are JSON, so a client created with
``decode_responses=True`` works as well as one without.

Example:
    >>> from memory.tiers.redis_hot import RedisHotTier
    >>> RedisHotTier.durable
    False
"""

from __future__ import annotations

from typing import Any

import msgspec
import redis.asyncio as aioredis
from redis.exceptions import RedisError

from memory.records import Memory
from memory.settings import RedisHotSettings
from memory.tiers.base import strip_vector
from swarm.constants import KEY_PREFIX, memory_key
from swarm.errors import TransportError

__all__ = ["RedisHotTier"]

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

    def key(self, memory_id: str) -> str:
        """Redis key of one memory."""
        return memory_key(memory_id, self.prefix)

    async def get(self, memory_id: str) -> Memory | None:
        """The cached memory or None; a hit refreshes its TTL."""
        key = self.key(memory_id)
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                pipe.hget(key, "data")
                pipe.expire(key, self.ttl)
                data, _ = await pipe.execute()
        except (RedisError, OSError) as exc:
            raise TransportError(f"redis hot tier: {exc}") from exc
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
        fields = {
            "data": _encoder.encode(strip_vector(memory)),
            "namespace": memory.namespace,
            "kind": memory.kind.value,
        }
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                pipe.hset(key, mapping=fields)
                pipe.expire(key, self.ttl)
                await pipe.execute()
        except (RedisError, OSError) as exc:
            raise TransportError(f"redis hot tier: {exc}") from exc

    async def delete(self, memory_id: str) -> None:
        """Drop a cached memory."""
        try:
            await self._redis.delete(self.key(memory_id))
        except (RedisError, OSError) as exc:
            raise TransportError(f"redis hot tier: {exc}") from exc

    async def close(self) -> None:
        """Close the client if the tier created it."""
        if self._own:
            await self._redis.aclose()
