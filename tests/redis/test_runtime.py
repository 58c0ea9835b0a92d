"""RedisRuntime against the real server: delivery, retries, dead letters, reclaim, routing."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from redis.asyncio import Redis

from swarm import Agent, Message, handler
from swarm import constants as C
from swarm.envelopes import task_envelope
from swarm.errors import NoRouteError, TaskDeadLettered, TaskExpired
from swarm.ledger import TaskState
from swarm.messages import Envelope, new_id
from swarm.metrics import REJECTED
from swarm.redis.runtime import RedisRuntime
from tests.redis.runtime_support import cleanup, make_runtime, new_prefix, redis_client

pytestmark = pytest.mark.integration


class Square(Message):
    n: int


class Flaky(Message):
    key: str
    fail_times: int


class Always(Message):
    pass


class Slow(Message):
    key: str


_FAILS: dict[str, int] = {}
_STARTED: dict[str, asyncio.Event] = {}
_RELEASE: dict[str, asyncio.Event] = {}
_RUNS: dict[str, list[str]] = {}


class Squarer(Agent):
    role = "squarer"

    @handler
    async def square(self, msg: Square) -> int:
        return msg.n * msg.n

    @handler
    async def flaky(self, msg: Flaky) -> str:
        seen = _FAILS.get(msg.key, 0)
        _FAILS[msg.key] = seen + 1
        if seen < msg.fail_times:
            raise RuntimeError(f"failure {seen + 1}")
        return "ok"

    @handler
    async def always(self, msg: Always) -> None:
        raise ValueError("never works")

    @handler
    async def slow(self, msg: Slow) -> str:
        _RUNS.setdefault(msg.key, []).append(self.agent_id)
        _STARTED.setdefault(msg.key, asyncio.Event()).set()
        await _RELEASE.setdefault(msg.key, asyncio.Event()).wait()
        return self.agent_id


@pytest.fixture
async def redis() -> AsyncIterator[Redis]:
    client = await redis_client()
    yield client
    await client.aclose()


@pytest.fixture
async def prefix(redis: Redis) -> AsyncIterator[str]:
    p = new_prefix()
    yield p
    await cleanup(redis, p)


@pytest.fixture
async def runtime(redis: Redis, prefix: str) -> AsyncIterator[RedisRuntime]:
    rt = make_runtime(redis, prefix)
    await rt.start()
    yield rt
    await rt.stop(drain=False)


async def test_send_returns_the_result_and_ledger_records_it(runtime: RedisRuntime) -> None:
    await runtime.register(Squarer())
    assert await runtime.send(Square(n=7), sender="t", timeout=10) == 49
    task_id = await runtime.submit(_env(runtime, Square(n=3)))
    rec = await runtime.wait(task_id, timeout=10)
    assert rec.state is TaskState.DONE and rec.executions == 1 and rec.attempts == 1
    assert (await runtime.ledger.get(task_id)) is not None
    counts = await runtime.ledger.counts()
    assert counts[TaskState.DONE] == 2


async def test_a_running_task_shows_running_until_it_finishes(runtime: RedisRuntime) -> None:
    agent = Squarer()
    await runtime.register(agent)
    key = new_id()
    started = _STARTED.setdefault(key, asyncio.Event())
    task_id = await runtime.submit(_env(runtime, Slow(key=key)))
    await asyncio.wait_for(started.wait(), 10)
    # The "running" mark goes out in the agent's next settle script.
    deadline = time.monotonic() + 10
    rec = await runtime.ledger.get(task_id)
    while rec is not None and rec.state is TaskState.QUEUED and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
        rec = await runtime.ledger.get(task_id)
    assert rec is not None and rec.state is TaskState.RUNNING
    assert (rec.attempts, rec.agent_id, rec.finished_at) == (1, agent.agent_id, None)
    assert rec.started_at is not None
    _RELEASE.setdefault(key, asyncio.Event()).set()
    done = await runtime.wait(task_id, timeout=10)
    assert (done.state, done.attempts, done.agent_id, done.executions) == (
        TaskState.DONE,
        1,
        agent.agent_id,
        1,
    )
    final = await runtime.ledger.get(task_id)
    assert final is not None and final.started_at == rec.started_at
    assert final.finished_at is not None and final.finished_at >= rec.started_at


async def test_a_task_nobody_waits_for_is_recorded_done(runtime: RedisRuntime) -> None:
    # No reply_to: no note, the completion takes the general settle path.
    agent = Squarer()
    await runtime.register(agent)
    env = task_envelope(
        runtime.codec, Square(n=4), sender="test", to="role:squarer", max_attempts=3
    )
    assert env.reply_to is None
    task_id = await runtime.submit(env)
    deadline = time.monotonic() + 10
    rec = await runtime.ledger.get(task_id)
    while rec is not None and rec.state is not TaskState.DONE and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
        rec = await runtime.ledger.get(task_id)
    assert rec is not None and rec.state is TaskState.DONE
    assert (rec.attempts, rec.agent_id, rec.executions, rec.result_type) == (
        1,
        agent.agent_id,
        1,
        "",
    )
    assert rec.started_at is not None and rec.finished_at is not None
    assert rec.started_at <= rec.finished_at


async def test_failures_retry_then_succeed(runtime: RedisRuntime) -> None:
    await runtime.register(Squarer())
    key = new_id()
    assert await runtime.send(Flaky(key=key, fail_times=2), sender="t", timeout=10) == "ok"
    assert _FAILS[key] == 3


async def test_exhausted_attempts_dead_letter_and_redrive(runtime: RedisRuntime) -> None:
    await runtime.register(Squarer())
    with pytest.raises(TaskDeadLettered):
        await runtime.send(Always(), sender="t", timeout=10)
    dead = await runtime.dead_letters()
    assert len(dead) == 1 and "never works" in dead[0].error
    task_id = dead[0].envelope.id
    rec = await runtime.ledger.get(task_id)
    assert rec is not None and rec.state is TaskState.DEAD and rec.attempts == 3
    assert await runtime.redrive(task_id)
    assert not await runtime.redrive(task_id)
    rec = await runtime.wait(task_id, timeout=10)
    assert rec.state is TaskState.DEAD
    assert len(await runtime.dead_letters()) == 1


async def test_idempotency_key_returns_the_first_task(runtime: RedisRuntime) -> None:
    await runtime.register(Squarer())
    first = await runtime.submit(_env(runtime, Square(n=2), idempotency_key="k1"))
    second = await runtime.submit(_env(runtime, Square(n=3), idempotency_key="k1"))
    assert first == second
    assert (await runtime.wait(first, timeout=10)).state is TaskState.DONE


async def test_expired_task_is_not_started(runtime: RedisRuntime) -> None:
    await runtime.register(Squarer())
    env = _env(runtime, Square(n=2), deadline=time.time() - 1)
    with pytest.raises(TaskExpired):
        from swarm.runtime import result_of

        result_of(runtime.codec, await runtime.wait(await runtime.submit(env), timeout=10))


async def test_unknown_type_or_agent_has_no_route(runtime: RedisRuntime) -> None:
    await runtime.register(Squarer())
    with pytest.raises(NoRouteError):
        await runtime.submit(_env(runtime, Square(n=1), recipient="agent:nobody"))

    class Nothing(Message):
        pass

    with pytest.raises(NoRouteError):
        await runtime.submit(_env(runtime, Nothing()))


async def test_agent_targeting(runtime: RedisRuntime) -> None:
    a, b = Squarer(), Squarer()
    await runtime.register(a)
    await runtime.register(b)
    key = new_id()
    _RELEASE[key] = asyncio.Event()
    _RELEASE[key].set()
    for _ in range(3):
        task_id = await runtime.submit(
            _env(runtime, Slow(key=key), recipient=f"agent:{b.agent_id}")
        )
        assert (await runtime.wait(task_id, timeout=10)).agent_id == b.agent_id
    assert _RUNS[key] == [b.agent_id] * 3


async def test_killed_agent_work_is_reclaimed_by_a_live_replica(redis: Redis, prefix: str) -> None:
    rt1 = make_runtime(redis, prefix, visibility_timeout=1.0)
    rt2 = make_runtime(redis, prefix, visibility_timeout=1.0)
    await rt1.start()
    await rt2.start()
    try:
        victim = Squarer()
        await rt1.register(victim)
        key = new_id()
        task_id = await rt1.submit(_env(rt1, Slow(key=key)))
        await asyncio.wait_for(_STARTED.setdefault(key, asyncio.Event()).wait(), 10)
        await rt1.kill(victim.agent_id)
        _RELEASE.setdefault(key, asyncio.Event()).set()
        survivor = Squarer()
        killed_at = time.monotonic()
        await rt2.register(survivor)
        rec = await rt1.wait(task_id, timeout=10)
        assert time.monotonic() - killed_at < 1.0 + 5
        assert rec.state is TaskState.DONE and rec.agent_id == survivor.agent_id
        assert rec.attempts == 2 and rec.executions == 1
        assert _RUNS[key] == [victim.agent_id, survivor.agent_id]
    finally:
        await rt1.stop(drain=False)
        await rt2.stop(drain=False)


async def test_replicas_share_work(redis: Redis, prefix: str) -> None:
    rts = [make_runtime(redis, prefix) for _ in range(2)]
    for rt in rts:
        await rt.start()
    try:
        agents = [Squarer(), Squarer()]
        for rt, agent in zip(rts, agents, strict=True):
            await rt.register(agent)
        ids = [await rts[0].submit(_env(rts[0], Square(n=i))) for i in range(200)]
        for task_id in ids:
            assert (await rts[0].wait(task_id, timeout=10)).state is TaskState.DONE
        assert all(a.processed > 0 for a in agents)
        assert sum(a.processed for a in agents) == 200
    finally:
        for rt in rts:
            await rt.stop(drain=False)


async def test_higher_band_first(runtime: RedisRuntime, prefix: str) -> None:
    low = [await _enqueue_raw(runtime, prefix, Square(n=i), priority=0) for i in range(5)]
    high = [await _enqueue_raw(runtime, prefix, Square(n=i), priority=2) for i in range(5)]
    agent = Squarer()
    await runtime.register(agent)
    recs = [await runtime.ledger.get(t) for t in low + high]
    for t in low + high:
        await _wait_final(runtime, t)
    recs = [await runtime.ledger.get(t) for t in low + high]
    assert all(r is not None and r.started_at is not None for r in recs)
    started = [r.started_at for r in recs if r is not None and r.started_at is not None]
    assert max(started[5:]) <= min(started[:5])


async def test_malformed_oversized_and_foreign_entries_are_moved_aside(
    runtime: RedisRuntime, redis: Redis, prefix: str
) -> None:
    agent = Squarer()
    await runtime.register(agent)
    stream = C.task_stream("squarer", 0, prefix)
    before = {
        r: REJECTED.labels(reason=r)._value.get() for r in ("malformed", "foreign", "oversized")
    }
    await redis.xadd(stream, {"e": b"\x93garbage"})
    await redis.xadd(stream, {"x": b"1"})
    await redis.xadd(stream, {"e": b"\x00" * (runtime.codec.max_bytes + 1)})
    foreign = _env(runtime, Square(n=1), recipient="role:other")
    await redis.xadd(stream, {"e": runtime.codec.encode(foreign)})
    # A valid task with a field besides "e" is not ours either.
    extra = _env(runtime, Square(n=2), recipient="role:squarer")
    await redis.xadd(stream, {"e": runtime.codec.encode(extra), "x": b"1"})
    assert await runtime.send(Square(n=5), sender="t", timeout=10) == 25
    rejected = C.rejected_stream("squarer", prefix)
    deadline = time.monotonic() + 10
    while await redis.xlen(rejected) < 5:
        assert time.monotonic() < deadline
        await asyncio.sleep(0.02)
    after = {r: REJECTED.labels(reason=r)._value.get() for r in before}
    assert after["malformed"] - before["malformed"] == 1
    assert after["foreign"] - before["foreign"] == 3
    assert after["oversized"] - before["oversized"] == 1
    assert await redis.xpending(stream, C.TASK_GROUP) == {
        "pending": 0,
        "min": None,
        "max": None,
        "consumers": [],
    }
    assert agent.state.value in ("ready", "busy")


async def test_a_reconnected_submitter_still_gets_the_result(redis: Redis, prefix: str) -> None:
    worker = make_runtime(redis, prefix)
    await worker.start()
    await worker.register(Squarer())
    submitter = make_runtime(redis, prefix, node_id="queen-1")
    await submitter.start()
    task_id = await submitter.submit(_env(submitter, Square(n=9)))
    await submitter.stop(drain=False)
    again = make_runtime(redis, prefix, node_id="queen-1")
    await again.start()
    try:
        rec = await again.wait(task_id, timeout=10)
        assert rec.state is TaskState.DONE
        assert again.codec.decode_value(rec.result_type, rec.result) == 81
    finally:
        await again.stop(drain=False)
        await worker.stop(drain=False)


async def test_stop_with_drain_finishes_in_flight_work(redis: Redis, prefix: str) -> None:
    rt = make_runtime(redis, prefix)
    await rt.start()
    await rt.register(Squarer(concurrency=4))
    ids = [await rt.submit(_env(rt, Square(n=i))) for i in range(50)]
    leftovers = await rt.stop(drain=True, timeout=20)
    assert leftovers == []
    probe = make_runtime(redis, prefix)
    await probe.start()
    try:
        for task_id in ids:
            rec = await probe.ledger.get(task_id)
            assert rec is not None and rec.state is TaskState.DONE
    finally:
        await probe.stop(drain=False)


# -- helpers ---------------------------------------------------------------
def _env(
    rt: RedisRuntime,
    msg: Message,
    *,
    recipient: str = "",
    priority: int = 0,
    idempotency_key: str | None = None,
    deadline: float | None = None,
) -> Envelope:
    return task_envelope(
        rt.codec,
        msg,
        sender="test",
        to=recipient,
        priority=priority,
        max_attempts=rt.retry_policy.max_attempts,
        deadline=deadline,
        idempotency_key=idempotency_key,
        reply_to=rt.node_id,
    )


async def _enqueue_raw(rt: RedisRuntime, prefix: str, msg: Message, *, priority: int) -> str:
    # Queued before any agent registered: the role is known from the directory only.
    await rt._redis.hset(C.directory_key(prefix), "squarer", " ".join(sorted(Squarer.capabilities)))
    return await rt.submit(_env(rt, msg, recipient="role:squarer", priority=priority))


async def _wait_final(rt: RedisRuntime, task_id: str) -> None:
    await rt.wait(task_id, timeout=10)


async def test_send_takes_the_result_from_the_note_without_a_ledger_read(
    runtime: RedisRuntime, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The waiter exists before the submit: a result read before the submitter
    # resumed from its submit is not fetched again from the ledger.
    await runtime.register(Squarer())
    reads: list[str] = []
    results = runtime._results
    get_record = results._get_record
    submit = runtime._intake.submit

    async def spy(task_id: str) -> Any:
        reads.append(task_id)
        return await get_record(task_id)

    async def late_submit(env: Envelope) -> str:
        task_id = await submit(env)
        await results.idle.wait()  # the inbox reader got the result first
        return task_id

    monkeypatch.setattr(results, "_get_record", spy)
    monkeypatch.setattr(runtime._intake, "submit", late_submit)
    for n in range(5):
        assert await runtime.send(Square(n=n), sender="t", timeout=10) == n * n
        assert await runtime.send(Square(n=n), sender="t") == n * n
    assert reads == []
    assert runtime.outstanding == 0 and not results._waiters
