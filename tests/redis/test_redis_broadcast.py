"""RedisBroadcaster on a real server: fan-out, rejects, the half-open watchdog, restarts."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator

import msgspec
import pytest
from redis.asyncio import Redis
from structlog.testing import capture_logs

from swarm.codec import Codec
from swarm.errors import RuntimeClosed
from swarm.messages import Envelope, Kind, new_id
from swarm.metrics import REJECTED
from swarm.redis import RedisBroadcaster, RedisClients, RedisSettings
from tests.redis_server import RedisServer
from tests.servers import require_redis
from tests.tcp_proxy import TcpProxy

pytestmark = pytest.mark.integration

WAIT = 5.0  # upper bound for things that take milliseconds


def _channel() -> str:
    return f"swarm-test:{os.urandom(6).hex()}:broadcast"


def _event(text: str = "") -> Envelope:
    return Envelope(id=new_id(), kind=Kind.EVENT, type="", sender="test", error=text or None)


def _rejected(reason: str) -> float:
    return float(REJECTED.labels(reason=reason)._value.get())


class Inbox:
    """Collects envelopes; tests wait for an id to arrive."""

    def __init__(self) -> None:
        self.items: list[Envelope] = []
        self._changed = asyncio.Condition()

    async def __call__(self, envelope: Envelope) -> None:
        async with self._changed:
            self.items.append(envelope)
            self._changed.notify_all()

    async def wait_for(self, envelope_id: str) -> None:
        async with asyncio.timeout(WAIT), self._changed:
            await self._changed.wait_for(lambda: any(e.id == envelope_id for e in self.items))

    @property
    def ids(self) -> list[str]:
        return [e.id for e in self.items]


@pytest.fixture
async def redis_client() -> AsyncIterator[Redis]:
    client = Redis.from_url(require_redis())
    yield client
    await client.aclose()


@pytest.fixture
async def bus(redis_client: Redis) -> AsyncIterator[RedisBroadcaster]:
    broadcaster = RedisBroadcaster(redis=redis_client, codec=Codec(max_bytes=4096))
    await broadcaster.start()
    yield broadcaster
    await broadcaster.stop()


async def test_publish_reaches_every_subscriber_of_every_node(
    bus: RedisBroadcaster, redis_client: Redis
) -> None:
    channel = _channel()
    other = RedisBroadcaster(redis=redis_client)
    await other.start()
    try:
        a, b, c = Inbox(), Inbox(), Inbox()
        await bus.subscribe(channel, a)
        await bus.subscribe(channel, b)
        await other.subscribe(channel, c)
        env = _event()
        # One subscribed connection per broadcaster, however many subscribers.
        assert await bus.publish(channel, env) == 2
        for inbox in (a, b, c):
            await inbox.wait_for(env.id)
            assert inbox.items == [env]
    finally:
        await other.stop()


async def test_closed_subscription_stops_receiving(bus: RedisBroadcaster) -> None:
    channel = _channel()
    a, b = Inbox(), Inbox()
    sub_a = await bus.subscribe(channel, a)
    await bus.subscribe(channel, b)
    first = _event()
    await bus.publish(channel, first)
    await a.wait_for(first.id)
    await sub_a.close()
    await sub_a.close()  # idempotent
    second = _event()
    await bus.publish(channel, second)
    await b.wait_for(second.id)
    assert a.ids == [first.id]


async def test_last_close_unsubscribes_the_channel(
    bus: RedisBroadcaster, redis_client: Redis
) -> None:
    channel = _channel()
    sub = await bus.subscribe(channel, Inbox())
    assert (await redis_client.pubsub_numsub(channel))[0][1] == 1
    await sub.close()

    deadline = time.monotonic() + WAIT  # no event to wait on: poll the server
    while (await redis_client.pubsub_numsub(channel))[0][1] != 0:
        assert time.monotonic() < deadline, "channel still subscribed"
        await asyncio.sleep(0.01)


async def test_bad_messages_are_rejected_counted_logged_and_the_subscriber_goes_on(
    bus: RedisBroadcaster, redis_client: Redis
) -> None:
    channel = _channel()
    inbox = Inbox()
    await bus.subscribe(channel, inbox)
    before = {r: _rejected(r) for r in ("malformed", "foreign", "oversized")}
    with capture_logs() as logs:
        await redis_client.publish(channel, b"\xc1 not msgpack")
        await redis_client.publish(
            channel, msgspec.msgpack.encode({"id": "x", "kind": "no-such-kind"})
        )
        await redis_client.publish(channel, msgspec.msgpack.encode({"hello": "world"}))
        await redis_client.publish(channel, b'{"json": true}')
        await redis_client.publish(channel, msgspec.msgpack.encode(["a", 1]))
        await redis_client.publish(channel, b"\x00" * 5000)  # over the 4 KiB codec limit
        good = _event()
        await bus.publish(channel, good)
        await inbox.wait_for(good.id)
    assert inbox.ids == [good.id]
    assert _rejected("malformed") - before["malformed"] == 3
    assert _rejected("foreign") - before["foreign"] == 2
    assert _rejected("oversized") - before["oversized"] == 1
    rejects = [e for e in logs if e["event"] == "broadcast rejected"]
    assert sorted(e["reason"] for e in rejects) == sorted(
        ["malformed"] * 3 + ["foreign"] * 2 + ["oversized"]
    )
    assert all(e["log_level"] == "warning" and e["channel"] == channel for e in rejects)


async def test_a_failing_subscriber_is_counted_and_keeps_receiving(bus: RedisBroadcaster) -> None:
    channel = _channel()
    inbox = Inbox()

    async def flaky(envelope: Envelope) -> None:
        await inbox(envelope)
        if envelope.error == "boom":
            raise RuntimeError("subscriber bug")

    await bus.subscribe(channel, flaky)
    before = _rejected("subscriber_error")
    bad, good = _event("boom"), _event()
    await bus.publish(channel, bad)
    await bus.publish(channel, good)
    await inbox.wait_for(good.id)
    assert inbox.ids == [bad.id, good.id]
    assert _rejected("subscriber_error") - before == 1


async def test_subscribe_before_start_is_refused(redis_client: Redis) -> None:
    with pytest.raises(RuntimeClosed):
        await RedisBroadcaster(redis=redis_client).subscribe(_channel(), Inbox())


async def test_half_open_subscription_is_detected_and_resubscribed(redis_client: Redis) -> None:
    """Black-hole the subscription's TCP traffic: no FIN, no RST, writes succeed."""
    url = RedisSettings.from_dsn(require_redis())
    interval = 0.6
    async with TcpProxy(url.host, url.port) as proxy:
        proxied = Redis(host="127.0.0.1", port=proxy.port, db=url.db)
        clients = RedisClients.from_clients(proxied)
        bus = RedisBroadcaster(clients=clients, watchdog_interval=interval, pong_timeout=0.2)
        await bus.start()
        try:
            channel = _channel()
            inbox = Inbox()
            await bus.subscribe(channel, inbox)
            before = _event()
            await redis_client.publish(channel, bus.codec.encode(before))
            await inbox.wait_for(before.id)
            # Healthy: the watchdog's pongs arrive, nothing is restarted.
            await bus.wait_for_pongs(2, timeout=interval * 3)
            assert bus.reconnects == 0
            accepted = proxy.accepted

            proxy.blackhole()
            cut_at = time.monotonic()
            await bus.wait_for_reconnects(1, timeout=interval * 2)
            detected = time.monotonic() - cut_at
            assert detected <= interval * 2
            print(f"half-open connection replaced {detected:.3f}s after the cut")
            assert proxy.accepted > accepted  # a fresh connection through the proxy
            proxy.heal()

            after = _event()
            assert await redis_client.publish(channel, bus.codec.encode(after)) >= 1
            await inbox.wait_for(after.id)
            assert inbox.ids == [before.id, after.id]
        finally:
            await bus.stop()
            await clients.close()
            await proxied.aclose()


