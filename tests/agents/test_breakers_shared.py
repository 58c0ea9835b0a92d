"""Circuit breakers shared by every replica of the reliability role, through Redis."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from agents import ApiReliabilityAgent
from agents.breakers import LocalBreakers, RedisBreakers
from agents.messages import CheckCircuit, CircuitStatus, RecordFetch, ReliabilityQuery
from swarm import Swarm
from swarm.agent import Agent
from swarm.errors import TransportError
from tests.servers import require_redis


@pytest.fixture
async def redis() -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(require_redis())
    try:
        yield client
    finally:
        await client.aclose()


@pytest.mark.integration
async def test_replicas_in_two_swarms_share_one_breaker(redis: aioredis.Redis) -> None:
    prefix = f"brk-{secrets.token_hex(4)}"
    now = [1000.0]

    def replica() -> ApiReliabilityAgent:
        store = RedisBreakers(redis, prefix=prefix, failure_threshold=2, cooldown=30.0)
        return ApiReliabilityAgent(store=store, clock=lambda: now[0])

    try:
        async with Swarm(agents=[replica()]) as one, Swarm(agents=[replica()]) as two:
            # Each process sees one failure of the host; together they open its circuit.
            await (await one.submit(RecordFetch(source_id="host:a.example", ok=False,
                                                error="HTTP 503"))).result(timeout=5)
            s: CircuitStatus = await (await two.submit(
                RecordFetch(source_id="host:a.example", ok=False, error="HTTP 502")
            )).result(timeout=5)
            assert s.state.value == "open"
            c: CircuitStatus = await (await one.submit(
                CheckCircuit(source_id="host:a.example"))).result(timeout=5)
            assert not c.allowed
            now[0] += 31
            c = await (await two.submit(CheckCircuit(source_id="host:a.example"))).result(5)
            assert c.allowed and c.state.value == "half_open"
            await (await one.submit(RecordFetch(source_id="host:a.example", ok=True))).result(5)
            report = await (await two.submit(ReliabilityQuery())).result(timeout=5)
        [src] = report.sources
        assert (src.source_id, src.successes, src.failures, src.state.value) == (
            "host:a.example", 1, 2, "closed"
        )
        assert src.last_error == "HTTP 502"
        keys = [k async for k in redis.scan_iter(match=f"{prefix}:*")]
        assert len(keys) == 2  # the breaker and the index: nothing else written
        for k in keys:
            assert 0 < await redis.ttl(k) <= 7 * 24 * 3600
    finally:
        keys = [k async for k in redis.scan_iter(match=f"{prefix}:*")]
        if keys:
            await redis.delete(*keys)


async def test_store_down_is_a_transport_error() -> None:
    client = aioredis.Redis(host="127.0.0.1", port=9, socket_connect_timeout=0.5)
    try:
        with pytest.raises(TransportError, match="circuit-breaker store unavailable"):
            await RedisBreakers(client).allow("x", now=0.0)
    finally:
        await client.aclose()


async def test_local_store_is_per_replica() -> None:
    a, b = LocalBreakers(failure_threshold=1), LocalBreakers(failure_threshold=1)
    await a.record("h", ok=False, now=0.0)
    assert (await a.allow("h", now=1.0))[1] is False
    assert (await b.allow("h", now=1.0))[1] is True


@pytest.mark.integration
async def test_default_bundle_replicas_on_redis_share_breakers(redis: aioredis.Redis) -> None:
    """Two swarms on one Redis, each with the default bundle's agents (no store given):
    a circuit opened through one replica is open for the other."""
    from agents.app import bundle
    from tests.redis.runtime_support import cleanup, make_runtime

    prefix = f"brk-{secrets.token_hex(4)}"

    def reliability(agents: list[Agent]) -> ApiReliabilityAgent:
        [rel] = [a for a in agents if isinstance(a, ApiReliabilityAgent)]
        return rel

    first, second = bundle.make_agents(), bundle.make_agents()
    a, b = reliability(first), reliability(second)
    try:
        async with (
            Swarm(agents=first, runtime=make_runtime(redis, prefix)) as one,
            Swarm(agents=second, runtime=make_runtime(redis, prefix)) as two,
        ):
            for _ in range(3):  # the default failure_threshold
                s: CircuitStatus = await (await one.submit(
                    RecordFetch(source_id="host:down.example", ok=False, error="HTTP 503"),
                    to=f"agent:{a.agent_id}",
                )).result(timeout=10)
            assert s.state.value == "open"
            c: CircuitStatus = await (await two.submit(
                CheckCircuit(source_id="host:down.example"), to=f"agent:{b.agent_id}"
            )).result(timeout=10)
            assert (c.state.value, c.allowed) == ("open", False)
            report = await (await two.submit(
                ReliabilityQuery(), to=f"agent:{b.agent_id}")).result(timeout=10)
            assert [(r.source_id, r.failures) for r in report.sources] == [
                ("host:down.example", 3)
            ]
    finally:
        await cleanup(redis, prefix)
