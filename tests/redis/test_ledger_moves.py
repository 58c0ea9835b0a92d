"""One state machine: every Redis script that moves a record follows swarm.ledger.MOVES.

For every pair of states, the ledger's update script and both branches of
SETTLE_MANY (a general move, and a first delivery's "running"+"done" in one)
move a record iff MOVES allows it. A refused move leaves the record as it
was, sends no note, still acks its entry, and replies as a duplicate.
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from typing import Any

import pytest
from redis.asyncio import Redis

from swarm import constants as C
from swarm.ledger import TaskState, legal_move
from swarm.redis.bulk import SettleOp, queue_settle
from swarm.redis.ledger import RedisLedger
from swarm.redis.settle import DUPLICATE
from swarm.redis.streams import ensure_group
from tests.redis.runtime_support import cleanup, new_prefix, redis_client

pytestmark = pytest.mark.integration

PAIRS = list(itertools.product(TaskState, TaskState))


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


async def _record(redis: Redis, prefix: str, state: TaskState) -> tuple[RedisLedger, str]:
    ledger = RedisLedger(redis=redis, prefix=prefix)
    key = ledger.key("t")
    await redis.hset(
        key,
        mapping={
            "task_id": "t",
            "type": "T",
            "recipient": "role:r",
            "state": state.value,
            "result": b"first",
            "created_at": "1.0",
        },
    )
    return ledger, key


async def _entry(redis: Redis, prefix: str) -> tuple[str, bytes]:
    stream = C.task_stream("r", 1, prefix)
    await ensure_group(redis, stream, C.TASK_GROUP)
    await redis.xadd(stream, {"e": b"x"})
    reply = await redis.xreadgroup(C.TASK_GROUP, "c", {stream: ">"}, count=1)
    return stream, reply[0][1][0][0]


async def _inbox(redis: Redis, prefix: str) -> str:
    # Notes go only to an inbox that exists (its owner made it: NOMKSTREAM).
    inbox = C.inbox_stream("n", prefix)
    await redis.xadd(inbox, {"x": b""})
    await redis.xtrim(inbox, maxlen=0)
    return inbox


async def _acked(redis: Redis, stream: str) -> bool:
    return int((await redis.xpending(stream, C.TASK_GROUP))["pending"]) == 0


@pytest.mark.parametrize(("prev", "new"), PAIRS)
async def test_update_script_follows_the_table(
    redis: Redis, prefix: str, prev: TaskState, new: TaskState
) -> None:
    ledger, _key = await _record(redis, prefix, prev)
    stream, entry = await _entry(redis, prefix)
    inbox = await _inbox(redis, prefix)
    pipe = redis.pipeline(transaction=False)
    ledger.queue_update(
        pipe,
        "t",
        new,
        result=b"second",
        then_ack=(stream, C.TASK_GROUP, entry),
        then_notify=(inbox, b"note", 100),
    )
    (reply,) = await pipe.execute()
    rec = await ledger.get("t")
    assert rec is not None and await _acked(redis, stream)
    if legal_move(prev, new):
        assert rec.state is new and rec.result == b"second" and not ledger.refused(reply)
        assert await redis.xlen(inbox) == 1
    else:
        assert rec.state is prev and rec.result == b"first" and ledger.refused(reply)
        assert await redis.xlen(inbox) == 0
        assert await ledger.update("t", new, result=b"third") is None


@pytest.mark.parametrize(("prev", "new"), PAIRS)
async def test_settle_many_follows_the_table(
    redis: Redis, prefix: str, prev: TaskState, new: TaskState
) -> None:
    ledger, key = await _record(redis, prefix, prev)
    stream, entry = await _entry(redis, prefix)
    inbox = await _inbox(redis, prefix)
    op = SettleOp(
        key, new.value, [b"result", b"second"], ack=(stream, entry), notify=(inbox, b"\xc0")
    )
    pipe = redis.pipeline(transaction=False)
    queue_settle(pipe, [op], now=2.0, ttl=60, group=C.TASK_GROUP, maxlen=100)
    ((reply,),) = await pipe.execute()
    rec = await ledger.get("t")
    assert rec is not None and await _acked(redis, stream)
    if legal_move(prev, new):
        assert (reply, rec.state, rec.result) == (1, new, b"second")
        assert await redis.xlen(inbox) == 1
    else:
        assert (reply, rec.state, rec.result) == (DUPLICATE, prev, b"first")
        assert await redis.xlen(inbox) == 0


class _Mark:
    def __init__(self, key: str) -> None:
        self.record_key = key
        self.agent_id = "a"
        self.mark: Any = None


@pytest.mark.parametrize("prev", list(TaskState))
async def test_settle_many_first_delivery_follows_the_table(
    redis: Redis, prefix: str, prev: TaskState
) -> None:
    ledger, key = await _record(redis, prefix, prev)
    stream, entry = await _entry(redis, prefix)
    inbox = await _inbox(redis, prefix)
    mark = _Mark(key)
    ops: list[Any] = [mark]
    ops.append((mark, key, stream, entry, inbox, b"\xc0", b"second", ""))
    pipe = redis.pipeline(transaction=False)
    queue_settle(pipe, ops, now=2.0, ttl=60, group=C.TASK_GROUP, maxlen=100)
    (replies,) = await pipe.execute()
    rec = await ledger.get("t")
    assert rec is not None and await _acked(redis, stream)
    if legal_move(prev, TaskState.DONE):
        assert replies[1] == 1 and rec.state is TaskState.DONE and rec.executions == 1
        assert await redis.xlen(inbox) == 1
    else:
        assert replies[1] == DUPLICATE and rec.state is prev and rec.result == b"first"
        assert rec.executions == 0 and await redis.xlen(inbox) == 0


async def test_create_with_a_key_is_one_task_under_a_race(redis: Redis, prefix: str) -> None:
    # The Ledger Protocol's create (an in-process runtime on a Redis ledger):
    # claim and store in one step, so concurrent creators share one task.
    import asyncio

    from swarm.ledger import TaskRecord

    clients = [await redis_client() for _ in range(4)]
    try:
        ledgers = [RedisLedger(redis=c, prefix=prefix) for c in clients]

        async def create(n: int, i: int) -> str:
            rec = TaskRecord(task_id=f"t{n}-{i}", type="T", recipient="r", idempotency_key=f"k{n}")
            return (await ledgers[i % 4].create(rec)).task_id

        for first in range(0, 200, 5):
            keys = range(first, first + 5)
            made = await asyncio.gather(*(create(n, i) for n in keys for i in range(8)))
            for j, n in enumerate(keys):
                assert len(set(made[j * 8 : j * 8 + 8])) == 1, n
    finally:
        for c in clients:
            await c.aclose()
