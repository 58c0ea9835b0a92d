"""Fixtures of the discovery tests: the Consul test server, registries of every kind, Redis."""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from discovery import ConsulRegistry, ConsulSettings, InMemoryRegistry, RedisLease
from tests.consul_server import FakeConsul

REDIS_URL = os.environ.get("SWARM_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
CONSUL_ADDR = os.environ.get("CONSUL_HTTP_ADDR")

# Short timings keep the suite fast; the test server accepts sub-10 s session TTLs.
LOCK_DELAY = 0.3


def skip_or_fail(reason: str) -> None:
    """Skip, except under CI=true where an unreachable server is a failure."""
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"integration server unavailable under CI=true: {reason}")
    pytest.skip(reason)


@pytest.fixture
async def fake_consul() -> AsyncIterator[FakeConsul]:
    async with FakeConsul(session_ttl_min=0.2) as server:
        yield server


def consul_settings(address: str, **kw: Any) -> ConsulSettings:
    host, _, port = address.rpartition(":")
    return ConsulSettings(host=host, port=int(port), lock_delay=LOCK_DELAY, wait=2.0,
                          prefix=f"swarm-test-{secrets.token_hex(4)}", **kw)


RegistryFactory = Callable[[], Awaitable[Any]]


_IT = pytest.mark.integration


@pytest.fixture(params=[
    # The real-agent param is not marked integration: without CONSUL_HTTP_ADDR
    # it is skipped by design, also under CI=true (no Consul binary exists here).
    "memory", pytest.param("consul-fake", marks=_IT), "consul-real",
])
async def registry(request: pytest.FixtureRequest) -> AsyncIterator[Any]:
    """Each Registry implementation, started; closed (and cleaned) after the test."""
    kind = request.param
    if kind == "memory":
        reg: Any = InMemoryRegistry(lock_delay=LOCK_DELAY, deregister_critical_after=0.5)
        await reg.start()
        yield reg
        await reg.close()
        return
    if kind == "consul-fake":
        async with FakeConsul(session_ttl_min=0.2) as server:
            reg = ConsulRegistry(settings=consul_settings(server.address),
                                 deregister_critical_after=0.5)
            await reg.start()
            reg.fake = server
            yield reg
            await reg.close()
        return
    if not CONSUL_ADDR:
        pytest.skip("CONSUL_HTTP_ADDR not set: no real Consul agent to test against")
    addr = CONSUL_ADDR.split("://")[-1]
    reg = ConsulRegistry(settings=consul_settings(addr), deregister_critical_after=60)
    await reg.start()
    yield reg
    await reg.close()


@contextlib.asynccontextmanager
async def _redis() -> AsyncIterator[tuple[Any, str]]:
    """A Redis client and a unique key prefix, cleaned up afterwards."""
    import redis.asyncio as aioredis

    client = aioredis.Redis.from_url(REDIS_URL)
    try:
        await client.ping()
    except Exception as exc:
        await client.aclose()
        skip_or_fail(f"Redis at {REDIS_URL} unreachable: {exc}")
    prefix = f"swarm-test-{secrets.token_hex(6)}"
    try:
        yield client, prefix
    finally:
        keys = [k async for k in client.scan_iter(match=f"{prefix}:*")]
        if keys:
            await client.delete(*keys)
        await client.aclose()


@pytest.fixture
async def redis_env() -> AsyncIterator[tuple[Any, str]]:
    async with _redis() as env:
        yield env


@pytest.fixture(params=[
    "memory", pytest.param("consul-fake", marks=_IT), pytest.param("redis", marks=_IT),
])
async def election(request: pytest.FixtureRequest) -> AsyncIterator[Any]:
    """Each Election implementation (the registries plus the Redis lease)."""
    if request.param == "memory":
        reg = InMemoryRegistry(lock_delay=LOCK_DELAY)
        yield reg
        await reg.close()
    elif request.param == "consul-fake":
        async with FakeConsul(session_ttl_min=0.2) as server:
            creg = ConsulRegistry(settings=consul_settings(server.address))
            await creg.start()
            yield creg
            await creg.close()
    else:
        async with _redis() as (client, prefix):
            yield RedisLease(redis=client, prefix=prefix)
