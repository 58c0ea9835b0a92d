"""InMemoryRegistry with an injected clock: TTL, reaping and lock-delay without waiting."""

from __future__ import annotations

import pytest

from discovery import InMemoryRegistry, ServiceInstance
from swarm.errors import LeadershipLost


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_ttl_and_reaping_follow_the_clock() -> None:
    clock = Clock()
    reg = InMemoryRegistry(clock=clock, deregister_critical_after=60)
    await reg.register(ServiceInstance(role="coder", id="c1"), ttl=10, keepalive=False)
    clock.now += 9.9
    assert [i.id for i in await reg.healthy("coder")] == ["c1"]
    clock.now += 0.2
    assert await reg.healthy("coder") == []
    await reg.heartbeat("c1")
    assert [i.id for i in await reg.healthy("coder")] == ["c1"]
    clock.now += 10 + 60
    assert await reg.healthy("coder") == []
    with pytest.raises(KeyError):  # reaped: gone for good
        await reg.heartbeat("c1")
    await reg.close()


async def test_lock_delay_after_expiry_but_not_after_release() -> None:
    clock = Clock()
    reg = InMemoryRegistry(clock=clock, lock_delay=5)
    a = await reg.acquire("queen", "qa", ttl=10)
    assert a is not None
    await reg.release(a)
    b = await reg.acquire("queen", "qb", ttl=10)  # clean release: no delay
    assert b is not None and b.epoch == 2
    clock.now += 10
    assert await reg.acquire("queen", "qc", ttl=10) is None  # expired, lock-delay running
    clock.now += 4.9
    assert await reg.acquire("queen", "qc", ttl=10) is None
    clock.now += 0.2
    c = await reg.acquire("queen", "qc", ttl=10)
    assert c is not None and c.epoch == 3
    with pytest.raises(LeadershipLost):
        await reg.renew(b)
    await reg.close()
