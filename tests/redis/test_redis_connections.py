"""RedisClients against a real server: three clients, hiredis, retry, block-time safety."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis.utils
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff
from redis.exceptions import TimeoutError as RedisTimeoutError

from swarm.errors import ConfigError, TransportError
from swarm.redis import RedisClients, RedisSettings
from swarm.redis.connections import (
    HiredisPackConnection,
    PipelineConnection,
    close_dedicated,
    dedicated,
)
from tests.redis_server import free_port
from tests.servers import require_redis

pytestmark = pytest.mark.integration


async def _clients(**options: Any) -> AsyncIterator[RedisClients]:
    # A short socket timeout and a longer block time: the case redis-py's
    # defaults get wrong, made fast.
    settings = RedisSettings.from_dsn(
        require_redis(), socket_timeout=0.3, block_time=0.6, retry_attempts=1, **options
    )
    c = await RedisClients.connect(settings)
    yield c
    await c.close()


@pytest.fixture
async def clients() -> AsyncIterator[RedisClients]:
    async for c in _clients():
        yield c


@pytest.fixture
async def fast_clients() -> AsyncIterator[RedisClients]:
    """Clients on the fast path whatever the suite's default: for tests of its mechanics."""
    async for c in _clients(fastpath=True):
        yield c


async def test_three_distinct_clients_with_hiredis_and_explicit_retry(
    clients: RedisClients,
) -> None:
    assert len({id(clients.commands), id(clients.pubsub), id(clients.blocking)}) == 3
    assert redis.utils.HIREDIS_AVAILABLE and clients.hiredis
    assert isinstance(clients.commands, Redis)
    conn = await clients.commands.connection_pool.get_connection()  # type: ignore[no-untyped-call]
    try:
        assert type(conn._parser).__name__ == "_AsyncHiredisParser"
        assert conn.retry.get_retries() == clients.settings.retry_attempts
        assert isinstance(conn.retry._backoff, ExponentialWithJitterBackoff)
    finally:
        await clients.commands.connection_pool.release(conn)
    assert not clients.cluster


async def test_blocking_client_outlives_its_block_time(clients: RedisClients) -> None:
    key = f"swarm-test:{time.time_ns()}:nothing"
    block = clients.settings.block_time
    assert clients.settings.socket_timeout < block < clients.settings.blocking_timeout
    started = time.monotonic()
    assert await clients.blocking.execute_command("BLPOP", key, block) is None
    assert time.monotonic() - started >= block * 0.9
    # The same read on the commands client dies of its socket timeout: the
    # reason the blocking client exists.
    with pytest.raises(RedisTimeoutError):
        await clients.commands.execute_command("BLPOP", key, block)


async def test_commands_work_on_every_client(clients: RedisClients) -> None:
    assert await clients.commands.ping()
    assert await clients.pubsub.ping()
    assert await clients.blocking.ping()


async def test_unreachable_server_is_a_transport_error_without_password() -> None:
    settings = RedisSettings.from_dsn(
        f"redis://u:hunter2@127.0.0.1:{free_port()}/0?retry_attempts=1&socket_connect_timeout=0.5"
    )
    with pytest.raises(TransportError) as info:
        await RedisClients.connect(settings)
    assert "hunter2" not in str(info.value)


async def test_from_clients_derives_a_blocking_client_and_closes_only_that() -> None:
    url = require_redis()
    own = Redis.from_url(url, socket_timeout=0.3)
    try:
        c = RedisClients.from_clients(own, settings=RedisSettings(block_time=0.6))
        assert c.commands is own and c.pubsub is own and c.blocking is not own
        assert (
            await c.blocking.execute_command("BLPOP", f"swarm-test:{time.time_ns()}", 0.6) is None
        )
        await c.close()
        assert await own.ping()  # the caller's client stays open
    finally:
        await own.aclose()


async def test_from_clients_rejects_a_blocking_client_that_would_time_out() -> None:
    with pytest.raises(ConfigError, match="must exceed block_time"):
        RedisClients.from_clients(
            Redis(socket_timeout=1),
            blocking=Redis(socket_timeout=1),
            settings=RedisSettings(block_time=5),
        )


async def test_a_write_the_socket_takes_goes_out_in_the_callers_turn(
    fast_clients: RedisClients, monkeypatch: pytest.MonkeyPatch
) -> None:
    # redis-py bounds each write with asyncio.wait_for (a task and two loop
    # turns per command on Python 3.11); a write the socket takes at once does
    # not need it.
    bounded: list[float] = []
    wait_for = asyncio.wait_for

    async def spy(aw: Any, timeout: float | None) -> Any:
        bounded.append(timeout or 0.0)
        return await wait_for(aw, timeout)

    assert await fast_clients.commands.ping()  # connected (and health-checked) first
    monkeypatch.setattr(asyncio, "wait_for", spy)
    for _ in range(3):
        assert await fast_clients.commands.ping()
    assert bounded == []


