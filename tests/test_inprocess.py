"""InProcessRuntime details the conformance suite does not reach: waiters, task ids, the
synchronous submit path and handles."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable
from typing import Any, TypeVar

import msgspec
import pytest

from swarm import InProcessRuntime, NoRouteError, Swarm, SwarmTimeout, TaskHandle
from swarm.codec import Codec
from swarm.envelopes import task_envelope
from swarm.ledger import InMemoryLedger, TaskRecord, TaskState
from swarm.messages import Envelope, Kind, new_id
from tests.fakes import Board, Other, OtherWorker, Work, Worker

T = TypeVar("T")


async def test_waiters_of_one_task_are_independent() -> None:
    board = Board()
    runtime = InProcessRuntime()
    await runtime.start()
    try:
        await runtime.register(Worker(board))
        env = task_envelope(
            runtime.codec, Work(n=1, mode="block"), sender="t", to="role:worker", max_attempts=1
        )
        task_id = await runtime.submit(env)
        await board.wait_for(lambda b: len(b.started) == 1)
        first = asyncio.create_task(runtime.wait(task_id))
        second = asyncio.create_task(runtime.wait(task_id))
        # A third waiter gives up: the other two must still get the outcome.
        with pytest.raises(SwarmTimeout):
            await runtime.wait(task_id, timeout=0.01)
        # Cancelling the first waiter must not cancel the second.
        first.cancel()
        with pytest.raises(asyncio.CancelledError):
            await first
        board.release.set()
        rec = await asyncio.wait_for(second, timeout=10)
        assert rec.task_id == task_id and rec.final
        # Finished: a late waiter gets the record at once.
        assert (await runtime.wait(task_id)).state is rec.state
    finally:
        await runtime.stop()


def test_ids_are_unique_and_ordered_within_one_millisecond() -> None:
    now = time.time()
    # More ids than the 4096 of the counter's low digits, all in one millisecond.
    ids = [new_id(now) for _ in range(10_000)]
    assert len(set(ids)) == len(ids)
    assert ids == sorted(ids)
    assert all(len(i) == 32 and int(i, 16) >= 0 for i in ids)
    assert int(ids[0][:12], 16) == int(now * 1000)


def test_ids_sort_by_creation_time() -> None:
    t = time.time()
    ids = [new_id(t + k / 1000) for k in range(5)]
    assert ids == sorted(ids)
    assert [int(i[:12], 16) for i in ids] == [int((t + k / 1000) * 1000) for k in range(5)]


def test_ids_made_by_several_threads_are_unique() -> None:
    # Memory embedding and user code may make ids off the event loop's thread.
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(4) as pool:
        batches = list(pool.map(lambda _: [new_id() for _ in range(20_000)], range(4)))
    ids = [i for batch in batches for i in batch]
    assert len(set(ids)) == len(ids) == 80_000


def test_ids_across_the_cached_prefixes_keep_their_millisecond() -> None:
    # Around a 4096 ms boundary (the coarse cache's), forwards and then backwards.
    boundary = (int(time.time() * 1000) // 4096 + 1) * 4096
    times = [(boundary + k) / 1000 for k in range(-3, 4)]
    ids = [new_id(t) for t in times]
    assert ids == sorted(ids)
    assert [int(i[:12], 16) for i in ids] == [int(t * 1000) for t in times]
    back = [new_id(t) for t in reversed(times)]
    assert [int(i[:12], 16) for i in back] == [int(t * 1000) for t in reversed(times)]
    assert len(set(ids + back)) == 2 * len(times)


async def test_submit_errors_surface_when_awaited() -> None:
    async with Swarm(agents=[Worker(Board())]) as swarm:
        pending = swarm.submit(Other(text="nobody handles this"))  # not run yet: no error
        with pytest.raises(NoRouteError):
            await pending
        handle = await swarm.queen.submit(Work(n=4), to="worker")
        assert await handle == 8


async def test_cancelled_result_wait_leaves_no_waiter() -> None:
    board = Board()
    async with Swarm(agents=[Worker(board)]) as swarm:
        runtime = swarm.runtime
        assert isinstance(runtime, InProcessRuntime)
        handle = await swarm.submit(Work(n=1, mode="block"))
        waiting = asyncio.create_task(handle.result())
        while handle.task_id not in runtime._waiters:
            await asyncio.sleep(0)
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
        assert handle.task_id not in runtime._waiters
        board.release.set()
        assert await handle.result(timeout=10) == 2
        assert await handle.result() == 2  # final: answered from the ledger


async def test_ledger_counts_through_the_hot_path() -> None:
    board = Board()
    async with Swarm(agents=[Worker(board, concurrency=1)]) as swarm:
        first = await swarm.submit(Work(n=1, mode="block"))
        second = await swarm.submit(Work(n=2))
        await board.wait_for(lambda b: len(b.started) == 1)
        assert await swarm.queen.counts() == {TaskState.RUNNING: 1, TaskState.QUEUED: 1}
        board.release.set()
        assert [await first, await second] == [2, 4]
        assert await swarm.queen.counts() == {TaskState.DONE: 2}


class _ForwardingLedger:
    """A Ledger that is not the in-memory one (so it must be awaited)."""

    def __init__(self) -> None:
        self.inner = InMemoryLedger()
        self.creates = 0

    async def create(self, record: TaskRecord) -> TaskRecord:
        self.creates += 1
        return await self.inner.create(record)

    async def update(
        self,
        task_id: str,
        state: TaskState,
        *,
        attempts: int | None = None,
        agent_id: str | None = None,
        error: str | None = None,
        result: bytes | None = None,
        result_type: str | None = None,
    ) -> TaskRecord | None:
        return await self.inner.update(
            task_id,
            state,
            attempts=attempts,
            agent_id=agent_id,
            error=error,
            result=result,
            result_type=result_type,
        )

    async def get(self, task_id: str) -> TaskRecord | None:
        return await self.inner.get(task_id)

    async def counts(self) -> dict[TaskState, int]:
        return await self.inner.counts()


async def test_other_ledgers_are_awaited_not_submitted_synchronously() -> None:
    ledger = _ForwardingLedger()
    runtime = InProcessRuntime(ledger=ledger)
    assert runtime.sync_submit is None
    assert InProcessRuntime().sync_submit is not None
    env = task_envelope(runtime.codec, Work(n=1), sender="t", to="role:worker", max_attempts=1)
    with pytest.raises(TypeError):
        runtime.submit_nowait(env)
    async with Swarm(agents=[Worker(Board())], runtime=runtime) as swarm:
        handle = await swarm.submit(Work(n=5))
        assert await handle.result() == 10
        assert await handle.result(timeout=10) == 10
    assert ledger.creates == 1


def test_task_handles_compare_by_task_id() -> None:
    a = TaskHandle("t-1", InProcessRuntime())
    b = TaskHandle(task_id="t-1", runtime=InProcessRuntime())
    assert a == b and hash(a) == hash(b) and len({a, b}) == 1
    assert a != TaskHandle("t-2", a.runtime) and a != "t-1"
    assert repr(a) == "<TaskHandle t-1>"


class _CountingRuntime(InProcessRuntime):
    """Overrides submit and wait: the shortcuts must not skip them."""

    submits = 0
    waits = 0

    async def submit(self, envelope: Envelope) -> str:
        self.submits += 1
        return await super().submit(envelope)

    async def wait(self, task_id: str, *, timeout: float | None = None) -> TaskRecord:
        self.waits += 1
        return await super().wait(task_id, timeout=timeout)


async def test_overridden_submit_and_wait_are_not_skipped() -> None:
    runtime = _CountingRuntime()
    assert runtime.sync_submit is None
    async with Swarm(agents=[Worker(Board())], runtime=runtime) as swarm:
        handle = await swarm.submit(Work(n=3))
        assert await handle.result() == 6
    assert (runtime.submits, runtime.waits) == (1, 1)


class _DispatchCounting(OtherWorker):
    """Overrides dispatch: the worker must call it rather than the handler directly."""

    calls = 0

    def dispatch(self, envelope: Envelope, ctx: Any, codec: Codec) -> Awaitable[Any]:
        self.calls += 1
        return super().dispatch(envelope, ctx, codec)


class _DecodeCounting(Codec):
    """Overrides decode_payload: the worker must decode through it."""

    __slots__ = ("decodes",)

    def __init__(self) -> None:
        super().__init__()
        self.decodes = 0

    def decode_payload(self, envelope: Envelope, type_: type[T]) -> T:
        self.decodes += 1
        return super().decode_payload(envelope, type_)


def test_plain_handler_only_when_dispatch_would_just_call_it() -> None:
    plain = OtherWorker().plain_handler(Other.type_name)
    assert plain is not None and plain[1] is Other
    assert OtherWorker().plain_handler(Work.type_name) is None  # no handler
    assert Worker(Board()).plain_handler(Work.type_name) is None  # takes a context
    assert _DispatchCounting().plain_handler(Other.type_name) is None
    assert Codec().payload_decoder(Other) is not None
    assert _DecodeCounting().payload_decoder(Other) is None


async def test_workers_honour_overridden_dispatch_and_decode() -> None:
    agent = _DispatchCounting()
    codec = _DecodeCounting()
    runtime = InProcessRuntime(codec=codec)
    async with Swarm(agents=[agent], runtime=runtime) as swarm:
        for text in ("a", "b"):
            assert await (await swarm.submit(Other(text=text))).result() == text.upper()
    assert agent.calls == 2 and codec.decodes == 2


async def test_plain_handler_path_fails_a_malformed_payload_with_decode_error() -> None:
    runtime = InProcessRuntime()
    async with Swarm(agents=[OtherWorker()], runtime=runtime) as swarm:
        assert await (await swarm.submit(Other(text="ok"))).result() == "OK"  # handler cached
        env = Envelope(
            id=new_id(),
            kind=Kind.TASK,
            type=Other.type_name,
            sender="t",
            recipient="role:other",
            payload=msgspec.Raw(msgspec.msgpack.encode({"text": 5})),
            max_attempts=3,
        )
        task_id = await runtime.submit(env)
        rec = await runtime.wait(task_id, timeout=10)
    # Not retried: a payload that does not fit its type never will.
    assert rec.state is TaskState.FAILED and rec.attempts == 1
    assert rec.error is not None and "payload of" in rec.error


def test_record_getter_is_get_nowait() -> None:
    ledger = InMemoryLedger()
    rec = ledger.create_nowait(TaskRecord(task_id="t1", type="x", recipient="role:r"))
    assert ledger.record_getter()("t1") is rec and ledger.record_getter()("t2") is None

    class Logged(InMemoryLedger):
        def get_nowait(self, task_id: str) -> TaskRecord | None:
            return None

    logged = Logged()
    assert logged.record_getter() == logged.get_nowait


def test_task_envelopes_keep_explicit_fields_with_or_without_defaults() -> None:
    codec = Codec()
    plain = task_envelope(codec, Work(n=1), "q", 3, "role:worker", reply_to="n1", now=5.0)
    full = task_envelope(codec, Work(n=1), "q", 3, "role:worker", 2, 9.0, "", "n1", 4, now=5.0)
    assert (plain.priority, plain.deadline, plain.idempotency_key, plain.epoch) == (
        0,
        None,
        None,
        0,
    )
    assert (plain.created_at, plain.reply_to, plain.max_attempts) == (5.0, "n1", 3)
    # An empty idempotency key is a key: it must not be dropped with the defaults.
    assert (full.priority, full.deadline, full.idempotency_key, full.epoch) == (2, 9.0, "", 4)
    assert msgspec.structs.replace(
        full, priority=0, deadline=None, idempotency_key=None, epoch=0
    ) == (msgspec.structs.replace(plain, id=full.id))


async def test_bare_role_names_are_qualified_every_time() -> None:
    async with Swarm(agents=[OtherWorker()]) as swarm:
        for _ in range(3):
            assert await (await swarm.submit(Other(text="x"), to="other")).result() == "X"
            assert await (await swarm.submit(Other(text="y"), to="role:other")).result() == "Y"


async def test_sole_replica_follows_registrations() -> None:
    runtime = InProcessRuntime()
    await runtime.start()
    try:
        a, b, c = (OtherWorker(agent_id=i) for i in ("a", "b", "c"))

        async def run() -> str:
            env = task_envelope(runtime.codec, Other(text="x"), "t", 1, "role:other")
            return (await runtime.wait(await runtime.submit(env), timeout=10)).agent_id or ""

        await runtime.register(a)
        assert await run() == "a"
        await runtime.register(b)
        await runtime.kill("a")
        assert await run() == "b"  # one replica again: the one left
        await runtime.unregister("b")
        await runtime.register(c)
        assert await run() == "c"
    finally:
        await runtime.stop()
