"""Health-aware routing: an instance whose check goes critical gets no new tasks."""

from __future__ import annotations

import asyncio

import pytest

from discovery import HealthRouter, HealthView, Registry, ServiceInstance
from swarm import Agent, InProcessRuntime, Message, Queen, TaskContext, handler
from swarm.errors import NoRouteError
from swarm.runtime import ReplicaInfo, RoleInfo


class Job(Message):
    n: int


class Worker(Agent):
    role = "worker"
    concurrency = 1

    @handler
    async def job(self, msg: Job, ctx: TaskContext) -> str:
        await asyncio.sleep(0.005)  # a little work, so a burst spreads over replicas
        return ctx.agent.agent_id


def roles(*replicas: tuple[str, int, int]) -> dict[str, RoleInfo]:
    return {"worker": RoleInfo("worker", frozenset({"Job"}), tuple(
        ReplicaInfo(aid, "ready", inflight, cap) for aid, inflight, cap in replicas))}


def test_router_steers_around_unhealthy_replicas() -> None:
    sick = {"w1"}
    router = HealthRouter(healthy=lambda aid: aid not in sick)
    assert router.resolve("Job", "", roles(("w1", 0, 1), ("w2", 0, 1))) == "agent:w2"
    assert router.resolve("Job", "role:worker", roles(("w1", 0, 4), ("w2", 3, 4))) == "agent:w2"
    # Busy but healthy still beats idle but sick.
    assert router.resolve("Job", "", roles(("w1", 0, 1), ("w2", 1, 1))) == "agent:w2"
    sick.clear()
    assert router.resolve("Job", "", roles(("w1", 0, 1), ("w2", 0, 1))) == "role:worker"
    sick.update({"w1", "w2"})
    with pytest.raises(NoRouteError, match="no healthy instance of role 'worker'"):
        router.resolve("Job", "", roles(("w1", 0, 1), ("w2", 0, 1)))
    assert router.resolve("Job", "agent:w1", roles(("w1", 0, 1))) == "agent:w1"


async def test_critical_instance_receives_no_new_tasks(registry: Registry) -> None:
    runtime = InProcessRuntime()
    await runtime.start()
    await runtime.register(Worker(agent_id="w1"))
    await runtime.register(Worker(agent_id="w2"))
    ttl = 0.6
    # w1's heartbeat stalls (as a SIGSTOPped process's would); w2 keeps beating.
    await registry.register(ServiceInstance(role="worker", id="w1"), ttl=ttl, keepalive=False)
    await registry.register(ServiceInstance(role="worker", id="w2"), ttl=ttl)
    view = HealthView(registry=registry, roles=["worker"])
    await view.start()
    queen = Queen(runtime=runtime, router=HealthRouter(healthy=view.is_healthy))
    try:
        await view.wait_until(lambda: not view.is_healthy("w1"), timeout=ttl + 3)
        assert view.is_healthy("w2")
        handles = [await queen.submit(Job(n=i)) for i in range(20)]
        done = [await h.result(timeout=10) for h in handles]
        assert set(done) == {"w2"}

        await registry.heartbeat("w1")  # it resumes
        await view.wait_until(lambda: view.is_healthy("w1"), timeout=5)
        handles = [await queen.submit(Job(n=i)) for i in range(20)]
        done = [await h.result(timeout=10) for h in handles]
        assert set(done) == {"w1", "w2"}
    finally:
        await view.close()
        await runtime.stop()