async def test_a_backed_up_write_is_bounded_by_the_socket_timeout(
    fast_clients: RedisClients, monkeypatch: pytest.MonkeyPatch
) -> None:
    redis = fast_clients.commands
    assert await redis.ping()
    conn = await redis.connection_pool.get_connection()  # type: ignore[no-untyped-call]
    try:
        assert isinstance(conn, HiredisPackConnection)
        writer = conn._writer
        assert writer is not None
        never = asyncio.Event()

        async def stuck() -> None:
            await never.wait()

        # A peer that stopped reading: bytes stay buffered and drain never ends.
        monkeypatch.setattr(writer.transport, "get_write_buffer_size", lambda: 1 << 20)
        monkeypatch.setattr(writer, "drain", stuck)
        started = time.monotonic()
        with pytest.raises(RedisTimeoutError):
            await conn.send_command("PING")
        assert time.monotonic() - started >= fast_clients.settings.socket_timeout * 0.9
        assert not conn.is_connected  # a write cut short drops the connection
    finally:
        await redis.connection_pool.release(conn)
    monkeypatch.undo()
    assert await redis.ping()  # the pool reconnects


async def test_a_dedicated_client_keeps_one_pool_connection_until_closed(
    clients: RedisClients,
) -> None:
    base = clients.blocking
    pool = base.connection_pool
    own = dedicated(base)
    try:
        ids = {await own.client_id() for _ in range(3)}
        assert len(ids) == 1 and len(pool._in_use_connections) == 1
        # Between its commands the connection stays out of the pool: other
        # users of the pool get another one.
        assert await base.client_id() not in ids
    finally:
        await close_dedicated(own, base)
    assert not pool._in_use_connections
    assert await base.ping()  # the pool itself stays open


async def test_a_dedicated_client_runs_commands_directly_and_retries_a_dropped_connection(
    fast_clients: RedisClients, monkeypatch: pytest.MonkeyPatch
) -> None:
    base = fast_clients.blocking
    own = dedicated(base)
    retried: list[object] = []
    call_with_retry = Retry.call_with_retry

    async def spy(self: Retry, *args: Any, **kwargs: Any) -> Any:
        retried.append(args)
        return await call_with_retry(self, *args, **kwargs)

    monkeypatch.setattr(Retry, "call_with_retry", spy)
    try:
        first = await own.client_id()  # makes the connection: redis-py's path
        retried.clear()
        await own.xadd("dedicated-test", {"f": "v"})
        # Replies are parsed as redis-py parses them (the XREAD callback).
        reply = await own.xread({"dedicated-test": "0"}, count=1)
        assert reply[0][0] == b"dedicated-test" and reply[0][1][0][1] == {b"f": b"v"}
        assert await own.client_id() == first
        assert retried == []  # the live connection: no retry wrapper
        # A connection the server dropped: the command runs again on a new one.
        await base.client_kill_filter(_id=first)
        again = await own.client_id()
        assert again != first and retried  # through redis-py's retrying path
        # Concurrent commands still take turns on the one connection.
        ids = await asyncio.gather(*(own.client_id() for _ in range(5)))
        assert set(ids) == {again}
    finally:
        await base.delete("dedicated-test")
        await close_dedicated(own, base)


# Counts its run, then keeps the server busy past the client's socket timeout.
_SLOW_INCR = """
redis.call('INCR', KEYS[1])
local t0 = redis.call('TIME')
while true do
  local t = redis.call('TIME')
  if (t[1] - t0[1]) * 1000000 + (t[2] - t0[2]) > 400000 then break end
end
return 1
"""


async def test_direct_round_trips_make_exactly_the_attempts_the_retry_policy_allows() -> None:
    # The direct attempt is the policy's first: with no retries, a reply that
    # timed out is an error, not a second run of the command (a script whose
    # reply was lost must not run twice).
    settings = RedisSettings.from_dsn(
        require_redis(), socket_timeout=0.2, retry_attempts=0, fastpath=True
    )
    clients = await RedisClients.connect(settings)
    base = clients.commands
    own = dedicated(base)
    held = PipelineConnection(base)
    counter = f"attempts-test-{time.monotonic_ns()}"
    try:
        await own.ping()  # makes the connection: redis-py's path
        pipe = held.pipeline()
        pipe.ping()
        await pipe.execute()
        with pytest.raises(RedisTimeoutError):
            await own.eval(_SLOW_INCR, 1, counter)
        pipe = held.pipeline()
        pipe.eval(_SLOW_INCR, 1, counter)
        with pytest.raises(RedisTimeoutError):
            await pipe.execute()
        # Each ran once; the next command (which waits out the script) reconnects.
        other = Redis.from_url(require_redis(), socket_timeout=5)
        try:
            assert int(await other.get(counter)) == 2
        finally:
            await other.aclose()
        assert await own.ping()
    finally:
        await base.delete(counter)
        await held.close()
        await close_dedicated(own, base)
        await clients.close()