async def test_broadcast_after_server_restarts_reaches_every_subscriber() -> None:
    with RedisServer.launch() as server:
        settings = RedisSettings.from_dsn(server.url, retry_attempts=3)
        nodes = [await RedisClients.connect(settings) for _ in range(3)]
        buses = [RedisBroadcaster(clients=c, watchdog_interval=1.0) for c in nodes]
        try:
            channel = _channel()
            inboxes = [Inbox() for _ in buses]
            for bus, inbox in zip(buses, inboxes, strict=True):
                await bus.start()
                await bus.subscribe(channel, inbox)
            for restart in (1, 2):
                await server.arestart()
                restarted_at = time.monotonic()
                await asyncio.gather(*(b.wait_for_reconnects(restart, timeout=10) for b in buses))
                assert time.monotonic() - restarted_at < 10
                env = _event()
                assert await buses[0].publish(channel, env) == len(buses)
                for inbox in inboxes:
                    await inbox.wait_for(env.id)
        finally:
            for bus in buses:
                await bus.stop()
            for c in nodes:
                await c.close()


async def test_partition_heals_and_the_subscription_comes_back(redis_client: Redis) -> None:
    """Black-hole old and new connections alike; after heal() the subscriber gets messages."""
    url = RedisSettings.from_dsn(require_redis())
    async with TcpProxy(url.host, url.port) as proxy:
        proxied = Redis(
            host="127.0.0.1",
            port=proxy.port,
            db=url.db,
            socket_timeout=0.3,
            socket_connect_timeout=0.3,
        )
        bus = RedisBroadcaster(
            redis=proxied, watchdog_interval=0.3, pong_timeout=0.2, reconnect_backoff=(0.05, 0.2)
        )
        await bus.start()
        try:
            channel = _channel()
            inbox = Inbox()
            await bus.subscribe(channel, inbox)
            await bus.wait_for_pongs(1, timeout=2.0)
            proxy.blackhole(include_new=True)
            # Connections are accepted and then hang: the watchdog restarts
            # the listener, whose fresh connection attempts time out.
            accepted = proxy.accepted
            deadline = time.monotonic() + WAIT
            while proxy.accepted < accepted + 2:
                assert time.monotonic() < deadline, "no reconnect attempts during the partition"
                await asyncio.sleep(0.02)
            assert bus.reconnects == 0 and not bus.connected
            proxy.heal()
            await bus.wait_for_reconnects(1, timeout=WAIT)
            env = _event()
            assert await redis_client.publish(channel, bus.codec.encode(env)) >= 1
            await inbox.wait_for(env.id)
        finally:
            await bus.stop()
            await proxied.aclose()
