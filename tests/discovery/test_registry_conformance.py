"""One contract, every backend: InMemoryRegistry, ConsulRegistry (test server; a real
agent when CONSUL_HTTP_ADDR is set) and, for leader election, the Redis lease."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from discovery import Election, Registry, ServiceInstance
from swarm.errors import LeadershipLost
from tests.discovery.conftest import LOCK_DELAY
from tests.discovery.util import eventually

TTL = 0.6


def inst(iid: str, role: str = "coder", **kw: Any) -> ServiceInstance:
    return ServiceInstance(role=role, id=iid, **kw)


async def ids(reg: Registry, role: str = "coder") -> list[str]:
    return [i.id for i in await reg.healthy(role)]


async def test_is_a_registry(registry: Registry) -> None:
    assert isinstance(registry, Registry)
    assert isinstance(registry, Election)


async def test_register_lists_typed_instance(registry: Registry) -> None:
    original = inst(
        "c1", address="10.0.0.7", port=8080, tags=("blue",),
        capabilities=frozenset({"Code", "Fix"}), version="1.4.2", metrics_port=9100,
        meta={"zone": "a"},
    )
    await registry.register(original, ttl=5)
    await registry.register(inst("r1", role="reviewer"), ttl=5)
    assert await registry.healthy("coder") == [original]
    assert await ids(registry, "reviewer") == ["r1"]
    assert await registry.healthy("nobody") == []


async def test_ttl_expiry_then_heartbeat_revives(registry: Registry) -> None:
    await registry.register(inst("c1"), ttl=TTL, keepalive=False)
    assert await ids(registry) == ["c1"]

    async def gone() -> bool:
        return await ids(registry) == []

    started = time.monotonic()
    await eventually(gone, within=TTL + 2)
    assert time.monotonic() - started >= TTL * 0.5
    await registry.heartbeat("c1")
    assert await ids(registry) == ["c1"]


async def test_keepalive_keeps_instance_passing(registry: Registry) -> None:
    ttl = 1.0  # heartbeats every ttl/3: a third of a second of slack on a loaded machine
    await registry.register(inst("c1"), ttl=ttl, keepalive=True)
    seen: list[list[str]] = []

    async def observe() -> None:
        async for snapshot in registry.watch("coder"):
            seen.append([i.id for i in snapshot])

    # Absence of a change over several TTLs is the property under test.
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(observe(), timeout=ttl * 3)
    assert seen and all(s == ["c1"] for s in seen), seen


async def test_deregister_is_idempotent(registry: Registry) -> None:
    await registry.register(inst("c1"), ttl=5)
    await registry.deregister("c1")
    await registry.deregister("c1")
    assert await ids(registry) == []


async def test_watch_reports_changes(registry: Registry) -> None:
    snapshots: asyncio.Queue[list[str]] = asyncio.Queue()

    async def observe() -> None:
        async for snapshot in registry.watch("coder"):
            await snapshots.put([i.id for i in snapshot])

    task = asyncio.create_task(observe())
    try:
        assert await asyncio.wait_for(snapshots.get(), 5) == []
        await registry.register(inst("c1"), ttl=TTL, keepalive=False)
        assert await asyncio.wait_for(snapshots.get(), 5) == ["c1"]
        await registry.register(inst("c2"), ttl=30)
        assert await asyncio.wait_for(snapshots.get(), 5) == ["c1", "c2"]
        # c1's TTL runs out: the watcher learns of it without any write.
        assert await asyncio.wait_for(snapshots.get(), TTL + 3) == ["c2"]
        await registry.deregister("c2")
        assert await asyncio.wait_for(snapshots.get(), 5) == []
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_critical_instance_is_deregistered_after_a_while(registry: Registry) -> None:
    if getattr(registry, "deregister_critical_after", 60) > 5:
        pytest.skip("this backend reaps critical services after a minute")
    await registry.register(inst("c1"), ttl=0.3, keepalive=False)

    async def reaped() -> bool:
        # Heartbeating would revive it, so look at the backend's own books.
        fake = getattr(registry, "fake", None)
        if fake is not None:
            return "c1" not in fake.services
        await registry.healthy("coder")  # applies expiry
        return "c1" not in registry._entries  # type: ignore[attr-defined]

    await eventually(reaped, within=5)


async def test_config_keys(registry: Registry) -> None:
    prefix = f"{getattr(getattr(registry, 'settings', None), 'prefix', 'swarm')}/config/"
    key = prefix + "runtime/retry_policy"
    assert await registry.get_config(key) is None
    await registry.put_config(key, b'{"max_attempts": 4}')
    assert await registry.get_config(key) == b'{"max_attempts": 4}'
    await registry.put_config(prefix + "agents/coder/concurrency", b"")
    assert await registry.get_config(prefix + "agents/coder/concurrency") == b""
    await registry.delete_config(key)
    await registry.delete_config(key)
    assert await registry.get_config(key) is None


async def test_watch_config(registry: Registry) -> None:
    prefix = f"{getattr(getattr(registry, 'settings', None), 'prefix', 'swarm')}/config/"
    seen: asyncio.Queue[dict[str, bytes]] = asyncio.Queue()

    async def observe() -> None:
        async for values in registry.watch_config(prefix):
            await seen.put(values)

    task = asyncio.create_task(observe())
    try:
        assert await asyncio.wait_for(seen.get(), 5) == {}
        await registry.put_config(prefix + "a", b"1")
        assert await asyncio.wait_for(seen.get(), 5) == {prefix + "a": b"1"}
        await registry.put_config("elsewhere/x", b"ignored")
        await registry.put_config(prefix + "a", b"2")
        assert await asyncio.wait_for(seen.get(), 5) == {prefix + "a": b"2"}
        await registry.delete_config(prefix + "a")
        assert await asyncio.wait_for(seen.get(), 5) == {}
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await registry.delete_config("elsewhere/x")


# -- leader election: every registry plus the Redis lease ------------------------------
ELECTION_TTL = 0.4


async def test_one_leader_at_a_time(election: Election) -> None:
    a = await election.acquire("queen", "qa", ttl=5)
    assert a is not None and a.holder == "qa" and a.epoch >= 1
    assert await election.acquire("queen", "qb", ttl=5) is None
    assert await election.renew(a) == a
    assert await election.current_epoch("queen") == a.epoch
    await election.release(a)
    await election.release(a)  # idempotent
    b = await election.acquire("queen", "qb", ttl=5)
    assert b is not None and b.epoch > a.epoch
    with pytest.raises(LeadershipLost):
        await election.renew(a)
    await election.release(b)


async def test_elections_are_independent(election: Election) -> None:
    a = await election.acquire("queen", "q1", ttl=5)
    b = await election.acquire("scheduler", "q1", ttl=5)
    assert a is not None and b is not None
    await election.release(a)
    await election.release(b)


async def test_expired_leader_is_replaced_with_higher_epoch(election: Election) -> None:
    a = await election.acquire("queen", "qa", ttl=ELECTION_TTL)
    assert a is not None
    started = time.monotonic()
    b = None
    # Consul may invalidate a session up to 2x its TTL late, then lock-delay applies.
    deadline = started + 2 * ELECTION_TTL + LOCK_DELAY + 3
    while b is None:
        assert time.monotonic() < deadline, "nobody took over the expired lease"
        b = await election.acquire("queen", "qb", ttl=5)
        if b is None:
            await asyncio.sleep(0.05)
    assert time.monotonic() - started >= ELECTION_TTL * 0.9
    assert b.epoch > a.epoch
    with pytest.raises(LeadershipLost):
        await election.renew(a)
    await election.release(a)  # a deposed holder's release must not free b's lock
    assert await election.acquire("queen", "qc", ttl=5) is None
    await election.release(b)
