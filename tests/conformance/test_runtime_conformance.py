"""The Runtime Protocol's delivery contract, run against every runtime in ``FACTORIES``."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import msgspec
import pytest

from swarm import (
    Codec,
    EncodeError,
    Envelope,
    Kind,
    Message,
    MessageTooLarge,
    NoRouteError,
    RetryPolicy,
    Runtime,
    RuntimeClosed,
    SwarmTimeout,
    TaskDeadLettered,
    TaskExpired,
    TaskFailed,
    TaskState,
    new_id,
)
from swarm.envelopes import task_envelope
from swarm.metrics import REJECTED
from swarm.runtime import result_of
from tests.conformance.conftest import Make
from tests.fakes import Board, Note, Other, OtherWorker, Work, Worker

FAST_RETRY = RetryPolicy(max_attempts=3, base_delay=0.02, max_delay=0.1, jitter=0.0)


def task(
    msg: Message,
    *,
    to: str = "",
    priority: int = 0,
    max_attempts: int = 3,
    deadline: float | None = None,
    key: str | None = None,
    runtime: Runtime,
) -> Envelope:
    return task_envelope(
        runtime.codec,
        msg,
        sender="test",
        to=to,
        priority=priority,
        max_attempts=max_attempts,
        deadline=deadline,
        idempotency_key=key,
        reply_to=runtime.node_id,
    )


async def submit(runtime: Runtime, msg: Message, **kw: Any) -> str:
    return await runtime.submit(task(msg, runtime=runtime, **kw))


async def outcome(runtime: Runtime, task_id: str, timeout: float = 10.0) -> Any:
    return result_of(runtime.codec, await runtime.wait(task_id, timeout=timeout))


@pytest.fixture
def board() -> Board:
    return Board()


async def test_send_returns_the_handler_result(runtime_factory: Make, board: Board) -> None:
    runtime = await runtime_factory()
    await runtime.register(Worker(board))
    assert await runtime.send(Work(n=21), sender="test", timeout=10) == 42


async def test_ack_only_after_success_and_exactly_once(runtime_factory: Make, board: Board) -> None:
    runtime = await runtime_factory()
    await runtime.register(Worker(board, concurrency=4))
    ids = [await submit(runtime, Work(n=i), to="role:worker") for i in range(20)]
    results = [await outcome(runtime, t) for t in ids]
    assert results == [i * 2 for i in range(20)]
    for t in ids:
        rec = await runtime.ledger.get(t)
        assert rec is not None
        assert (rec.state, rec.attempts, rec.executions) == (TaskState.DONE, 1, 1)
    assert sorted(board.finished_ns()) == list(range(20))


async def test_failure_is_retried_with_exponential_backoff(
    runtime_factory: Make, board: Board
) -> None:
    policy = RetryPolicy(max_attempts=3, base_delay=0.05, max_delay=1.0, jitter=0.0)
    runtime = await runtime_factory(retry_policy=policy)
    await runtime.register(Worker(board))
    tid = await submit(runtime, Work(n=1, mode="fail-twice"), max_attempts=3)
    assert await outcome(runtime, tid) == 2
    rec = await runtime.ledger.get(tid)
    assert rec is not None and rec.state is TaskState.DONE and rec.attempts == 3
    assert [r.attempt for r in board.started] == [1, 2, 3]
    assert rec.error is not None and "scripted failure" in rec.error


async def test_backoff_spaces_attempts(runtime_factory: Make, board: Board) -> None:
    policy = RetryPolicy(max_attempts=3, base_delay=0.1, max_delay=1.0, jitter=0.0)
    runtime = await runtime_factory(retry_policy=policy)
    stamps: list[float] = []
    board_cb = board.note

    async def note(fn: Any) -> None:
        stamps.append(time.monotonic())
        await board_cb(fn)

    board.note = note  # type: ignore[method-assign]
    await runtime.register(Worker(board))
    tid = await submit(runtime, Work(n=1, mode="fail-twice"))
    await outcome(runtime, tid)
    starts = [stamps[i] for i in range(0, len(stamps), 2)][:3]  # each run notes start and end
    assert starts[1] - starts[0] >= 0.1 * 0.95
    assert starts[2] - starts[1] >= 0.2 * 0.95


async def test_exhausted_attempts_dead_letter_and_redrive(
    runtime_factory: Make, board: Board
) -> None:
    runtime = await runtime_factory(retry_policy=FAST_RETRY)
    await runtime.register(Worker(board))
    tid = await submit(runtime, Work(n=5, mode="fail"), max_attempts=2)
    with pytest.raises(TaskDeadLettered) as info:
        await outcome(runtime, tid)
    assert "scripted failure" in str(info.value)
    rec = await runtime.ledger.get(tid)
    assert rec is not None and rec.state is TaskState.DEAD and rec.attempts == 2
    dead = await runtime.dead_letters()
    assert [d.envelope.id for d in dead] == [tid]
    assert "scripted failure" in dead[0].error
    assert await runtime.redrive(tid) is True
    assert await runtime.redrive(tid) is False
    with pytest.raises(TaskDeadLettered):
        await outcome(runtime, tid)
    assert [r.attempt for r in board.started] == [1, 2, 1, 2]


async def test_reject_fails_at_once_without_retry(runtime_factory: Make, board: Board) -> None:
    runtime = await runtime_factory(retry_policy=FAST_RETRY)
    await runtime.register(Worker(board))
    tid = await submit(runtime, Work(n=1, mode="reject"))
    with pytest.raises(TaskFailed, match="not for me"):
        await outcome(runtime, tid)
    rec = await runtime.ledger.get(tid)
    assert rec is not None and rec.state is TaskState.FAILED and rec.attempts == 1


async def test_crashed_agent_work_is_redelivered_to_another_replica(
    runtime_factory: Make, board: Board
) -> None:
    # A long visibility timeout: only the crash itself can explain a redelivery.
    runtime = await runtime_factory(retry_policy=FAST_RETRY, visibility_timeout=60.0)
    await runtime.register(Worker(board, agent_id="w-a"))
    await runtime.register(Worker(board, agent_id="w-b"))
    tid = await submit(runtime, Work(n=8, mode="block-first"), to="role:worker")
    await board.wait_for(lambda b: len(b.started) == 1)
    crashed = board.started[0].agent_id
    await runtime.kill(crashed)  # type: ignore[attr-defined]
    assert await outcome(runtime, tid, timeout=30) == 16
    rec = await runtime.ledger.get(tid)
    assert rec is not None and rec.attempts == 2 and rec.executions == 1
    assert rec.agent_id == ({"w-a", "w-b"} - {crashed}).pop()
    assert [r.attempt for r in board.started] == [1, 2]


async def test_task_for_a_crashed_agent_id_waits_for_it(
    runtime_factory: Make, board: Board
) -> None:
    runtime = await runtime_factory(retry_policy=FAST_RETRY, visibility_timeout=60.0)
    await runtime.register(Worker(board, agent_id="w-x"))
    tid = await submit(runtime, Work(n=1, mode="block-first"), to="agent:w-x")
    await board.wait_for(lambda b: len(b.started) == 1)
    await runtime.kill("w-x")  # type: ignore[attr-defined]
    rec = await runtime.ledger.get(tid)
    assert rec is not None and rec.state is TaskState.QUEUED
    await runtime.register(Worker(board, agent_id="w-x"))  # the agent comes back
    assert await outcome(runtime, tid) == 2
    assert [r.attempt for r in board.started] == [1, 2]


async def test_visibility_timeout_redelivers_to_another_replica(
    runtime_factory: Make, board: Board
) -> None:
    runtime = await runtime_factory(retry_policy=FAST_RETRY, visibility_timeout=0.3)
    await runtime.register(Worker(board, agent_id="w-1"))
    await runtime.register(Worker(board, agent_id="w-2"))
    tid = await submit(runtime, Work(n=3, mode="hang-first"), to="role:worker")
    assert await outcome(runtime, tid) == 6
    assert [r.attempt for r in board.started] == [1, 2]
    assert board.started[0].agent_id != board.started[1].agent_id


async def test_handler_cancellation_redelivers(runtime_factory: Make, board: Board) -> None:
    runtime = await runtime_factory(retry_policy=FAST_RETRY)
    await runtime.register(Worker(board))
    tid = await submit(runtime, Work(n=4, mode="cancel-first"))
    assert await outcome(runtime, tid) == 8
    assert [r.attempt for r in board.started] == [1, 2]


async def test_priority_order_under_backlog(runtime_factory: Make, board: Board) -> None:
    runtime = await runtime_factory()
    await runtime.register(Worker(board, concurrency=1))
    gate = await submit(runtime, Work(n=-1, mode="block"))
    await board.wait_for(lambda b: len(b.started) == 1)
    plan = [(0, 0), (1, 5), (2, 1), (3, 5), (4, 0), (5, 9)]
    ids = [await submit(runtime, Work(n=n), priority=p) for n, p in plan]
    board.release.set()
    for t in [gate, *ids]:
        await outcome(runtime, t)
    assert board.finished_ns() == [-1, 5, 1, 3, 2, 0, 4]


async def test_targeting_a_specific_agent(runtime_factory: Make, board: Board) -> None:
    runtime = await runtime_factory()
    for name in ("t-1", "t-2", "t-3"):
        await runtime.register(Worker(board, agent_id=name, concurrency=2))
    ids = [await submit(runtime, Work(n=i), to="agent:t-2") for i in range(6)]
    for t in ids:
        await outcome(runtime, t)
    assert {r.agent_id for r in board.finished} == {"t-2"}


async def test_role_targeting_prefers_least_loaded_replica(
    runtime_factory: Make, board: Board
) -> None:
    runtime = await runtime_factory()
    await runtime.register(Worker(board, agent_id="r-1", concurrency=2))
    await runtime.register(Worker(board, agent_id="r-2", concurrency=2))
    first = await submit(runtime, Work(n=1, mode="block"), to="role:worker")
    await board.wait_for(lambda b: len(b.started) == 1)
    second = await submit(runtime, Work(n=2), to="role:worker")
    assert await outcome(runtime, second) == 4
    busy = board.started[0].agent_id
    assert board.finished[0].agent_id != busy
    board.release.set()
    await outcome(runtime, first)


async def test_type_targeting_picks_a_capable_role(runtime_factory: Make, board: Board) -> None:
    runtime = await runtime_factory()
    await runtime.register(Worker(board))
    await runtime.register(OtherWorker())
    assert await outcome(runtime, await submit(runtime, Other(text="hi"))) == "HI"
    assert await outcome(runtime, await submit(runtime, Work(n=2))) == 4

    class Orphan(Message):
        x: int

    with pytest.raises(NoRouteError):
        await submit(runtime, Orphan(x=1))
    with pytest.raises(NoRouteError):
        await submit(runtime, Other(text="x"), to="role:worker")
    with pytest.raises(NoRouteError):
        await submit(runtime, Work(n=1), to="agent:nobody")


async def test_idempotency_key_returns_the_first_task(runtime_factory: Make, board: Board) -> None:
    runtime = await runtime_factory()
    await runtime.register(Worker(board))
    first = await submit(runtime, Work(n=1), key="order-42")
    second = await submit(runtime, Work(n=99), key="order-42")
    assert first == second
    assert await outcome(runtime, first) == 2
    third = await submit(runtime, Work(n=1), key="order-42")
    assert third == first
    assert board.finished_ns() == [1]


async def test_expired_task_is_not_started(runtime_factory: Make, board: Board) -> None:
    runtime = await runtime_factory()
    await runtime.register(Worker(board))
    tid = await submit(runtime, Work(n=1), deadline=time.time() - 1)
    with pytest.raises(TaskExpired):
        await outcome(runtime, tid)
    rec = await runtime.ledger.get(tid)
    assert rec is not None and rec.state is TaskState.EXPIRED
    assert board.started == []


async def test_deadline_passing_in_backlog_expires(runtime_factory: Make, board: Board) -> None:
    runtime = await runtime_factory()
    await runtime.register(Worker(board, concurrency=1))
    gate = await submit(runtime, Work(n=0, mode="block"))
    await board.wait_for(lambda b: len(b.started) == 1)
    deadline = time.time() + 0.05
    tid = await submit(runtime, Work(n=1), deadline=deadline)
    while time.time() <= deadline:  # the condition under test is the clock itself
        await asyncio.sleep(deadline - time.time() + 0.001)
    board.release.set()
    await outcome(runtime, gate)
    with pytest.raises(TaskExpired):
        await outcome(runtime, tid)
    assert board.finished_ns() == [0]


async def test_concurrency_limit_is_respected(runtime_factory: Make, board: Board) -> None:
    runtime = await runtime_factory()
    await runtime.register(Worker(board, concurrency=3))
    ids = [await submit(runtime, Work(n=i, mode="block")) for i in range(10)]
    await board.wait_for(lambda b: b.running == 3)
    assert len(board.started) == 3
    board.release.set()
    for t in ids:
        await outcome(runtime, t)
    assert board.max_running == 3


async def test_graceful_drain_finishes_accepted_work(runtime_factory: Make, board: Board) -> None:
    runtime = await runtime_factory()
    await runtime.register(Worker(board, concurrency=5))
    ids = [await submit(runtime, Work(n=i)) for i in range(200)]
    leftovers = await runtime.stop(drain=True, timeout=30)
    assert leftovers == []
    states = {(await runtime.ledger.get(t)).state for t in ids}  # type: ignore[union-attr]
    assert states == {TaskState.DONE}
    with pytest.raises(RuntimeClosed):
        await submit(runtime, Work(n=1))


async def test_drain_timeout_returns_unfinished_work(runtime_factory: Make, board: Board) -> None:
    runtime = await runtime_factory()
    await runtime.register(Worker(board, concurrency=2))
    ids = [await submit(runtime, Work(n=i, mode="block" if i < 2 else "ok")) for i in range(6)]
    await board.wait_for(lambda b: len(b.started) == 2)
    leftovers = await runtime.stop(drain=True, timeout=0.2)
    done = set(board.finished_ns())
    returned = {msgspec.msgpack.decode(e.payload, type=Work).n for e in leftovers}
    # Every accepted task either finished or was handed back: none lost.
    assert done | returned == set(range(6))
    assert {0, 1} <= returned
    for t in ids:
        rec = await runtime.ledger.get(t)
        assert rec is not None and rec.state in (TaskState.DONE, TaskState.QUEUED)


async def test_stop_when_idle_waits_for_all_work(runtime_factory: Make, board: Board) -> None:
    runtime = await runtime_factory(retry_policy=FAST_RETRY)
    await runtime.register(Worker(board, concurrency=2))
    ids = [
        await submit(runtime, Work(n=i, mode="fail-twice" if i % 3 == 0 else "ok"))
        for i in range(12)
    ]
    await runtime.stop_when_idle(timeout=30)
    for t in ids:
        rec = await runtime.ledger.get(t)
        assert rec is not None and rec.state is TaskState.DONE


async def test_wait_times_out_while_task_keeps_running(runtime_factory: Make, board: Board) -> None:
    runtime = await runtime_factory()
    await runtime.register(Worker(board))
    tid = await submit(runtime, Work(n=1, mode="block"))
    with pytest.raises(SwarmTimeout):
        await runtime.wait(tid, timeout=0.05)
    board.release.set()
    assert await outcome(runtime, tid) == 2


async def test_oversized_task_is_rejected_at_submit(runtime_factory: Make, board: Board) -> None:
    runtime = await runtime_factory(codec=Codec(max_bytes=1024))
    await runtime.register(Worker(board))
    with pytest.raises(MessageTooLarge):
        await runtime.send(Work(n=1, blob="x" * 2000), sender="test")
    assert await runtime.ledger.counts() == {}


async def test_unencodable_payload_fails_at_the_sender(runtime_factory: Make, board: Board) -> None:
    class Bad(Message):
        value: Any

    runtime = await runtime_factory()
    with pytest.raises(EncodeError):
        await runtime.send(Bad(value=object()), sender="test")


async def test_malformed_payload_fails_task_and_agent_survives(
    runtime_factory: Make, board: Board
) -> None:
    runtime = await runtime_factory(retry_policy=FAST_RETRY)
    await runtime.register(Worker(board))
    before = REJECTED.labels(reason="bad_payload")._value.get()
    env = Envelope(
        id=new_id(),
        kind=Kind.TASK,
        type="Work",
        sender="test",
        payload=msgspec.Raw(msgspec.msgpack.encode({"n": "not-an-int"})),
        created_at=time.time(),
        reply_to=runtime.node_id,
    )
    tid = await runtime.submit(env)
    with pytest.raises(TaskFailed, match="invalid"):
        await outcome(runtime, tid)
    assert REJECTED.labels(reason="bad_payload")._value.get() == before + 1
    assert await runtime.send(Work(n=3), sender="test", timeout=10) == 6


async def test_publish_reaches_every_subscriber(runtime_factory: Make, board: Board) -> None:
    runtime = await runtime_factory()
    await runtime.register(Worker(board, agent_id="s-1"))
    await runtime.register(Worker(board, agent_id="s-2"))
    seen: list[str] = []
    got = asyncio.Event()

    async def listener(env: Envelope) -> None:
        seen.append(env.type)
        got.set()

    sub = await runtime.subscribe("test-topic", listener)
    await runtime.publish("test-topic", Note(text="hello"), sender="test")
    await board.wait_for(lambda b: len(b.events) == 2)
    await asyncio.wait_for(got.wait(), 10)
    assert sorted(board.events) == [("s-1", "hello"), ("s-2", "hello")]
    assert seen == ["Note"]
    await sub.close()


async def test_pause_and_resume_commands(runtime_factory: Make, board: Board) -> None:
    from swarm import CommandBus

    runtime = await runtime_factory()
    agent = Worker(board, agent_id="p-1")
    await runtime.register(agent)
    bus = CommandBus(runtime=runtime, sender="queen")
    await bus.pause(role="worker")
    await _until(lambda: agent.state.value == "paused")
    tid = await submit(runtime, Work(n=1))
    with pytest.raises(SwarmTimeout):
        await runtime.wait(tid, timeout=0.1)
    assert board.started == []
    await bus.resume(agent_id="p-1")
    assert await outcome(runtime, tid) == 2


async def _until(predicate: Any, timeout: float = 10.0) -> None:
    """Poll a condition that has no event of its own (an agent's state)."""
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.005)


async def test_malformed_command_is_counted_and_agents_keep_working(
    runtime_factory: Make, board: Board
) -> None:
    from swarm.constants import CHANNEL_QUEEN_COMMANDS

    runtime = await runtime_factory()
    agent = Worker(board)
    await runtime.register(agent)
    counter = REJECTED.labels(reason="malformed_command")
    before = counter._value.get()
    await runtime.publish(CHANNEL_QUEEN_COMMANDS, Note(text="not a command"), sender="intruder")
    await _until(lambda: counter._value.get() == before + 1)
    assert agent.state.value == "ready"
    assert await runtime.send(Work(n=4), sender="test", timeout=10) == 8
