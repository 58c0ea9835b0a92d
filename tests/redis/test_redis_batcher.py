"""PipelineBatcher against the real server: grouped items share one command, in order."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from redis.asyncio.retry import Retry
from redis.exceptions import ConnectionError, ResponseError

from swarm.redis.connections import PipelineConnection, use_hiredis_packer
from swarm.redis.streams import Pipeline, PipelineBatcher
from swarm.tasks import TaskSet
from tests.redis.runtime_support import redis_client

pytestmark = pytest.mark.integration

# Replies with its arguments: one reply entry per grouped item.
ECHO = "return ARGV"
FAIL = "return redis.error_reply('NOPE ' .. #ARGV)"


async def test_items_of_one_turn_share_one_command_and_get_their_own_reply() -> None:
    redis = await redis_client()
    tasks = TaskSet("batcher-test")
    batcher = PipelineBatcher(redis, max_group=4)
    tasks.spawn(batcher.run(), name="batcher")
    groups: list[list[Any]] = []

    def echo(pipe: Pipeline, items: list[Any]) -> None:
        groups.append(list(items))
        pipe.eval(ECHO, 0, *items)

    def fail(pipe: Pipeline, items: list[Any]) -> None:
        pipe.eval(FAIL, 0, *items)

    try:
        futs = [batcher.add("echo", echo, f"a{i}") for i in range(6)]
        bad = [batcher.add("fail", fail, f"b{i}") for i in range(2)]
        assert await asyncio.gather(*futs) == [f"a{i}".encode() for i in range(6)]
        # At most ``max_group`` items per command; items of one turn are not split further.
        assert groups == [["a0", "a1", "a2", "a3"], ["a4", "a5"]]
        errors = await asyncio.gather(*bad)
        assert all(isinstance(e, ResponseError) and "NOPE 2" in str(e) for e in errors)
        # A group already sent takes no more items: the next turn opens a new one.
        assert await batcher.add("echo", echo, "c") == b"c"
        assert groups[-1] == ["c"]
    finally:
        await tasks.close()
        await redis.aclose()


async def test_written_returns_once_the_queued_calls_are_sent() -> None:
    redis = await redis_client()
    tasks = TaskSet("batcher-test")
    batcher = PipelineBatcher(redis)
    tasks.spawn(batcher.run(), name="batcher")
    try:
        await batcher.written()  # nothing queued: at once
        fut = batcher.enqueue(lambda pipe: pipe.echo("one"))
        await batcher.written()
        # Sent, its reply not read yet: a reader that waited here issues its
        # next read behind this round trip, not before it.
        assert batcher._flushing and not fut.done()
        # While a round trip is in flight, later calls do not make it wait a
        # whole round trip.
        later = batcher.enqueue(lambda pipe: pipe.echo("two"))
        await batcher.written()
        assert not later.done()
        assert await fut == [b"one"] and await later == [b"two"]
    finally:
        await tasks.close()
        await redis.aclose()


async def test_round_trips_share_one_held_connection_which_reconnects(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # redis-py hands a pipeline's connection back under asyncio.shield (a task
    # of its own, two loop turns before the caller sees its replies).
    shielded: list[object] = []
    shield = asyncio.shield

    def spy(aw: Any) -> Any:
        shielded.append(aw)
        return shield(aw)

    monkeypatch.setattr(asyncio, "shield", spy)
    redis = await redis_client()
    other = await redis_client()
    # As the runtime's own clients on the fast path: the held connection is its.
    assert use_hiredis_packer(redis)
    tasks = TaskSet("batcher-test")
    batcher = PipelineBatcher(redis)
    task = tasks.spawn(batcher.run(), name="batcher")
    pool = redis.connection_pool
    try:
        ids = [(await batcher.call(lambda pipe: pipe.client_id()))[0] for _ in range(3)]
        assert len(set(ids)) == 1 and len(pool._in_use_connections) == 1
        assert shielded == []
        # A connection the server dropped is made again for the next round trip.
        await other.client_kill_filter(_id=ids[0])
        try:
            again = await batcher.call(lambda pipe: pipe.client_id())
        except ConnectionError:  # the round trip that found it dropped
            again = await batcher.call(lambda pipe: pipe.client_id())
        assert again[0] != ids[0] and isinstance(again[0], int)
        assert len(pool._in_use_connections) == 1
    finally:
        task.cancel()
        await tasks.close()
        # Handed back when the batcher stops.
        assert not pool._in_use_connections
        await redis.aclose()
        await other.aclose()


class _BrokenPipeline:
    """A pipeline whose round trip fails, as on a dropped connection."""

    def __init__(self) -> None:
        self.commands: list[Any] = []

    def __len__(self) -> int:
        return len(self.commands)

    def eval(self, *args: Any) -> None:
        self.commands.append(args)

    async def execute(self, raise_on_error: bool = True) -> list[Any]:
        raise ConnectionError("connection lost")


class _BrokenRedis:
    def pipeline(self, transaction: bool = True) -> _BrokenPipeline:
        return _BrokenPipeline()


async def test_a_failed_round_trip_reaches_grouped_items_as_values_and_spares_put_items() -> None:
    tasks = TaskSet("batcher-broken")
    batcher = PipelineBatcher(_BrokenRedis())
    tasks.spawn(batcher.run(), name="batcher")

    def build(pipe: Pipeline, items: list[Any]) -> None:
        pipe.eval(ECHO, 0, *items)

    try:
        batcher.put("k", build, "mark")  # no future: nothing to report to
        futs = [batcher.add("k", build, f"a{i}") for i in range(3)]
        replies = await asyncio.gather(*futs)
        # Errors as values: a caller that drops its future leaves no
        # "exception never retrieved" behind.
        assert all(isinstance(r, ConnectionError) for r in replies)
        with pytest.raises(ConnectionError):
            await batcher.call(lambda pipe: pipe.eval(ECHO, 0))
    finally:
        await tasks.close()


async def test_a_held_pipeline_runs_directly_and_retries_a_dropped_connection(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    redis = await redis_client()
    other = await redis_client()
    retried: list[object] = []
    call_with_retry = Retry.call_with_retry

    async def spy(self: Retry, *args: Any, **kwargs: Any) -> Any:
        retried.append(args)
        return await call_with_retry(self, *args, **kwargs)

    monkeypatch.setattr(Retry, "call_with_retry", spy)
    # As the runtime's own clients: the direct path needs the hiredis packer.
    assert use_hiredis_packer(redis)
    held = PipelineConnection(redis)
    try:
        pipe = held.pipeline()
        pipe.client_id()
        (first,) = await pipe.execute()  # makes the connection: redis-py's path
        retried.clear()
        pipe = held.pipeline()
        pipe.set("held-test", "1")
        pipe.eval(FAIL, 0, "x")
        pipe.get("held-test")
        replies = await pipe.execute(raise_on_error=False)
        # Replies parsed as redis-py parses them; an error reply in its place.
        assert replies[0] is True and replies[2] == b"1"
        assert isinstance(replies[1], ResponseError)
        pipe = held.pipeline()
        pipe.eval(FAIL, 0, "x")
        with pytest.raises(ResponseError):
            await pipe.execute()
        assert not pipe.command_stack and held.held is not None
        assert retried == []  # the live held connection: no retry wrapper
        # A connection the server dropped: the pipeline runs again on a new one.
        await other.client_kill_filter(_id=first)
        pipe = held.pipeline()
        pipe.client_id()
        (again,) = await pipe.execute()
        assert again != first and retried  # through redis-py's retrying path
    finally:
        await held.close()
        await redis.delete("held-test")
        await redis.aclose()
        await other.aclose()


class _Watcher:
    def __init__(self) -> None:
        self.failures: list[Exception] = []
        self.cancelled = False

    def failed(self, error: Exception) -> None:
        self.failures.append(error)

    def cancel(self) -> None:
        self.cancelled = True


async def test_watchers_hear_of_failures_and_cancellation_only() -> None:
    redis = await redis_client()
    tasks = TaskSet("batcher-watch")
    batcher = PipelineBatcher(redis)
    task = tasks.spawn(batcher.run(), name="batcher")

    def echo(pipe: Pipeline, items: list[Any]) -> None:
        pipe.eval(ECHO, 0, *items)

    def fail(pipe: Pipeline, items: list[Any]) -> None:
        pipe.eval(FAIL, 0, *items)

    try:
        ok, bad = _Watcher(), _Watcher()
        batcher.watch("echo", echo, "w", ok)
        fut = batcher.add("echo", echo, "a")
        batcher.watch("fail", fail, "w", bad)
        failed = batcher.add("fail", fail, "b")
        # Items of one group keep their places: the future gets its own entry.
        assert await fut == b"a"
        assert ok.failures == [] and not ok.cancelled
        error = await failed
        assert isinstance(error, ResponseError)
        assert bad.failures == [error]
        # The batcher stops with a watched item queued: its watcher hears of it.
        late = _Watcher()
        batcher.watch("echo", echo, "late", late)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        assert late.cancelled and late.failures == []
    finally:
        await tasks.close()
        await redis.aclose()
