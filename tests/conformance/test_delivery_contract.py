"""Delivery contract points (issue 12) that every runtime in ``FACTORIES`` keeps.

* final states are absorbing: no later write changes a finished task;
* a hand-back (unregistering an agent, stopping a runtime) costs no attempt;
* a delivery that never started its handler costs no attempt;
* one idempotency key gives one task, under concurrency.
"""

from __future__ import annotations

import asyncio

from swarm import InProcessRuntime, RetryPolicy, TaskState
from swarm.envelopes import task_envelope
from swarm.runtime import Runtime, result_of
from tests.conformance.conftest import Make
from tests.fakes import Board, Work, Worker

FAST_RETRY = RetryPolicy(max_attempts=2, base_delay=0.02, max_delay=0.1, jitter=0.0)


def _task(runtime: Runtime, msg: Work, **kw: object) -> object:
    return task_envelope(
        runtime.codec,
        msg,
        sender="test",
        max_attempts=2,
        reply_to=runtime.node_id,
        **kw,  # type: ignore[arg-type]
    )


async def _submit(runtime: Runtime, msg: Work, **kw: object) -> str:
    return await runtime.submit(_task(runtime, msg, **kw))  # type: ignore[arg-type]


async def test_final_states_are_absorbing(runtime_factory: Make) -> None:
    board = Board()
    runtime = await runtime_factory(retry_policy=FAST_RETRY)
    await runtime.register(Worker(board))
    tid = await _submit(runtime, Work(n=21))
    assert result_of(runtime.codec, await runtime.wait(tid, timeout=10)) == 42
    first = await runtime.ledger.get(tid)
    assert first is not None
    for state in TaskState:
        # A late settlement of any kind: refused, nothing changes.
        assert await runtime.ledger.update(tid, state, result=b"\x01", error="late") is None
    rec = await runtime.ledger.get(tid)
    assert rec is not None
    assert (rec.state, rec.result, rec.executions, rec.error, rec.finished_at) == (
        TaskState.DONE,
        first.result,
        1,
        first.error,
        first.finished_at,
    )
    again = await runtime.wait(tid, timeout=5)
    assert result_of(runtime.codec, again) == 42


async def test_a_hand_back_costs_no_attempt(runtime_factory: Make) -> None:
    # max_attempts 2 and three hand-backs: were they charged, the task would die.
    board = Board()
    runtime = await runtime_factory(retry_policy=FAST_RETRY, visibility_timeout=60.0)
    await runtime.register(Worker(board, agent_id="w-0"))
    tid = await _submit(runtime, Work(n=5, mode="block"), to="role:worker")
    for i in range(1, 4):
        await board.wait_for(lambda b, i=i: len(b.started) == i)
        holder = board.started[-1].agent_id
        await runtime.register(Worker(board, agent_id=f"w-{i}"))
        await runtime.unregister(holder, drain=False)  # type: ignore[attr-defined]
    await board.wait_for(lambda b: len(b.started) == 4)
    board.release.set()
    rec = await runtime.wait(tid, timeout=10)
    assert rec.state is TaskState.DONE and result_of(runtime.codec, rec) == 10
    assert [r.attempt for r in board.started] == [1, 1, 1, 1]
    assert rec.attempts == 1 and rec.executions == 1


async def test_never_started_deliveries_cost_no_attempt(runtime_factory: Make) -> None:
    # An agent crashes with work it held but had not started (its local queue,
    # or entries read in the same batch as the task that killed it).
    board = Board()
    runtime = await runtime_factory(retry_policy=FAST_RETRY, visibility_timeout=60.0)
    await runtime.register(Worker(board, agent_id="w-a", concurrency=1))
    blocker = await _submit(runtime, Work(n=1, mode="block-first"), to="agent:w-a")
    await board.wait_for(lambda b: len(b.started) == 1)
    waiting = [await _submit(runtime, Work(n=i), to="agent:w-a") for i in range(2, 5)]
    for _ in range(3):
        await runtime.kill("w-a")  # type: ignore[attr-defined]
        await runtime.register(Worker(board, agent_id="w-a", concurrency=1))
        await board.wait_for(lambda b: len(b.started) >= 2)
        break
    board.release.set()
    for tid in waiting:
        rec = await runtime.wait(tid, timeout=20)
        assert rec.state is TaskState.DONE and rec.attempts == 1, rec
    rec = await runtime.wait(blocker, timeout=20)
    # The blocker did start before the crash: that attempt is charged.
    assert rec.state is TaskState.DONE and rec.attempts == 2


async def test_one_task_per_idempotency_key_under_concurrency(runtime_factory: Make) -> None:
    board = Board()
    first = await runtime_factory(retry_policy=FAST_RETRY)
    second = first if isinstance(first, InProcessRuntime) else await runtime_factory()
    await first.register(Worker(board, concurrency=8))
    keys = [f"key-{i}" for i in range(40)]

    async def submit_all(runtime: Runtime, key: str) -> list[str]:
        return list(
            await asyncio.gather(
                *(_submit(runtime, Work(n=1), idempotency_key=key) for _ in range(5))
            )
        )

    for key in keys:
        # Two submitters where they share state (processes on one Redis).
        runtimes = [first] if isinstance(first, InProcessRuntime) else [first, second]
        ids = [
            tid
            for batch in await asyncio.gather(*(submit_all(rt, key) for rt in runtimes))
            for tid in batch
        ]
        assert len(set(ids)) == 1, (key, set(ids))
        rec = await first.wait(ids[0], timeout=10)
        assert rec.state is TaskState.DONE
    assert len(board.started) == len(keys)
