"""RedisRuntime.send's common path: one await per task, store errors still raised."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from swarm.errors import TransportError
from swarm.redis.bulk import StoreOp
from swarm.redis.streams import Pipeline
from tests.fakes import Board, Work, Worker
from tests.redis.runtime_support import cleanup, make_runtime, new_prefix, redis_client

pytestmark = pytest.mark.integration


def _break_stores(runtime: Any) -> dict[Any, Any]:
    """Make the runtime's store scripts fail; return the builders that restore them."""
    intake = runtime._intake

    def broken(pipe: Pipeline, ops: list[StoreOp]) -> None:
        pipe.execute_command("NO-SUCH-COMMAND")

    stored: dict[Any, Any] = dict(intake._builders)
    intake._builders.update({key: broken for key in stored})
    return stored


async def test_send_gets_results_and_a_failed_store_raises_transport_error() -> None:
    redis = await redis_client()
    prefix = new_prefix()
    runtime = make_runtime(redis, prefix)
    try:
        await runtime.start()
        await runtime.register(Worker(Board()))
        assert await runtime.send(Work(n=2), to="role:worker", sender="t", timeout=10) == 4
        # Warm routing: the next sends take the watched store.
        assert await runtime.send(Work(n=3), to="role:worker", sender="t") == 6
        intake = runtime._intake
        stored = _break_stores(runtime)
        with pytest.raises(TransportError, match="could not submit task"):
            await runtime.send(Work(n=4), to="role:worker", sender="t")
        # Not left outstanding, no waiter left behind.
        assert runtime.outstanding == 0
        assert not runtime._results._expected and not runtime._results._waiters
        intake._builders.update(stored)
        assert await runtime.send(Work(n=5), to="role:worker", sender="t") == 10
    finally:
        await runtime.stop(drain=False)
        await cleanup(redis, prefix)
        await redis.aclose()


async def test_a_cancelled_send_leaves_no_waiter_and_its_task_still_finishes() -> None:
    redis = await redis_client()
    prefix = new_prefix()
    runtime = make_runtime(redis, prefix)
    board = Board()
    try:
        await runtime.start()
        await runtime.register(Worker(board))
        # Warm routing: the next send takes the watched store.
        assert await runtime.send(Work(n=1), to="role:worker", sender="t") == 2
        sending = asyncio.create_task(
            runtime.send(Work(n=2, mode="block"), to="role:worker", sender="t")
        )
        await board.wait_for(lambda b: any(r.n == 2 for r in b.started))
        sending.cancel()
        with pytest.raises(asyncio.CancelledError):
            await sending
        results = runtime._results
        assert not results._expected and not results._waiters
        assert runtime.outstanding == 1  # still running: its result is still ours
        board.release.set()
        async with asyncio.timeout(10):
            await results.idle.wait()
        assert runtime.outstanding == 0
    finally:
        await runtime.stop(drain=False)
        await cleanup(redis, prefix)
        await redis.aclose()


async def test_a_cancelled_send_whose_store_fails_is_not_left_outstanding() -> None:
    redis = await redis_client()
    prefix = new_prefix()
    runtime = make_runtime(redis, prefix)
    try:
        await runtime.start()
        await runtime.register(Worker(Board()))
        assert await runtime.send(Work(n=3), to="role:worker", sender="t") == 6  # warm routing
        stored = _break_stores(runtime)
        sending = asyncio.create_task(runtime.send(Work(n=4), to="role:worker", sender="t"))
        await asyncio.sleep(0)  # queued for the next store script
        assert runtime.outstanding == 1
        sending.cancel()
        with pytest.raises(asyncio.CancelledError):
            await sending
        # The store fails with nobody left to tell: the task exists nowhere, so it
        # must not stay outstanding (a drain would wait for it for ever).
        await asyncio.wait_for(runtime._results.idle.wait(), timeout=10)
        assert runtime.outstanding == 0
        runtime._intake._builders.update(stored)
    finally:
        await runtime.stop(drain=False)
        await cleanup(redis, prefix)
        await redis.aclose()
