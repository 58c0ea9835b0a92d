"""The many-task scripts against the real server: same effects as the per-task ones."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import msgspec
import pytest

from swarm.ledger import TaskRecord, TaskState
from swarm.messages import Envelope, Kind, new_id
from swarm.redis.bulk import MarkBatch, SettleOp, StoreOp, queue_settle, queue_store
from swarm.redis.core import Core, Delivery
from swarm.redis.ledger import RedisLedger
from swarm.redis.results import INBOX_KEEP, Results
from swarm.redis.settle import Settler, _Note
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
            fence=None,
            epoch=0,
        )
        (ids,) = await pipe.execute()
        assert len(ids) == 3
        assert await redis.ttl(ledger.key("a")) == -1  # live: no TTL
        await redis.xreadgroup("g", "w", {stream: ">"})
        await redis.delete(ledger.key("c"))  # deleted meanwhile: left alone, not acked
        # The inbox exists while its owner lives (notes never create one).
        await redis.eval(INBOX_KEEP, 1, inbox, "", 60_000)
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
        assert 0 < await redis.ttl(ledger.key("a")) <= 60  # finished: expires
        assert await redis.ttl(ledger.key("b")) == -1
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


async def test_store_ops_of_new_tasks_write_their_queued_records() -> None:
    # A StoreOp may carry the task instead of its record's fields: the hash
    # written must be the queued record's, whatever optional fields it has,
    # mixed with field-list ops and stream switches in one call.
    redis = await redis_client()
    prefix = new_prefix()
    ledger = RedisLedger(redis=redis, prefix=prefix)
    streams = [f"{prefix}:{{r}}:tasks:{band}" for band in (0, 1)]
    extras: list[dict[str, Any]] = [
        {},
        {"priority": 3},
        {"epoch": 7, "idempotency_key": "k"},
        {},
        {"priority": -1, "epoch": 2},
    ]
    envs = [
        Envelope(
            id=new_id(),
            kind=Kind.TASK,
            type="T",
            sender="s",
            recipient="role:r",
            payload=b"\xc0",
            # A clock reading: all its digits must survive the round trip.
            created_at=time.time() + i / 7,
            **extra,
        )
        for i, extra in enumerate(extras)
    ]
    try:
        ops = [
            StoreOp(ledger.key(env.id), streams[i // 2 % 2], None, env.id.encode(), env)
            if i != 3
            else StoreOp(
                ledger.key(env.id),
                streams[i // 2 % 2],
                ledger.flat_fields(TaskRecord.for_task(env)),
                env.id.encode(),
            )
            for i, env in enumerate(envs)
        ]
        pipe = redis.pipeline(transaction=False)
        queue_store(pipe, ops, fence=None, epoch=0)
        (ids,) = await pipe.execute()
        assert len(ids) == len(envs)
        for i, env in enumerate(envs):
            assert await ledger.get(env.id) == TaskRecord.for_task(env)
            (entry,) = await redis.xrange(streams[i // 2 % 2], ids[i], ids[i])
            assert entry[1] == {b"e": env.id.encode()}
        with pytest.raises(ValueError):
            StoreOp("k", streams[0], None, b"e")
    finally:
        await cleanup(redis, prefix)
        await redis.aclose()


async def test_settle_many_over_streams_and_inboxes_sends_one_note_entry_per_inbox() -> None:
    redis = await redis_client()
    prefix = new_prefix()
    ledger = RedisLedger(redis=redis, prefix=prefix)
    streams = [f"{prefix}:{{r}}:tasks:{band}" for band in (0, 1)]
    inboxes = [f"{prefix}:{{inbox-{n}}}:results" for n in ("q1", "q2")]
    encoder = msgspec.msgpack.Encoder()
    try:
        for stream in streams:
            await redis.xgroup_create(stream, "g", id="0", mkstream=True)
        for inbox in inboxes:  # their owners live
            await redis.eval(INBOX_KEEP, 1, inbox, "", 60_000)
        recs = [TaskRecord(task_id=f"t{i}", type="T", recipient="role:r") for i in range(6)]
        # Tasks alternate between the streams: the script switches on every one.
        where = [streams[i % 2] for i in range(6)]
        pipe = redis.pipeline(transaction=False)
        queue_store(
            pipe,
            [
                StoreOp(ledger.key(r.task_id), s, ledger.flat_fields(r), r.task_id.encode())
                for r, s in zip(recs, where, strict=True)
            ],
            fence=None,
            epoch=0,
        )
        (ids,) = await pipe.execute()
        for stream in streams:
            await redis.xreadgroup("g", "w", {stream: ">"})
        for i, s in enumerate(where):
            (entry,) = await redis.xrange(s, ids[i], ids[i])
            assert entry[1] == {b"e": f"t{i}".encode()}
        running = [b"attempts", 1, b"agent_id", "w"]
        ops = [SettleOp(ledger.key(rec.task_id), "running", running) for rec in recs]
        for i, rec in enumerate(recs):
            note = encoder.encode(msgspec.structs.replace(rec, state=TaskState.DONE))
            # t0..t3 notify q1 or q2 in turn; t4 notifies nobody; t5 q1.
            notify = None if i == 4 else (inboxes[i % 2 if i < 4 else 0], note)
            ops.append(
                SettleOp(
                    ledger.key(rec.task_id),
                    "done",
                    [b"attempts", 1, b"result", b"\xc0"],
                    ack=(where[i], ids[i]),
                    notify=notify,
                )
            )
        pipe = redis.pipeline(transaction=False)
        queue_settle(pipe, ops, now=1000.0, ttl=60, group="g", maxlen=100)
        assert await pipe.execute() == [[1] * 12]
        for rec in recs:
            got = await ledger.get(rec.task_id)
            assert got is not None
            assert (got.state, got.executions, got.agent_id, got.attempts) == (
                TaskState.DONE,
                1,
                "w",
                1,
            )
            assert (got.started_at, got.finished_at) == (1000.0, 1000.0)
        for stream in streams:
            assert await redis.xlen(stream) == 0
            assert (await redis.xpending(stream, "g"))["pending"] == 0
        # One entry per inbox; several notes travel as one MessagePack array.
        (q1,) = await redis.xrange(inboxes[0])
        (q2,) = await redis.xrange(inboxes[1])
        decoder = msgspec.msgpack.Decoder(list[TaskRecord])
        assert [r.task_id for r in decoder.decode(q1[1][b"rs"])] == ["t0", "t2", "t5"]
        assert [r.task_id for r in decoder.decode(q2[1][b"rs"])] == ["t1", "t3"]
    finally:
        await cleanup(redis, prefix)
        await redis.aclose()


def test_results_resolve_every_note_of_an_array_entry() -> None:
    core = Core.__new__(Core)
    results = Results(core)
    loop = asyncio.new_event_loop()
    try:
        recs = [
            TaskRecord(task_id=f"t{i}", type="T", recipient="role:r", state=TaskState.DONE)
            for i in range(20)
        ]
        futs = {r.task_id: loop.create_future() for r in recs}
        for task_id, fut in futs.items():
            results._waiters[task_id] = [fut]
        results._on_result({b"rs": msgspec.msgpack.encode(recs)})
        assert all(fut.done() and fut.result().task_id == t for t, fut in futs.items())
        results._on_result({b"r": msgspec.msgpack.encode(recs[0])})  # single notes still work
    finally:
        loop.close()


async def test_an_expected_result_that_arrives_before_its_submitter_waits_is_kept() -> None:
    core = Core.__new__(Core)
    results = Results(core)
    record = TaskRecord(task_id="t1", type="T", recipient="role:r", state=TaskState.DONE)
    fut = results.expect("t1")
    results.track(Envelope(id="t1", kind=Kind.TASK, type="T", sender="s", recipient="role:r"))
    # The inbox reader resolves it before the submitting coroutine resumes.
    results._on_result({b"r": msgspec.msgpack.encode(record)})
    assert fut.done() and fut.result().task_id == "t1"
    assert results.idle.is_set()
    results.forget("t1", fut)
    assert "t1" not in results._waiters and "t1" not in results._expected
    # A submit that failed: the waiter is dropped unresolved.
    other = results.expect("t2")
    results.forget("t2", other)
    assert not other.done() and "t2" not in results._waiters and "t2" not in results._expected


async def _settle_with_notes(
    redis: Any, ledger: RedisLedger, stream: str, inbox: str, n: int, *, maxlen: int
) -> list[TaskRecord]:
    """Store ``n`` tasks, read them, and settle them all in one call with a note each."""
    recs = [TaskRecord(task_id=f"t{i}", type="T", recipient="role:r") for i in range(n)]
    ids = await _stored(redis, ledger, stream, [r.task_id for r in recs])
    await redis.eval(INBOX_KEEP, 1, inbox, "", 60_000)  # its owner lives
    encoder = msgspec.msgpack.Encoder()
    ops = [
        SettleOp(
            ledger.key(r.task_id),
            "done",
            [b"attempts", 1],
            ack=(stream, ids[i]),
            notify=(inbox, encoder.encode(r)),
        )
        for i, r in enumerate(recs)
    ]
    pipe = redis.pipeline(transaction=False)
    queue_settle(pipe, ops, now=1.0, ttl=60, group="g", maxlen=maxlen)
    assert await pipe.execute() == [[1] * n]
    return recs


async def test_settle_many_writes_a_long_note_array_with_a_16_bit_header() -> None:
    redis = await redis_client()
    prefix = new_prefix()
    ledger = RedisLedger(redis=redis, prefix=prefix)
    stream, inbox = f"{prefix}:{{r}}:tasks:1", f"{prefix}:{{inbox-q}}:results"
    try:
        recs = await _settle_with_notes(redis, ledger, stream, inbox, 40, maxlen=1000)
        (entry,) = await redis.xrange(inbox)
        notes = msgspec.msgpack.Decoder(list[TaskRecord]).decode(entry[1][b"rs"])
        assert [n.task_id for n in notes] == [r.task_id for r in recs]
    finally:
        await cleanup(redis, prefix)
        await redis.aclose()


async def test_a_note_array_entry_does_not_trim_unread_single_notes_below_maxlen() -> None:
    redis = await redis_client()
    prefix = new_prefix()
    ledger = RedisLedger(redis=redis, prefix=prefix)
    stream, inbox = f"{prefix}:{{r}}:tasks:1", f"{prefix}:{{inbox-q}}:results"
    try:
        # A reader that fell behind: 3 000 single notes it has not read yet.
        pipe = redis.pipeline(transaction=False)
        for i in range(3000):
            pipe.xadd(inbox, {"r": f"old{i}"})
        await pipe.execute()
        # 3 001 entries stay within a limit of 10 000 entries, however many
        # notes the new entry holds (10 000 / 200 notes would cut to ~50).
        await _settle_with_notes(redis, ledger, stream, inbox, 200, maxlen=10_000)
        assert await redis.xlen(inbox) == 3001
        (first,) = await redis.xrange(inbox, count=1)
        assert first[1] == {b"r": b"old0"}
    finally:
        await cleanup(redis, prefix)
        await redis.aclose()


class _Mark:
    """A :class:`~swarm.redis.bulk.RunningMark` (the runtime uses its Delivery)."""

    def __init__(self, record_key: str, agent_id: str = "w") -> None:
        self.record_key = record_key
        self.agent_id = agent_id
        self.mark: object = None


async def _stored(redis: Any, ledger: RedisLedger, stream: str, names: list[str]) -> list[bytes]:
    """Store and read tasks ``names``; return their entry ids."""
    await redis.xgroup_create(stream, "g", id="0", mkstream=True)
    recs = [TaskRecord(task_id=t, type="T", recipient="role:r") for t in names]
    pipe = redis.pipeline(transaction=False)
    queue_store(
        pipe,
        [StoreOp(ledger.key(r.task_id), stream, ledger.flat_fields(r), b"e") for r in recs],
        fence=None,
        epoch=0,
    )
    (ids,) = await pipe.execute()
    await redis.xreadgroup("g", "w", {stream: ">"})
    return list(ids)


async def _settle(redis: Any, ops: list[Any], now: float) -> list[Any]:
    pipe = redis.pipeline(transaction=False)
    queue_settle(pipe, ops, now=now, ttl=60, group="g", maxlen=100)
    (reply,) = await pipe.execute()
    return list(reply)


async def test_running_marks_are_written_with_their_completion_or_on_their_own() -> None:
    redis = await redis_client()
    prefix = new_prefix()
    ledger = RedisLedger(redis=redis, prefix=prefix)
    stream, inbox = f"{prefix}:{{r}}:tasks:1", f"{prefix}:{{inbox}}:results"
    names = ["quick", "slow", "late", "failed", "gone", "twice"]
    try:
        ids = dict(zip(names, await _stored(redis, ledger, stream, names), strict=True))
        await redis.eval(INBOX_KEEP, 1, inbox, "", 60_000)  # its owner lives
        marks = {t: _Mark(ledger.key(t)) for t in names}
        await redis.delete(ledger.key("gone"))  # expired meanwhile: left alone, not acked
        # Already done (finished elsewhere): absorbing, only its entry is acked,
        # no note, no second execution counted (reply 2: a duplicate).
        await redis.hset(ledger.key("twice"), mapping={"state": "done", "finished_at": "5.0"})
        await redis.hset(ledger.key("twice"), "executions", 1)

        def done(t: str, note: bytes) -> Any:
            return (marks[t], ledger.key(t), stream, ids[t], inbox, note, b"\xc0", "NoneType")

        # Most marks come as one batch (one item, one reply), some alone.
        batch = MarkBatch()
        batch += [marks[t] for t in ("quick", "slow", "late", "failed")]
        first: list[Any] = [batch, marks["gone"], marks["twice"]]
        first += [
            done("quick", b"\xa1q"),
            done("gone", b"\xa1g"),
            done("twice", b"\xa1t"),
            SettleOp(
                ledger.key("failed"),
                "failed",
                [b"attempts", 1, b"error", "boom"],
                ack=(stream, ids["failed"]),
                notify=(inbox, b"\xa1f"),
                mark=marks["failed"],
            ),
        ]
        # Replies in step with the items (the marks' placeholders say 1), then
        # those of the marks written on their own ("slow" and "late").
        assert await _settle(redis, first, 1000.0) == [1] * 3 + [1, 0, 2, 1] + [1, 1]
        assert all(m.mark is None for m in marks.values()) and batch.taken
        # "late" finishes in a later call: its mark was written on its own.
        assert await _settle(redis, [done("late", b"\xa1l")], 2000.0) == [1]
        got = {t: await ledger.get(t) for t in names}
        quick, slow, late = got["quick"], got["slow"], got["late"]
        failed, twice = got["failed"], got["twice"]
        assert got["gone"] is None
        assert quick is not None and slow is not None and late is not None
        assert failed is not None and twice is not None
        assert (quick.state, quick.attempts, quick.agent_id, quick.executions) == (
            TaskState.DONE,
            1,
            "w",
            1,
        )
        assert (quick.result, quick.result_type) == (b"\xc0", "NoneType")
        assert (quick.started_at, quick.finished_at) == (1000.0, 1000.0)
        assert (slow.state, slow.attempts, slow.agent_id) == (TaskState.RUNNING, 1, "w")
        assert (slow.started_at, slow.finished_at, slow.executions) == (1000.0, None, 0)
        assert (late.state, late.agent_id, late.executions) == (TaskState.DONE, "w", 1)
        assert (late.started_at, late.finished_at) == (1000.0, 2000.0)
        assert (failed.state, failed.error, failed.agent_id) == (TaskState.FAILED, "boom", "w")
        assert (failed.started_at, failed.finished_at, failed.executions) == (1000.0, 1000.0, 0)
        assert (twice.state, twice.executions, twice.agent_id) == (TaskState.DONE, 1, None)
        assert (twice.started_at, twice.finished_at) == (None, 5.0)
        notes = [f[b"rs"] if b"rs" in f else f[b"r"] for _, f in await redis.xrange(inbox)]
        assert notes == [b"\x92\xa1q\xa1f", b"\xa1l"]
        pending = await redis.xpending_range(stream, "g", min="-", max="+", count=10)
        assert sorted(p["message_id"] for p in pending) == sorted([ids["slow"], ids["gone"]])
        assert await redis.ttl(ledger.key("slow")) == -1  # still running: live, no TTL
        assert await redis.ttl(ledger.key("quick")) > 0
    finally:
        await cleanup(redis, prefix)
        await redis.aclose()


def test_a_first_delivery_note_is_the_projected_record() -> None:
    # The note is built positionally (a twin struct of TaskRecord): the
    # submitter must decode the very record the ledger script writes.
    assert _Note.__struct_fields__ == TaskRecord.__struct_fields__
    settler = Settler(Core.__new__(Core))
    decoder = msgspec.msgpack.Decoder(TaskRecord)
    for extra in ({}, {"priority": 3, "attempt": 2}, {"epoch": 7, "idempotency_key": "k"}):
        env = Envelope(
            id=new_id(),
            kind=Kind.TASK,
            type="T",
            sender="s",
            recipient="role:r",
            payload=b"\xc0",
            created_at=1234.5,
            reply_to="q",
            **extra,  # type: ignore[arg-type]
        )
        for started in (0.0, 1240.0):
            d = Delivery(env, b"1-1", "s", started_at=started, agent_id="w")
            for state, error, result, result_type in (
                (TaskState.DONE, None, b"\xc0", "NoneType"),
                (TaskState.FAILED, "boom", None, None),
            ):
                note = decoder.decode(
                    settler.note(d, state, error=error, result=result, result_type=result_type)
                )
                # The queued record plus this run.
                want = TaskRecord(
                    task_id=env.id,
                    type=env.type,
                    recipient=env.recipient,
                    state=state,
                    attempts=env.attempt,
                    priority=env.priority,
                    idempotency_key=env.idempotency_key,
                    agent_id="w",
                    error=error,
                    result=result,
                    result_type=result_type or "",
                    created_at=env.created_at,
                    started_at=started or None,
                    finished_at=time.time(),
                    executions=1 if state is TaskState.DONE else 0,
                    epoch=env.epoch,
                )
                assert note.finished_at is not None and want.finished_at is not None
                assert abs(note.finished_at - want.finished_at) < 60
                assert msgspec.structs.replace(note, finished_at=0.0) == msgspec.structs.replace(
                    want, finished_at=0.0
                )


def test_marks_share_one_batch_until_it_is_built_or_the_batcher_changes() -> None:
    class Batcher:
        def __init__(self) -> None:
            self.items: list[Any] = []

        def put(self, key: Any, build: Any, item: Any) -> None:
            self.items.append(item)

    core = Core.__new__(Core)
    core.batcher = first = Batcher()  # type: ignore[assignment]
    settler = Settler(core)
    env = Envelope(id="t", kind=Kind.TASK, type="T", sender="s", recipient="role:r")
    ds = [Delivery(env, b"1-1", "s") for _ in range(5)]
    settler.mark(ds[0])
    settler.mark(ds[1])
    assert first.items == [[ds[0], ds[1]]]
    first.items[0].taken = True  # a settle script holding it was built
    settler.mark(ds[2])
    assert first.items[1:] == [[ds[2]]]
    core.batcher = second = Batcher()  # type: ignore[assignment]
    settler.mark(ds[3])
    settler.mark(ds[4])
    assert second.items == [[ds[3], ds[4]]] and len(first.items) == 2
