"""The near-cache of the Redis hot tier stays coherent with writes made elsewhere."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis.asyncio as aioredis

from memory import Memory, MemoryCoordinator, NearCache, RedisHotSettings, RedisHotTier
from swarm.errors import ConfigError
from tests.memory.memory_servers import REDIS_URL
from tests.memory.test_memory_servers import _settings

pytestmark = pytest.mark.integration


async def _until_evicted(near: NearCache, key: str) -> None:
    """Wait (on invalidation messages, not on time) until ``key`` is no longer cached."""
    async with asyncio.timeout(5):
        while near.peek(key):
            await near.next_invalidation()


@pytest.fixture
async def other_client() -> AsyncIterator[aioredis.Redis]:
    """A second client: another process's view of the same Redis."""
    client = aioredis.Redis.from_url(REDIS_URL)
    try:
        yield client
    finally:
        await client.aclose()


async def test_a_write_or_delete_through_one_tier_evicts_the_other_tiers_near_cache(
    redis_client: Any, other_client: Any, redis_prefix: str
) -> None:
    writer = RedisHotTier(redis=other_client, prefix=redis_prefix, ttl=120, near_cache=100)
    reader = RedisHotTier(redis=redis_client, prefix=redis_prefix, ttl=120, near_cache=100)
    assert reader.near is not None
    near = reader.near
    try:
        await near.wait_live()
        key = reader.key("m")
        await writer.put(Memory(id="m", namespace="n", content="v1"))
        assert (got := await reader.get("m")) is not None and got.content == "v1"
        assert near.peek(key)  # the next get is served in-process
        hits = near.hits
        assert await reader.get("m") is got and near.hits == hits + 1

        await writer.put(Memory(id="m", namespace="n", content="v2"))
        await _until_evicted(near, key)
        assert (got := await reader.get("m")) is not None and got.content == "v2"

        await writer.delete("m")
        await _until_evicted(near, key)
        assert await reader.get("m") is None
        assert not near.peek(key)  # misses are not cached

        # A local write is seen at once, before its invalidation comes back.
        await reader.put(Memory(id="m", namespace="n", content="v3"))
        assert (got := await reader.get("m")) is not None and got.content == "v3"
        await reader.put(Memory(id="m", namespace="n", content="v4"))
        assert (got := await reader.get("m")) is not None and got.content == "v4"
    finally:
        await writer.close()
        await reader.close()


async def test_a_read_invalidated_while_in_flight_is_not_cached(
    redis_client: Any, other_client: Any, redis_prefix: str
) -> None:
    tier = RedisHotTier(redis=redis_client, prefix=redis_prefix, ttl=120, near_cache=100)
    assert tier.near is not None
    near = tier.near
    try:
        await near.wait_live()
        key = tier.key("m")
        token = near.begin(key)
        assert token is not None
        stale = Memory(id="m", namespace="n", content="read before the write")
        seen = near.invalidations
        await other_client.hset(key, "data", b"{}")
        async with asyncio.timeout(5):
            while near.invalidations == seen:
                await near.next_invalidation()
        near.fill(key, token, stale)
        assert not near.peek(key)
    finally:
        await tier.close()


async def test_a_lost_tracking_connection_drops_the_cache_and_tracking_resumes(
    redis_client: Any, other_client: Any, redis_prefix: str
) -> None:
    tier = RedisHotTier(redis=redis_client, prefix=redis_prefix, ttl=120, near_cache=100)
    assert tier.near is not None
    near = tier.near
    try:
        await near.wait_live()
        generation, key = near.generation, tier.key("m")
        await tier.put(Memory(id="m", namespace="n", content="old"))
        await _until_evicted(near, key)  # the put's own invalidation
        assert (await tier.get("m")) is not None and near.peek(key)

        # Cut the tracking connection, then change the key: that invalidation is lost.
        await other_client.client_kill_filter(_id=near.client_id)
        await other_client.hset(key, "data", b'{"id":"m","namespace":"n","content":"new"}')
        async with asyncio.timeout(5):
            while near.generation == generation:
                await near.next_invalidation()
        assert near.live and near.client_id
        got = await tier.get("m")
        assert got is not None and got.content == "new"
        assert near.peek(key)  # caching resumed on the new connection
    finally:
        await tier.close()


async def test_feedback_and_forget_through_one_coordinator_reach_the_others_near_cache(
    pg_pool: Any, pg_schema: str, redis_client: Any, other_client: Any, redis_prefix: str
) -> None:
    settings = _settings(pg_schema)
    hot_a = RedisHotTier(redis=redis_client, prefix=redis_prefix, ttl=120, near_cache=100)
    hot_b = RedisHotTier(redis=other_client, prefix=redis_prefix, ttl=120, near_cache=100)
    assert hot_b.near is not None
    near = hot_b.near
    async with (
        MemoryCoordinator(settings=settings, pool=pg_pool, hot=hot_a) as a,
        MemoryCoordinator(settings=settings, pool=pg_pool, hot=hot_b) as b,
    ):
        await near.wait_live()
        mid = await a.store(namespace="n", content="shared finding")
        key = hot_b.key(mid)
        got = await b.get(mid)
        if not near.peek(key):  # filled before a's put was announced: read again
            await _until_evicted(near, key)
            got = await b.get(mid)
        assert got is not None and got.score == 0 and near.peek(key)

        score = await a.feedback(mid, useful=True)
        await _until_evicted(near, key)
        got = await b.get(mid)
        assert got is not None and got.score == score > 0

        assert await a.forget(mid)
        await _until_evicted(near, key)
        assert await b.get(mid) is None


def test_the_near_cache_refuses_redis_cluster_and_a_max_age_beyond_half_the_ttl() -> None:
    cluster = aioredis.RedisCluster(host="127.0.0.1", port=7000)  # never connected
    with pytest.raises(ConfigError, match="Cluster"):
        RedisHotTier(redis=cluster, near_cache=10)
    client = aioredis.Redis.from_url(REDIS_URL)
    with pytest.raises(ConfigError, match="near_max_age"):
        RedisHotTier(redis=client, ttl=60, near_cache=10, near_max_age=31)
    # The default age is cut to fit a short TTL.
    assert RedisHotTier(redis=client, ttl=10, near_cache=10).near is not None
    settings = RedisHotSettings.from_dsn(f"{REDIS_URL}?near_cache=500&ttl=100")
    near = RedisHotTier(redis=client, settings=settings).near
    assert near is not None and (near.capacity, near.max_age) == (500, 30.0)
    assert RedisHotTier(redis=client).near is None  # off by default
