"""QueenDiscovery: a Queen with health-aware routing, a fenced epoch and a standby."""

from __future__ import annotations

from discovery import InMemoryRegistry, QueenDiscovery, register_agents
from swarm import InProcessRuntime, Queen
from tests.discovery.test_health_routing import Job, Worker


async def test_queen_wired_to_discovery() -> None:
    registry = InMemoryRegistry(lock_delay=0.1)
    runtime = InProcessRuntime()
    await runtime.start()
    await runtime.register(Worker(agent_id="w1"))
    await runtime.register(Worker(agent_id="w2"))
    instances = await register_agents(registry, runtime.agents(), ttl=5, version="0.1.0")
    assert {i.id for i in instances} == {"w1", "w2"}
    assert instances[0].capabilities == frozenset({"Job"})

    q1 = QueenDiscovery(queen=Queen(runtime=runtime, queen_id="q1"), registry=registry, ttl=2)
    q2 = QueenDiscovery(queen=Queen(runtime=runtime, queen_id="q2"), registry=registry, ttl=2)
    await q1.start()
    await q1.elector.wait_leading(timeout=5)
    await q2.start()
    try:
        assert not q2.leading
        assert [i.id for i in await registry.healthy("queen")] == ["q1", "q2"]
        handle = await q1.queen.submit(Job(n=1))
        await handle.result(timeout=5)
        record = await runtime.ledger.get(handle.task_id)
        assert record is not None and record.epoch == 1  # stamped with the fencing token

        await registry.fail("w1")
        await q1.view.wait_until(lambda: not q1.view.is_healthy("w1"), timeout=5)
        done = [await (await q1.queen.submit(Job(n=i))).result(timeout=5) for i in range(10)]
        assert set(done) == {"w2"}

        await q1.close()  # graceful: steps down and deregisters
        await q2.elector.wait_leading(timeout=5)
        assert q2.queen.intake.epoch() == 2
        assert [i.id for i in await registry.healthy("queen")] == ["q2"]
    finally:
        await q2.close()
        await runtime.stop()
        await registry.close()
