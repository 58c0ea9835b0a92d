from __future__ import annotations

import asyncio
import time

import pytest

from swarm import (
    AgentState,
    InProcessRuntime,
    NoRouteError,
    Queen,
    RetryPolicy,
    Swarm,
    TaskDeadLettered,
    TaskExpired,
    TaskState,
)
from tests.fakes import Board, Work, Worker


async def test_intake_stamps_policy_priority_and_deadline() -> None:
    board = Board()
    runtime = InProcessRuntime(retry_policy=RetryPolicy(max_attempts=2, base_delay=0.001, jitter=0))
    queen = Queen(runtime=runtime, max_attempts_by_type={"Work": 4})
    async with Swarm(agents=[Worker(board)], runtime=runtime, queen=queen) as swarm:
        h = await swarm.submit(Work(n=1, mode="fail"))
        with pytest.raises(TaskDeadLettered):
            await h.result(timeout=10)
        rec = await swarm.status(h.task_id)
        assert rec is not None and rec.attempts == 4  # per-type override beat the policy
        h2 = await swarm.submit(Work(n=1, mode="fail"), max_attempts=1)
        with pytest.raises(TaskDeadLettered):
            await h2
        h3 = await swarm.submit(Work(n=1), deadline=time.time() - 1)
        with pytest.raises(TaskExpired):
            await h3.result()
        assert await swarm.submit(Work(n=2), to="worker") is not None  # bare role name
        dead = await queen.dead_letters()
        assert {d.envelope.id for d in dead} == {h.task_id, h2.task_id}


async def test_unroutable_submit_raises_before_accepting() -> None:
    async with Swarm(agents=[]) as swarm:
        with pytest.raises(NoRouteError):
            await swarm.submit(Work(n=1))
        assert await swarm.queen.counts() == {}


async def test_drain_and_shutdown_commands() -> None:
    board = Board()
    a, b = Worker(board, agent_id="d-a"), Worker(board, agent_id="d-b")
    async with Swarm(agents=[a, b]) as swarm:
        await swarm.queen.commands.drain(agent_id="d-a")
        async with asyncio.timeout(10):
            while a.state is not AgentState.DRAINING:
                await asyncio.sleep(0.005)
        handles = [await swarm.submit(Work(n=i)) for i in range(6)]
        for h in handles:
            await h.result(timeout=10)
        assert {r.agent_id for r in board.finished} == {"d-b"}
        await swarm.queen.commands.shutdown(agent_id="d-b")
        async with asyncio.timeout(10):
            while b.state is not AgentState.STOPPED:
                await asyncio.sleep(0.005)
        runtime = swarm.runtime
        assert isinstance(runtime, InProcessRuntime)
        assert [ag.agent_id for ag in runtime.agents()] == ["d-a"]


async def test_swarm_exit_drains_and_records_leftovers() -> None:
    board = Board()
    swarm = Swarm(agents=[Worker(board)], drain_timeout=0.1)
    async with swarm:
        await swarm.submit(Work(n=1, mode="block"))
        await swarm.submit(Work(n=2))
        await board.wait_for(lambda b: len(b.started) == 1)
    assert sorted(e.id for e in swarm.leftovers)  # both were handed back, none lost
    assert len(swarm.leftovers) == 2
    assert await swarm.queen.counts() == {TaskState.QUEUED: 2}


async def test_raising_concurrency_at_runtime_grows_the_worker_pool() -> None:
    board = Board()
    agent = Worker(board, concurrency=1)
    async with Swarm(agents=[agent]) as swarm:
        agent.concurrency = 3  # what live config does
        handles = [await swarm.submit(Work(n=i, mode="block")) for i in range(3)]
        await board.wait_for(lambda b: b.running == 3)
        board.release.set()
        for h in handles:
            await h.result(timeout=10)
    assert board.max_running == 3


async def test_a_queen_that_does_not_lead_dispatches_nothing() -> None:
    from swarm import LeadershipLost

    board = Board()
    async with Swarm(agents=[Worker(board)]) as swarm:
        leading = {"epoch": 0}
        swarm.queen.intake.epoch = lambda: leading["epoch"]
        with pytest.raises(LeadershipLost):
            await swarm.submit(Work(n=1))
        assert await swarm.queen.counts() == {}
        leading["epoch"] = 3
        handle = await swarm.submit(Work(n=2))
        assert await handle.result(timeout=10) == 4
        rec = await swarm.status(handle.task_id)
        assert rec is not None and rec.epoch == 3
