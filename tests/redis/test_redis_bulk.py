"""The many-task scripts against the real server: same effects as the per-task ones."""

from __future__ import annotations

import pytest

from swarm.ledger import TaskRecord, TaskState
from swarm.messages import Envelope, Kind, new_id
from swarm.redis.bulk import SettleOp, StoreOp, queue_settle, queue_store
from swarm.redis.ledger import RedisLedger
from tests.redis.runtime_support import cleanup, new_prefix, redis_client

pytestmark = pytest.mark.integration


async def test_store_then_settle_many_matches_the_ledger_rules() -> None:
    redis = await redis_client()
    prefix = new_prefix()
    ledger = RedisLedger(redis=redis, prefix=prefix)
    stream, inbox = f"{prefix}:{{r}}:tasks:1", f"{prefix}:{{inbox}}:results"
    try:
        await redis.xgroup_create(stream, "g", id="0", mkstream=True)
        recs = [TaskRecord(task_id=t, type="T", recipient="role:r") for t in ("a", "b", "c")]
        pipe = redis.pipeline(transaction=False)
        queue_store(
            pipe,
            [StoreOp(ledger.key(r.task_id), stream, ledger.flat_fields(r), b"env") for r in recs],
            ttl=60,
            fence=None,
            epoch=0,
        )
        (ids,) = await pipe.execute()
        assert len(ids) == 3
        await redis.xreadgroup("g", "w", {stream: ">"})
        await redis.delete(ledger.key("c"))  # expired meanwhile: left alone, not acked
        pipe = redis.pipeline(transaction=False)
        queue_settle(
            pipe,
            [
                SettleOp(ledger.key("a"), "running", [b"attempts", 1, b"agent_id", b"w"]),
                SettleOp(ledger.key("b"), "running", [b"attempts", 1, b"agent_id", b"w"]),
                SettleOp(
                    ledger.key("a"),
                    "done",
                    [b"attempts", 1, b"result", b"\xc0"],
                    ack=(stream, ids[0]),
                    notify=(inbox, b"note-a"),
                ),
                SettleOp(ledger.key("c"), "failed", [b"attempts", 1], ack=(stream, ids[2])),
            ],
            now=1000.0,
            ttl=60,
            group="g",
            maxlen=100,
        )
        assert await pipe.execute() == [[1, 1, 1, 0]]
        a, b = await ledger.get("a"), await ledger.get("b")
        assert a is not None and b is not None
        assert (a.state, a.executions, a.agent_id, a.result) == (TaskState.DONE, 1, "w", b"\xc0")
        assert (a.started_at, a.finished_at) == (1000.0, 1000.0)
        assert (b.state, b.started_at, b.finished_at) == (TaskState.RUNNING, 1000.0, None)
        assert [f[b"r"] for _, f in await redis.xrange(inbox)] == [b"note-a"]
        pending = await redis.xpending_range(stream, "g", min="-", max="+", count=10)
        assert sorted(p["message_id"] for p in pending) == sorted([ids[1], ids[2]])
        assert await redis.xlen(stream) == 2  # the acked entry is deleted
    finally:
        await cleanup(redis, prefix)
        await redis.aclose()


def test_task_fields_are_the_flat_fields_of_the_queued_record() -> None:
    for extra in ({}, {"priority": 3}, {"epoch": 7, "idempotency_key": "k"}, {"priority": -1}):
        env = Envelope(
            id=new_id(),
            kind=Kind.TASK,
            type="T",
            sender="s",
            recipient="role:r",
            payload=b"\xc0",
            created_at=1234.5,
            **extra,  # type: ignore[arg-type]
        )
        record = TaskRecord.for_task(env)
        assert RedisLedger.task_fields(env) == RedisLedger.flat_fields(record)
