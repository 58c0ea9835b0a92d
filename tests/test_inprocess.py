"""InProcessRuntime details the conformance suite does not reach: waiters, task ids, the
synchronous submit path and handles."""

from __future__ import annotations

import asyncio
import time

import pytest

from swarm import InProcessRuntime, NoRouteError, Swarm, SwarmTimeout, TaskHandle
from swarm.envelopes import task_envelope
from swarm.ledger import InMemoryLedger, TaskRecord, TaskState
from swarm.messages import Envelope, new_id
from tests.fakes import Board, Other, Work, Worker


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
