"""A deposed Queen's dispatches are refused where they land: in Redis, by epoch."""

from __future__ import annotations

import asyncio

import pytest

from discovery import FencedWriter
from swarm import Envelope, FencingError, Message, Queen, task_envelope
from swarm.metrics import FENCED_REFUSED
from swarm.redis import RedisRuntime
from tests.fakes import Board, Work, Worker
from tests.redis.runtime_support import cleanup, make_runtime, new_prefix, redis_client

pytestmark = pytest.mark.integration


def stamped(runtime: RedisRuntime, msg: Message, epoch: int) -> Envelope:
    return task_envelope(
        runtime.codec,
        msg,
        sender="queen",
        to="role:worker",
        max_attempts=3,
        reply_to=runtime.node_id,
        epoch=epoch,
    )


async def test_stale_epoch_is_refused_and_counted_current_passes() -> None:
    redis = await redis_client()
    prefix = new_prefix()
    runtime = make_runtime(redis, prefix, fence="queen")
    board = Board()
    try:
        await runtime.start()
        await runtime.register(Worker(board))
        writer = FencedWriter(redis=redis, name="queen", prefix=prefix)
        assert await writer.advance(2) == 2  # a new leader took over with epoch 2
        before = FENCED_REFUSED.labels(name="queen")._value.get()
        stale = stamped(runtime, Work(n=1), epoch=1)
        with pytest.raises(FencingError, match="older than 2"):
            await runtime.submit(stale)
        assert FENCED_REFUSED.labels(name="queen")._value.get() == before + 1
        assert await runtime.ledger.get(stale.id) is None  # nothing was written
        current = await runtime.submit(stamped(runtime, Work(n=2), epoch=2))
        unstamped = await runtime.submit(stamped(runtime, Work(n=3), epoch=0))
        for tid in (current, unstamped):
            rec = await runtime.wait(tid, timeout=10)
            assert rec.state.value == "done"
        assert sorted(board.finished_ns()) == [2, 3]
    finally:
        await runtime.stop(drain=False)
        await cleanup(redis, prefix)
        await redis.aclose()


async def test_queen_intake_stamps_its_epoch_and_is_fenced_after_takeover() -> None:
    redis = await redis_client()
    prefix = new_prefix()
    runtime = make_runtime(redis, prefix, fence="queen")
    board = Board()
    try:
        await runtime.start()
        await runtime.register(Worker(board))
        writer = FencedWriter(redis=redis, name="queen", prefix=prefix)
        epoch = 1
        await writer.advance(epoch)
        queen = Queen(runtime=runtime, queen_id="q-old")
        queen.intake.epoch = lambda: epoch
        assert await (await queen.submit(Work(n=5))).result(timeout=10) == 10
        await writer.advance(7)  # another Queen leads now
        with pytest.raises(FencingError):
            await queen.submit(Work(n=6))
        assert board.finished_ns() == [5]
    finally:
        await runtime.stop(drain=False)
        await cleanup(redis, prefix)
        await redis.aclose()


async def test_submits_of_one_loop_turn_are_fenced_by_their_own_epoch() -> None:
    # Submits issued together share one script call per epoch: a stale one
    # must not sink the current ones, nor slip through with them.
    redis = await redis_client()
    prefix = new_prefix()
    runtime = make_runtime(redis, prefix, fence="queen")
    board = Board()
    try:
        await runtime.start()
        await runtime.register(Worker(board))
        await FencedWriter(redis=redis, name="queen", prefix=prefix).advance(3)
        envs = [stamped(runtime, Work(n=i), epoch=(1, 3, 0)[i % 3]) for i in range(30)]
        outcomes = await asyncio.gather(
            *(runtime.submit(env) for env in envs), return_exceptions=True
        )
        for env, outcome in zip(envs, outcomes, strict=True):
            if env.epoch == 1:
                assert isinstance(outcome, FencingError)
                assert await runtime.ledger.get(env.id) is None
            else:
                assert outcome == env.id
                assert (await runtime.wait(env.id, timeout=10)).state.value == "done"
        assert sorted(board.finished_ns()) == [i for i in range(30) if i % 3]
    finally:
        await runtime.stop(drain=False)
        await cleanup(redis, prefix)
        await redis.aclose()
