"""InProcessRuntime details the conformance suite does not reach: waiters and task ids."""

from __future__ import annotations

import asyncio
import time

import pytest

from swarm import InProcessRuntime, SwarmTimeout
from swarm.envelopes import task_envelope
from swarm.messages import new_id
from tests.fakes import Board, Work, Worker


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
