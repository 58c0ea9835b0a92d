"""Discovery figures: health propagation, failover time, fenced-write cost.

Runs against the Consul test server (tests/consul_server.py) in this process
and the Redis at SWARM_TEST_REDIS_URL (default redis://127.0.0.1:6379/0).

    PYTHONPATH=. python bench/discovery_bench.py      # from the repository root
"""

from __future__ import annotations

import asyncio
import os
import statistics
import time

import structlog

from discovery import (
    ConsulRegistry,
    ConsulSettings,
    FencedWriter,
    HealthView,
    InMemoryRegistry,
    LeaderElector,
    ServiceInstance,
)
from swarm.constants import fenced_key
from tests.consul_server import FakeConsul


def settings(server: FakeConsul, **kw: float) -> ConsulSettings:
    return ConsulSettings(host="127.0.0.1", port=server.port, wait=5.0, prefix="bench", **kw)


async def health_propagation(samples: int = 20) -> None:
    async with FakeConsul() as server:
        reg = ConsulRegistry(settings=settings(server))
        await reg.start()
        await reg.register(ServiceInstance(role="w", id="w1"), ttl=30)
        view = HealthView(registry=reg, roles=["w"])
        await view.start()
        lat = []
        for i in range(samples):
            status = "critical" if i % 2 == 0 else "passing"
            t0 = time.perf_counter()
            await server.set_check("service:w1", status)
            await view.wait_until(
                lambda s=status: view.is_healthy("w1") == (s == "passing"), timeout=5
            )
            lat.append((time.perf_counter() - t0) * 1000)
        await view.close()
        await reg.close()
    print(
        f"health change -> HealthView (Consul blocking query): "
        f"median {statistics.median(lat):.1f} ms, max {max(lat):.1f} ms over {samples}"
    )


async def failover(check_ttl: float, lock_delay: float) -> None:
    async with FakeConsul() as server:
        regs = [ConsulRegistry(settings=settings(server, lock_delay=lock_delay)) for _ in range(2)]
        electors = []
        for i, reg in enumerate(regs):
            await reg.start()
            await reg.register(ServiceInstance(role="queen", id=f"q{i}"), ttl=check_ttl)
            electors.append(
                LeaderElector(
                    election=reg, name="queen", holder=f"q{i}", ttl=10, retry_interval=0.5
                )
            )
        await electors[0].start()
        await electors[0].wait_leading(timeout=5)
        await electors[1].start()
        # Crash q0: its heartbeat and elector stop, nothing is released.
        await regs[0]._tasks.close()
        await electors[0]._tasks.close()
        t0 = time.perf_counter()
        await electors[1].wait_leading(timeout=60)
        took = time.perf_counter() - t0
        print(
            f"failover (check TTL {check_ttl:g} s, lock-delay {lock_delay:g} s, "
            f"session TTL 10 s): {took:.2f} s "
            f"(bound: TTL + lock-delay + 5 = {check_ttl + lock_delay + 5:g} s)"
        )
        electors[0].lease = None
        for e in electors:
            await e.close()
        for r in regs:
            await r.close()


async def fenced_writes(n: int = 2000) -> None:
    import redis.asyncio as aioredis

    client = aioredis.Redis.from_url(
        os.environ.get("SWARM_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
    )
    prefix = f"bench-{os.getpid()}"
    writer = FencedWriter(redis=client, name="queen", prefix=prefix)
    key = fenced_key("queen", "k", prefix)
    await writer.advance(1)
    t0 = time.perf_counter()
    for i in range(n):
        await writer.hset(key, {"f": i}, epoch=1)
    fenced = n / (time.perf_counter() - t0)
    t0 = time.perf_counter()
    for i in range(n):
        await client.hset(key, mapping={"f": i})
    plain = n / (time.perf_counter() - t0)
    keys = [k async for k in client.scan_iter(match=f"{prefix}:*")]
    await client.delete(*keys)
    await client.aclose()
    print(f"sequential HSET: fenced (Lua) {fenced:,.0f}/s vs plain {plain:,.0f}/s")


async def memory_healthy(n: int = 1000) -> None:
    reg = InMemoryRegistry()
    for i in range(n):
        await reg.register(ServiceInstance(role="w", id=f"w{i}"), ttl=60, keepalive=False)
    t0 = time.perf_counter()
    for _ in range(100):
        await reg.healthy("w")
    print(
        f"InMemoryRegistry.healthy() with {n} instances: "
        f"{(time.perf_counter() - t0) * 10:.2f} ms per call"
    )
    await reg.close()


async def main() -> None:
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(40))
    await health_propagation()
    await failover(check_ttl=5.0, lock_delay=1.0)
    await fenced_writes()
    await memory_healthy()


if __name__ == "__main__":
    asyncio.run(main())
