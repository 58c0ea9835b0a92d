"""Redis Cluster: clients from a cluster URL, cluster-wide broadcast, one slot per role."""

from __future__ import annotations

import asyncio
import inspect
import os
from collections.abc import AsyncIterator, Iterator

import pytest
from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster

from swarm import constants
from swarm.messages import Envelope, Kind, new_id
from swarm.redis import RedisBroadcaster, RedisClients, RedisSettings
from tests.redis_cluster import RedisClusterServers

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def cluster() -> Iterator[RedisClusterServers]:
    with RedisClusterServers.launch() as servers:
        yield servers


@pytest.fixture
async def clients(cluster: RedisClusterServers) -> AsyncIterator[RedisClients]:
    c = await RedisClients.connect(RedisSettings.from_dsn(cluster.url, retry_attempts=2))
    yield c
    await c.close()


def _role_keys(role: str, prefix: str) -> list[str]:
    """Every key ``swarm.constants`` derives from a role (new ones are picked up automatically)."""
    keys: list[str] = []
    for name in constants.__all__:
        func = getattr(constants, name)
        if not callable(func):
            continue
        params = list(inspect.signature(func).parameters.values())
        if not params or params[0].name != "role":
            continue
        extra = [p for p in params[1:] if p.default is inspect.Parameter.empty]
        variants: list[list[object]] = [[]]
        for param in extra:
            values: list[object] = (
                list(constants.PRIORITY_BANDS) if param.annotation in (int, "int") else ["x1"]
            )
            variants = [[*v, value] for v in variants for value in values]
        keys.extend(func(role, *v, prefix=prefix) for v in variants)
    return keys


async def test_cluster_url_gives_cluster_clients(clients: RedisClients) -> None:
    assert clients.cluster
    assert isinstance(clients.commands, RedisCluster)
    assert isinstance(clients.blocking, RedisCluster)
    assert isinstance(clients.pubsub, Redis)  # one primary's subscription connections
    assert len(clients.commands.get_primaries()) == 3
    assert await clients.pubsub.ping()


async def test_keys_of_one_role_share_one_slot(clients: RedisClients) -> None:
    prefix = f"t{os.urandom(4).hex()}"
    slots_by_role = {}
    for role in ("scraper", "analyst", "writer", "role-with:colon"):
        keys = _role_keys(role, prefix)
        assert len(keys) >= len(constants.PRIORITY_BANDS) + 2  # streams, dead letters, delayed
        slots = {int(await clients.commands.execute_command("CLUSTER KEYSLOT", k)) for k in keys}
        assert len(slots) == 1, (role, keys, slots)
        slots_by_role[role] = slots.pop()
        # A multi-key script over all of a role's keys runs (no CROSSSLOT).
        touched = await clients.commands.eval(
            "for i, k in ipairs(KEYS) do redis.call('SET', k, i) end return #KEYS", len(keys), *keys
        )
        assert touched == len(keys)
        await clients.commands.delete(*keys)
    # Different roles spread over the cluster rather than piling onto one slot.
    assert len(set(slots_by_role.values())) > 1


async def test_broadcast_reaches_subscribers_on_every_node(
    cluster: RedisClusterServers, clients: RedisClients
) -> None:
    channel = f"swarm-test:{os.urandom(6).hex()}:cluster"
    node_clients = [Redis(host="127.0.0.1", port=port) for port in cluster.ports]
    buses = [
        RedisBroadcaster(
            clients=RedisClients.from_clients(
                clients.commands, pubsub=node, settings=clients.settings
            )
        )
        for node in node_clients
    ]
    received: list[asyncio.Queue[Envelope]] = [asyncio.Queue() for _ in buses]
    try:
        for bus, queue in zip(buses, received, strict=True):
            await bus.start()
            await bus.subscribe(channel, queue.put)
        # Published through the cluster client (one node), and then through
        # each node directly: a plain PUBLISH propagates cluster-wide.
        sent = [Envelope(id=new_id(), kind=Kind.EVENT, type="", sender="test")]
        await buses[0].publish(channel, sent[0])
        for node in node_clients:
            env = Envelope(id=new_id(), kind=Kind.EVENT, type="", sender="test")
            sent.append(env)
            await node.publish(channel, buses[0].codec.encode(env))
        for queue in received:
            got = [await asyncio.wait_for(queue.get(), 5.0) for _ in sent]
            assert sorted(e.id for e in got) == sorted(e.id for e in sent)
    finally:
        for bus in buses:
            await bus.stop()
        for node in node_clients:
            await node.aclose()


async def test_broadcaster_built_from_a_cluster_client(cluster: RedisClusterServers) -> None:
    channel = f"swarm-test:{os.urandom(6).hex()}:cluster"
    client = RedisCluster.from_url(
        cluster.url.replace("redis+cluster://", "redis://").split(",")[0]
    )
    bus = RedisBroadcaster(redis=client, watchdog_interval=0.2)
    try:
        await bus.start()
        queue: asyncio.Queue[Envelope] = asyncio.Queue()
        await bus.subscribe(channel, queue.put)
        await bus.wait_for_pongs(1, timeout=2.0)  # the watchdog works against a cluster node
        env = Envelope(id=new_id(), kind=Kind.EVENT, type="", sender="test")
        await bus.publish(channel, env)
        assert (await asyncio.wait_for(queue.get(), 5.0)).id == env.id
    finally:
        await bus.stop()
        await client.aclose()


async def test_from_clients_derives_a_blocking_cluster_client(cluster: RedisClusterServers) -> None:
    host, port = RedisSettings.from_dsn(cluster.url).nodes[0]
    own = RedisCluster(host=host, port=port, socket_timeout=0.3)
    await own.initialize()
    try:
        c = RedisClients.from_clients(own, settings=RedisSettings(cluster=True, block_time=0.6))
        assert isinstance(c.blocking, RedisCluster) and c.blocking is not own
        key = "{swarm-test}:" + os.urandom(4).hex()
        assert await c.blocking.execute_command("BLPOP", key, 0.6) is None
        await c.close()
        assert await own.ping()  # the caller's client stays open
    finally:
        await own.aclose()


async def test_subscription_moves_to_a_live_node_when_its_node_dies() -> None:
    with RedisClusterServers.launch() as own_cluster:
        settings = RedisSettings.from_dsn(
            own_cluster.url, retry_attempts=1, socket_connect_timeout=0.5, socket_timeout=0.5
        )
        clients = await RedisClients.connect(settings)
        bus = RedisBroadcaster(
            clients=clients, watchdog_interval=0.5, reconnect_backoff=(0.05, 0.2)
        )
        survivors: list[Redis] = []
        try:
            await bus.start()
            channel = f"swarm-test:{os.urandom(6).hex()}:cluster"
            queue: asyncio.Queue[Envelope] = asyncio.Queue()
            await bus.subscribe(channel, queue.put)
            dead = int(clients.pubsub.connection_pool.connection_kwargs["port"])
            own_cluster.kill(dead)
            await bus.wait_for_reconnects(1, timeout=10)
            # Without replicas the cluster is down now, but a keyless PUBLISH
            # still propagates between the surviving nodes.
            survivors = [Redis(port=p) for p in own_cluster.ports if p != dead]
            for node in survivors:
                env = Envelope(id=new_id(), kind=Kind.EVENT, type="", sender="test")
                await node.publish(channel, bus.codec.encode(env))
                assert (await asyncio.wait_for(queue.get(), 5.0)).id == env.id
        finally:
            await bus.stop()
            await clients.close()
            for node in survivors:
                await node.aclose()
