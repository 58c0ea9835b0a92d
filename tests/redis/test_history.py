"""The task history: finished records leave Redis after the retention; PostgreSQL keeps them."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator, Sequence

import asyncpg  # type: ignore[import-untyped]
import pytest

from swarm import Agent, Message, handler
from swarm.errors import ConfigError, HistoryUnavailable, Reject, TaskFailed
from swarm.history import HistorySettings, HistoryWriter, PostgresHistory
from swarm.history.options import add_options, settings_from
from swarm.ledger import InMemoryLedger, TaskRecord, TaskState
from tests.discovery.util import eventually
from tests.redis.runtime_support import cleanup, make_runtime, new_prefix, redis_client
from tests.redis_server import free_port
from tests.servers import require_postgres


def _rec(
    i: int, state: TaskState = TaskState.DONE, *, type: str = "Ping", at: float = 0.0
) -> TaskRecord:
    return TaskRecord(
        task_id=f"t{i:04d}",
        type=type,
        recipient="role:r",
        state=state,
        attempts=1,
        result=b"\xc0" if state is TaskState.DONE else None,
        result_type="NoneType",
        error=None if state is TaskState.DONE else "boom",
        created_at=at or 1000.0 + i,
        started_at=(at or 1000.0 + i) + 0.5,
        finished_at=(at or 1000.0 + i) + 1.0,
        executions=1 if state is TaskState.DONE else 0,
    )


@pytest.fixture
async def store() -> AsyncIterator[PostgresHistory]:
    dsn = require_postgres()
    schema = f"hist_{os.urandom(5).hex()}"
    history = PostgresHistory(HistorySettings(dsn=dsn, schema=schema))
    await history.start()
    try:
        yield history
    finally:
        await history.close()
        conn = await asyncpg.connect(dsn)
        try:
            await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        finally:
            await conn.close()


@pytest.mark.integration
async def test_history_writes_batches_and_answers_queries(store: PostgresHistory) -> None:
    assert store.applied_migrations == [1]
    done = [_rec(i) for i in range(10)]
    failed = [_rec(i, TaskState.FAILED, type="Other") for i in range(10, 15)]
    await store.write(done + failed)
    # A task finished again (a re-drive): its latest finish wins, an older one does not.
    again = _rec(3, TaskState.DEAD, at=5000.0)
    await store.write([again, _rec(3, TaskState.FAILED, at=10.0)])
    assert await store.count() == 15
    assert await store.get("t0003") == again
    assert await store.get("t0001") == done[1]
    assert await store.get("nope") is None
    newest = await store.query(limit=3)
    assert [r.task_id for r in newest] == ["t0003", "t0014", "t0013"]
    assert [r.task_id for r in await store.query(state="failed", limit=100)] == [
        f"t{i:04d}" for i in range(14, 9, -1)
    ]
    assert {r.type for r in await store.query(type="Ping", limit=100)} == {"Ping"}
    window = await store.query(since=1003.0, until=1006.0, limit=100)
    # finished_at of t{i} is 1001 + i: 1003 and 1005 are in (t3 finished again
    # later), 1006 is not.
    assert [r.finished_at for r in window] == [1005.0, 1003.0]
    # Keyset pages cover everything once, newest first.
    seen: list[str] = []
    before = None
    while True:
        page = await store.query(limit=4, before=before)
        if not page:
            break
        seen += [r.task_id for r in page]
        before = (page[-1].finished_at or 0.0, page[-1].task_id)
    assert len(seen) == len(set(seen)) == 15
    exported = [r async for chunk in store.export(chunk=4) for r in chunk]
    assert sorted(r.task_id for r in exported) == sorted(seen)


@pytest.mark.integration
async def test_bad_queries_are_config_errors(store: PostgresHistory) -> None:
    with pytest.raises(ConfigError, match="unknown task state"):
        await store.query(state="nonsense")
    with pytest.raises(ConfigError, match="finished tasks only"):
        await store.query(state="running")
    with pytest.raises(ConfigError, match="limit"):
        await store.query(limit=0)


async def test_an_unreachable_history_is_a_swarm_error_not_an_asyncpg_one() -> None:
    port = free_port()
    history = PostgresHistory(
        HistorySettings(dsn=f"postgresql://postgres@127.0.0.1:{port}/none", command_timeout=2)
    )
    with pytest.raises(HistoryUnavailable, match="task history"):
        await history.start()
    with pytest.raises(HistoryUnavailable, match="not started"):
        await history.get("x")


def test_history_settings_and_cli_options() -> None:
    with pytest.raises(ConfigError, match="retention"):
        HistorySettings(retention=0)
    with pytest.raises(ConfigError, match="postgresql"):
        HistorySettings.from_dsn("mysql://h/db")
    with pytest.raises(ConfigError, match="inbox_maxlen"):
        HistorySettings(inbox_maxlen=10)
    with pytest.raises(ConfigError, match="number"):
        HistorySettings.from_dsn("postgresql://h/db?retention=soon")
    s = HistorySettings.from_dsn("postgresql://u@h/db?schema=h1&sslmode=disable&batch_max=100")
    assert (s.dsn, s.schema, s.batch_max) == ("postgresql://u@h/db?sslmode=disable", "h1", 100)
    import argparse

    p = argparse.ArgumentParser()
    add_options(p)
    args = p.parse_args(["--retention", "30", "--inbox-ttl", "20"])
    s = settings_from(args, {"SWARM_RETENTION": "99", "SWARM_INBOX_MAXLEN": "500"})
    assert (s.retention, s.inbox_ttl, s.inbox_maxlen, s.dsn) == (30.0, 20.0, 500, None)
    with pytest.raises(ConfigError, match="SWARM_HISTORY_KEEP"):
        settings_from(p.parse_args([]), {"SWARM_HISTORY_KEEP": "many"})


async def test_the_writer_keeps_a_failed_batch_and_writes_it_when_the_sink_is_back() -> None:
    written: list[TaskRecord] = []
    failures = 2
    attempt = asyncio.Event()

    async def sink(records: Sequence[TaskRecord]) -> None:
        nonlocal failures
        attempt.set()
        if failures:
            failures -= 1
            raise HistoryUnavailable("down")
        written.extend(records)

    import msgspec

    writer = HistoryWriter(HistorySettings(flush_interval=0.01), sink=sink)
    task = asyncio.create_task(writer.run())
    try:
        enc = msgspec.msgpack.Encoder()
        for i in range(5):
            writer.add(f"t{i:04d}", enc.encode(_rec(i)))
        assert await writer.flushed(timeout=10)
        assert [r.task_id for r in written] == [f"t{i:04d}" for i in range(5)]
        assert failures == 0 and writer.written == 5
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


class Ping(Message):
    n: int


class Pong(Agent):
    role = "history-pong"

    @handler
    async def ping(self, msg: Ping) -> int:
        if msg.n < 0:
            raise Reject("negative")
        return msg.n * 2


@pytest.mark.integration
async def test_finished_records_leave_redis_and_lookups_fall_through_to_postgres(
    store: PostgresHistory,
) -> None:
    redis = await redis_client()
    prefix = new_prefix()
    settings = store.settings.replace(retention=1)
    runtime = make_runtime(redis, prefix, history=settings)
    try:
        await runtime.register(Pong(agent_id="p1"))
        for n in range(20):
            assert await runtime.send(Ping(n=n), sender="t") == n * 2
        with pytest.raises(TaskFailed):
            await runtime.send(Ping(n=-1), sender="t")
        assert await runtime.flush_history(timeout=10)
        rows = await runtime.history.query(limit=100)
        assert len(rows) == 21
        ids = [r.task_id for r in rows]
        assert [r.state for r in await runtime.history.query(state="failed")] == [TaskState.FAILED]
        # After the retention nothing of a finished task is left in Redis ...
        ledger = runtime.ledger

        async def gone() -> bool:
            return not await redis.exists(*[ledger.key(t) for t in ids])

        await eventually(gone, within=20, what="the finished records to leave Redis")
        # ... and lookups fall through to the history.
        rec = await runtime.ledger.get(ids[0])
        assert rec is not None and rec.final
        waited = await runtime.wait(ids[-1], timeout=5)
        assert waited.task_id == ids[-1] and waited.state is TaskState.DONE
    finally:
        await runtime.stop(drain=False)
        await cleanup(redis, prefix)
        await redis.aclose()


@pytest.mark.integration
async def test_without_postgres_redis_keeps_finished_records_by_count_and_age() -> None:
    redis = await redis_client()
    prefix = new_prefix()
    runtime = make_runtime(redis, prefix, history=HistorySettings(keep=5, retention=60))
    try:
        await runtime.register(Pong(agent_id="p1"))
        for n in range(20):
            assert await runtime.send(Ping(n=n), sender="t") == n * 2
        ledger = runtime.ledger

        async def at_most_keep() -> bool:
            keys = [k async for k in redis.scan_iter(match=ledger.key("*"))]
            return len(keys) <= 5

        await eventually(
            at_most_keep, within=20,
            what="the count bound to evict the oldest records",
        )
        kept = await runtime.history.query(limit=100)
        assert 1 <= len(kept) <= 5
        for r in kept:
            assert 0 < await redis.ttl(ledger.key(r.task_id)) <= 60
    finally:
        await runtime.stop(drain=False)
        await cleanup(redis, prefix)
        await redis.aclose()


def test_both_clis_take_the_retention_and_history_options() -> None:
    from swarm.agent.cli import parse_args, settings_of
    from swarm.cli import build_parser
    from swarm.cli import settings_from as queen_settings

    argv = ["--retention", "42", "--inbox-maxlen", "2000", "--postgres", "postgresql://h/db"]
    queen = queen_settings(build_parser().parse_args(["--redis", "redis://h:6379/0", *argv]), {})
    assert (queen.history.retention, queen.history.inbox_maxlen) == (42.0, 2000)
    assert queen.history.dsn == "postgresql://h/db"
    agent = settings_of(parse_args(["pkg.mod:Cls", *argv]), {})
    assert agent.history == queen.history
    # The environment is read too; the options win over it.
    env = {"SWARM_RETENTION": "7", "SWARM_INBOX_TTL": "30"}
    assert queen_settings(build_parser().parse_args(["--retention", "8"]), env).history == (
        HistorySettings(retention=8, inbox_ttl=30)
    )
    # One database for memory and history: the memory tier's schema is not the history's.
    shared = queen_settings(build_parser().parse_args([]), {
        "SWARM_POSTGRES_URL": "postgresql://h/db?schema=mem&sslmode=disable"
    })
    assert shared.history.dsn == "postgresql://h/db?sslmode=disable"
    assert shared.history.schema == "queenswarm_history"
    with pytest.raises(ConfigError, match="retention"):
        queen_settings(build_parser().parse_args(["--retention", "0"]), {})


async def test_the_embedded_ledger_keeps_finished_records_by_count_and_age() -> None:
    by_count = InMemoryLedger(max_final=3)
    for i in range(10):
        await by_count.create(TaskRecord(task_id=f"c{i:02d}", type="T", recipient="r"))
        await by_count.update(f"c{i:02d}", TaskState.DONE)
    assert [t for t in (f"c{i:02d}" for i in range(10)) if await by_count.get(t)] == [
        "c07", "c08", "c09"
    ]
    by_age = InMemoryLedger(max_age=60)
    old = TaskRecord(task_id="old", type="T", recipient="r")
    await by_age.create(old)
    await by_age.create(TaskRecord(task_id="live", type="T", recipient="r"))
    await by_age.update("old", TaskState.DONE)
    old.finished_at = time.time() - 120  # finished two minutes ago
    for i in range(10_001):  # the age bound is looked at every 10 000 finished tasks
        rec = await by_age.create(TaskRecord(task_id=f"n{i:05d}", type="T", recipient="r"))
        by_age.running_nowait(rec.task_id, 1, "a")
        by_age.done_nowait(rec.task_id, 1, b"\xc0", "NoneType")
    assert await by_age.get("old") is None
    assert await by_age.get("live") is not None  # live records are never evicted
    assert await by_age.get("n00000") is not None
    counts = await by_age.counts()
    assert counts[TaskState.DONE] == 10_001 and counts[TaskState.QUEUED] == 1


async def test_the_embedded_swarm_takes_retention_and_keep_too() -> None:
    from swarm.inprocess import InProcessRuntime
    from swarm.service.assembly import SwarmService
    from swarm.settings import SwarmSettings

    service = SwarmService(SwarmSettings(retention=60, history_keep=500), agents=[])
    runtime = await service._make_runtime(None)
    assert isinstance(runtime, InProcessRuntime)
    ledger = runtime.ledger
    assert isinstance(ledger, InMemoryLedger)
    assert (ledger._max_final, ledger._max_age) == (500, 60.0)


@pytest.mark.integration
async def test_what_a_killed_agent_had_not_yet_written_reaches_the_history(
    store: PostgresHistory, monkeypatch: pytest.MonkeyPatch
) -> None:
    from swarm import constants as C
    from swarm.redis import directory as directory_module

    monkeypatch.setattr(directory_module, "_STALE_AFTER", 2.0)
    monkeypatch.setattr(directory_module, "BURY_AFTER", 2.5)
    redis = await redis_client()
    prefix = new_prefix()
    # The victim's batches would wait an hour: what it finished is only in its buffer.
    victim_rt = make_runtime(redis, prefix, history=store.settings.replace(flush_interval=3600))
    survivor = make_runtime(redis, prefix, history=store.settings)
    try:
        await victim_rt.register(Pong(agent_id="victim"))
        for n in range(10):
            assert await victim_rt.send(Ping(n=n), to="agent:victim", sender="t") == 2 * n
        replicas = C.replicas_key("history-pong", prefix)
        last_beat = await redis.hget(replicas, "victim")
        writer = victim_rt._core.writer
        assert writer is not None and writer.buffered == 10
        writer._notes.clear()  # SIGKILL: the buffer dies with the process
        await victim_rt.kill("victim")
        await victim_rt.stop(drain=False)
        await redis.hset(replicas, "victim", last_beat)  # what a SIGKILL leaves
        assert await store.count() == 0
        await survivor.register(Pong(agent_id="survivor"))

        async def recovered() -> bool:
            return await store.count() == 10

        await eventually(
            recovered, within=20,
            what="the survivor to write the victim's last records",
        )
        assert {r.agent_id for r in await store.query(limit=100)} == {"victim"}
    finally:
        await victim_rt.stop(drain=False)
        await survivor.stop(drain=False)
        await cleanup(redis, prefix)
        await redis.aclose()
