"""Supervised background loops: a loop that raises is logged, counted and restarted."""

from __future__ import annotations

import asyncio

from swarm.metrics import BACKGROUND_RESTARTS
from swarm.tasks import UNHEALTHY_AFTER, TaskSet


def _restarts(label: str) -> float:
    return BACKGROUND_RESTARTS.labels(task=label)._value.get()


async def test_a_loop_that_raises_is_restarted_and_counted() -> None:
    tasks = TaskSet("t")
    runs: list[int] = []
    steady = asyncio.Event()

    async def loop() -> None:
        runs.append(1)
        if len(runs) < 3:
            raise RecursionError("a poison message")
        steady.set()
        await asyncio.Event().wait()

    before = _restarts("sup-test-a")
    task = tasks.supervise(loop, name="a", label="sup-test-a")
    await asyncio.wait_for(steady.wait(), 5)
    assert len(runs) == 3 and _restarts("sup-test-a") == before + 2
    assert not task.done()
    assert tasks.healthy  # two failures in a row: not yet unhealthy
    await tasks.close()
    assert task.cancelled()


async def test_a_loop_that_keeps_failing_makes_the_set_unhealthy() -> None:
    tasks = TaskSet("t")
    failed = asyncio.Event()
    count = 0

    async def loop() -> None:
        nonlocal count
        count += 1
        if count >= UNHEALTHY_AFTER:
            failed.set()
        raise ValueError("bug")

    tasks.supervise(loop, name="b", label="sup-test-b")
    await asyncio.wait_for(failed.wait(), 5)
    # The failure is recorded before the backoff sleep.
    assert not tasks.healthy
    assert tasks.failing["sup-test-b"] >= UNHEALTHY_AFTER
    await tasks.close()
    assert tasks.healthy  # a stopped loop no longer counts


async def test_a_loop_that_returns_is_done_and_cancellation_is_not_a_failure() -> None:
    tasks = TaskSet("t")

    async def once() -> None:
        return None

    task = tasks.supervise(once, name="c", label="sup-test-c")
    await task
    before = _restarts("sup-test-c")
    blocker = tasks.supervise(lambda: asyncio.Event().wait(), name="d", label="sup-test-c")
    await asyncio.sleep(0)
    blocker.cancel()
    await asyncio.gather(blocker, return_exceptions=True)
    assert _restarts("sup-test-c") == before and tasks.healthy
