"""The Redis hot tier on Redis Cluster: its multi-key scripts share one hash slot."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
from redis.asyncio.cluster import RedisCluster

from memory import Memory, RedisHotTier
from tests.redis_cluster import RedisClusterServers

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def cluster() -> Iterator[RedisClusterServers]:
    with RedisClusterServers.launch() as servers:
        yield servers


async def test_hot_tier_round_trips_concurrent_batches_on_a_cluster(
    cluster: RedisClusterServers,
) -> None:
    client = RedisCluster(host="127.0.0.1", port=cluster.ports[0])
    hot = RedisHotTier(redis=client, prefix="hotcluster", ttl=60)
    try:
        memories = [
            Memory(id=f"m{i}", namespace="ns.cluster", content=f"finding {i}") for i in range(50)
        ]
        # Concurrent callers share one multi-key script per kind and loop turn.
        await asyncio.gather(*(hot.put(m) for m in memories))
        got = await asyncio.gather(*(hot.get(m.id) for m in memories), hot.get("absent"))
        assert [g.content if g else None for g in got] == [m.content for m in memories] + [None]
        # One slot for every key: the scripts would fail with CROSSSLOT otherwise.
        slots = {client.keyslot(hot.key(m.id)) for m in memories}
        assert len(slots) == 1
        assert await client.ttl(hot.key("m0")) > 0
        await asyncio.gather(*(hot.delete(m.id) for m in memories[:25]))
        left = await asyncio.gather(*(hot.get(m.id) for m in memories))
        assert [g is None for g in left] == [True] * 25 + [False] * 25
    finally:
        await hot.close()
        await client.aclose()
