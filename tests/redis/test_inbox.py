"""The Queen's inbox: RESP3 replies read like RESP2 ones, foreign entries are rejected."""

from __future__ import annotations

import asyncio

import msgspec
import pytest

from swarm.ledger import TaskRecord, TaskState
from swarm.metrics import REJECTED
from swarm.redis import RedisRuntime, RedisSettings
from swarm.redis.core import Core
from swarm.redis.results import Results
from tests.fakes import Board, Work, Worker
from tests.redis.runtime_support import cleanup, fast_retry, new_prefix, redis_client
from tests.servers import require_redis

pytestmark = pytest.mark.integration


async def test_send_and_wait_over_resp3() -> None:
    url = require_redis()
    settings = RedisSettings.from_dsn(url + ("&" if "?" in url else "?") + "protocol=3")
    assert settings.protocol == 3
    prefix = new_prefix()
    runtime = RedisRuntime(
        settings=settings, prefix=prefix, retry_policy=fast_retry(), block_time=0.5
    )
    redis = await redis_client()
    try:
        await runtime.start()
        await runtime.register(Worker(Board()))
        assert await runtime.send(Work(n=2), to="role:worker", sender="t", timeout=10) == 4
        assert await runtime.send(Work(n=3), to="role:worker", sender="t", timeout=10) == 6
    finally:
        await runtime.stop(drain=False)
        await cleanup(redis, prefix)
        await redis.aclose()


def test_foreign_inbox_entries_are_rejected_and_counted() -> None:
    core = Core.__new__(Core)
    results = Results(core)
    loop = asyncio.new_event_loop()
    try:
        record = TaskRecord(task_id="t1", type="T", recipient="role:r", state=TaskState.DONE)
        fut = loop.create_future()
        results._waiters["t1"] = [fut]
        counter = REJECTED.labels(reason="malformed_result")
        before = counter._value.get()
        note = msgspec.msgpack.encode(record)
        for fields in ([], [b"x", note], [b"r", note, b"extra", b"1"], [b"r", b"\xc1"]):
            results._on_result(fields)
        assert counter._value.get() == before + 4 and not fut.done()
        results._on_result([b"r", note])  # flat, as a raw read returns it
        assert fut.done() and fut.result() == record
    finally:
        loop.close()
