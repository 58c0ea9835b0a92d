"""RedisRuntime.send's common path: one await per task, store errors still raised."""

from __future__ import annotations

from typing import Any

import pytest

from swarm.errors import TransportError
from swarm.redis.bulk import StoreOp
from swarm.redis.streams import Pipeline
from tests.fakes import Board, Work, Worker
from tests.redis.runtime_support import cleanup, make_runtime, new_prefix, redis_client

pytestmark = pytest.mark.integration


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

        def broken(pipe: Pipeline, ops: list[StoreOp]) -> None:
            pipe.execute_command("NO-SUCH-COMMAND")

        stored: dict[Any, Any] = dict(intake._builders)
        intake._builders.update({key: broken for key in stored})
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
