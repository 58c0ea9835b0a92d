"""The Redis ledger's TTL rules: a live task's record never expires; a finished one's does."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from swarm.ledger import TaskRecord, TaskState
from swarm.redis.bulk import SettleOp, queue_settle
from swarm.redis.ledger import RedisLedger
from tests.redis.runtime_support import cleanup, new_prefix, redis_client

pytestmark = pytest.mark.integration

TTL = 600


@pytest.fixture
async def ledger() -> AsyncIterator[RedisLedger]:
    redis = await redis_client()
    prefix = new_prefix()
    try:
        yield RedisLedger(redis=redis, prefix=prefix, ttl=TTL)
    finally:
        await cleanup(redis, prefix)
        await redis.aclose()


async def _settle(redis: Redis, key: str, state: str) -> None:
    """One ledger move through the settle script."""
    pipe = redis.pipeline(transaction=False)
    op = SettleOp(key, state, [b"attempts", 1])
    queue_settle(pipe, [op], now=1.0, ttl=TTL, group="g", maxlen=10)
    assert await pipe.execute() == [[1]]


def _redis(ledger: RedisLedger) -> Redis:
    redis = ledger.redis
    assert isinstance(redis, Redis)
    return redis


async def test_records_expire_only_once_final(ledger: RedisLedger) -> None:
    redis = _redis(ledger)
    key = ledger.key("t1")
    await ledger.create(TaskRecord(task_id="t1", type="T", recipient="role:r"))
    assert await redis.ttl(key) == -1  # queued: however long the backlog waits
    await ledger.update("t1", TaskState.RUNNING, attempts=1, agent_id="w")
    assert await redis.ttl(key) == -1
    await ledger.update("t1", TaskState.DEAD, attempts=1)
    assert 0 < await redis.ttl(key) <= TTL
    # Final states are absorbing: a plain move out is refused, TTL kept.
    assert await ledger.update("t1", TaskState.QUEUED, error="late") is None
    assert 0 < await redis.ttl(key) <= TTL
    # The one move out of a final state (a re-driven dead letter) is live again.
    assert await ledger.requeue_dead("t1") is True
    assert await redis.ttl(key) == -1
    assert (await ledger.get("t1")).finished_at is None  # type: ignore[union-attr]


async def test_a_record_created_final_expires(ledger: RedisLedger) -> None:
    redis = _redis(ledger)
    await ledger.create(
        TaskRecord(task_id="t2", type="T", recipient="role:r", state=TaskState.EXPIRED)
    )
    assert 0 < await redis.ttl(ledger.key("t2")) <= TTL


async def test_the_settle_script_keeps_the_same_rules(ledger: RedisLedger) -> None:
    redis = _redis(ledger)
    key = ledger.key("t3")
    await ledger.create(TaskRecord(task_id="t3", type="T", recipient="role:r"))
    for state, live in (("running", True), ("queued", True), ("failed", False)):
        await _settle(redis, key, state)
        ttl = await redis.ttl(key)
        assert ttl == -1 if live else 0 < ttl <= TTL, (state, ttl)


async def test_a_live_move_clears_a_ttl_from_an_earlier_release(ledger: RedisLedger) -> None:
    # Earlier releases set a TTL on every write: a record they queued must not
    # expire while it runs or waits for a retry under this one.
    redis = _redis(ledger)
    key = ledger.key("t4")
    await ledger.create(TaskRecord(task_id="t4", type="T", recipient="role:r"))
    await redis.expire(key, 30)
    await _settle(redis, key, "running")
    assert await redis.ttl(key) == -1
    await redis.expire(key, 30)
    await ledger.update("t4", TaskState.QUEUED, error="retry")
    assert await redis.ttl(key) == -1


async def test_requeue_dead_moves_only_a_dead_record(ledger: RedisLedger) -> None:
    redis = _redis(ledger)
    assert await ledger.requeue_dead("nope") is None
    await ledger.create(TaskRecord(task_id="t5", type="T", recipient="role:r"))
    await ledger.update("t5", TaskState.DEAD, attempts=3, error="boom")
    assert await ledger.requeue_dead("t5") is True
    rec = await ledger.get("t5")
    assert rec is not None and (rec.state, rec.attempts) == (TaskState.QUEUED, 0)
    assert await redis.ttl(ledger.key("t5")) == -1
    # A racing second re-drive finds it running (or done): left alone.
    await ledger.update("t5", TaskState.DONE, attempts=1)
    assert await ledger.requeue_dead("t5") is False
    rec = await ledger.get("t5")
    assert rec is not None and rec.state is TaskState.DONE
