"""Settlement of deliveries in the Redis runtime: complete, retry, redeliver, dead-letter.

Every outcome updates the ledger, tells the submitter (a note in its inbox
stream) and acks the entry. On a standalone server a completion is one
script (ledger, note and ack together); on Redis Cluster the three are
separate commands in one pipeline, the ack last, so a crash in between
leaves the entry pending and it is redelivered rather than lost.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import msgspec

from swarm import constants as C
from swarm.contract import charged
from swarm.errors import DecodeError, MessageTooLarge
from swarm.ledger import FINAL_STATES, TaskRecord, TaskState
from swarm.messages import Envelope
from swarm.metrics import DUPLICATE_SETTLEMENTS, REJECTED, TASK_RETRIES, TASKS_DEAD
from swarm.redis.bulk import FirstDone, MarkBatch, RunningMark, SettleOp, queue_settle
from swarm.redis.core import Core, Delivery, role_of
from swarm.redis.streams import ACK, DEAD, REQUEUE, RETRY, Pipeline

__all__ = ["DUPLICATE", "Settler", "count_duplicate"]

#: A settle script's reply for an operation whose record was already final.
DUPLICATE = 2


def count_duplicate(reply: Any) -> bool:
    """Count (and say) whether a settle reply is a duplicate settlement.

    Final states are absorbing (:data:`swarm.ledger.MOVES`): such a
    settlement only acked its entry. ``reply`` is one operation's reply of
    :data:`~swarm.redis.bulk.SETTLE_MANY`, or of the ledger's update script.
    """
    if reply == DUPLICATE or (isinstance(reply, list) and reply and reply[0] == b"final"):
        DUPLICATE_SETTLEMENTS.inc()
        return True
    return False

_RECORD_ENCODER = msgspec.msgpack.Encoder()
_SETTLE_KEY = ("settle",)
# A module global: an enum member read through its class costs ~0.1 us.
_DONE = TaskState.DONE


class _Note(msgspec.Struct, gc=False):
    """A :class:`~swarm.ledger.TaskRecord` built from positional arguments.

    Same fields in the same order, so it encodes to the same MessagePack map;
    a keyword-only struct of sixteen fields costs twice as much to build.
    """

    task_id: str
    type: str
    recipient: str
    state: TaskState
    attempts: int
    priority: int
    idempotency_key: str | None
    agent_id: str | None
    error: str | None
    result: bytes | None
    result_type: str
    created_at: float
    started_at: float | None
    finished_at: float | None
    executions: int
    epoch: int


class Settler:
    """Records the outcome of a delivery and acks its entry.

    Args:
        core: The runtime's shared state.
    """

    def __init__(self, core: Core) -> None:
        self._core = core
        # The marks queued for the next settle script: one batcher item for
        # all of them rather than one per task.
        self._marks: MarkBatch | None = None

    async def complete(
        self,
        d: Delivery,
        state: TaskState,
        *,
        error: str | None = None,
        result: bytes | None = None,
        result_type: str | None = None,
    ) -> None:
        """Record a final state, notify the submitter and ack, in one round trip."""
        if not self._core.cluster:
            reply = await self.finish(d, state, error=error, result=result, result_type=result_type)
            if isinstance(reply, Exception):
                raise reply
            if not count_duplicate(reply):
                self._finished(d, state)
            return
        core = self._core
        env = d.envelope
        ledger = core.ledger
        note = self.note(d, state, error=error, result=result, result_type=result_type)
        inbox = C.inbox_stream(env.reply_to, core.prefix) if env.reply_to else None

        # Cluster: the record, the entry and the inbox are in different
        # slots, so the move goes first and the note only follows a legal one
        # (a crash in between leaves the entry pending: its redelivery finds
        # the record final and only acks; the submitter reads the ledger).
        (moved,) = await core.batch.call(
            lambda pipe: ledger.queue_update(
                pipe,
                env.id,
                state,
                quiet=True,
                attempts=env.attempt,
                error=error,
                result=result,
                result_type=result_type,
            )
        )
        if isinstance(moved, Exception):
            raise moved
        duplicate = count_duplicate(moved)
        if duplicate:
            # Final states are absorbing: the history keeps the first final record.
            await self._ack(d)
            return
        if core.writer is not None:
            core.writer.add(env.id, note)

        def build(pipe: Pipeline) -> None:
            if inbox is not None:
                pipe.xadd(
                    inbox, {"r": note}, maxlen=core.inbox_maxlen, approximate=True, nomkstream=True
                )
            pipe.eval(ACK, 1, d.stream, C.TASK_GROUP, d.entry_id)

        for reply in await core.batch.call(build):
            if isinstance(reply, Exception):
                raise reply
        self._finished(d, state)

    def _finished(self, d: Delivery, state: TaskState) -> None:
        meters = self._core.meters(d.stream)
        if meters is None:
            return
        latency = time.time() - d.envelope.created_at
        if state is _DONE:
            meters.done += 1
            meters.latency.observe(latency)
        else:
            meters.finish(state.value, latency)

    def finish(
        self,
        d: Delivery,
        state: TaskState,
        *,
        error: str | None = None,
        result: bytes | None = None,
        result_type: str | None = None,
    ) -> asyncio.Future[Any]:
        """:meth:`complete` on a standalone server, up to its reply's future.

        The future gets the reply, or the error as a value; a worker awaits it
        directly (no coroutine of its own per task).
        """
        core = self._core
        env = d.envelope
        # Not waiting for the "running" mark of a first delivery: the batcher
        # runs calls in order, so it lands before this, often in the same
        # script call, which then writes both at once. A first delivery has
        # no earlier execution to count.
        key = d.record_key
        first = bool(key)
        if not first:
            key = core.ledger.key(env.id)
        reply_to = env.reply_to
        notify: tuple[str, bytes] | None = None
        note: bytes | None = None
        if reply_to or core.writer is not None:
            note = self.note(d, state, error=error, result=result, result_type=result_type)
            if reply_to:
                notify = (C.inbox_stream(reply_to, core.prefix), note)
        # One script for the ledger, the note and the ack, shared with the
        # other completions and "running" marks of this loop turn.
        fields: list[Any] = [b"attempts", env.attempt]
        if error is not None:
            fields += (b"error", error)
        if result is not None:
            fields += (b"result", result)
        if result_type is not None:
            fields += (b"result_type", result_type)
        op = SettleOp(
            key,
            state.value,
            fields,
            ack=(d.stream, d.entry_id),
            notify=notify,
            mark=d if first else None,
        )
        return self._to_history(self.add(op), env.id, note)

    def done(self, d: Delivery, result: bytes, result_type: str) -> asyncio.Future[Any]:
        """:meth:`finish` of a handler's result, the common case as a :data:`FirstDone`."""
        env = d.envelope
        key = d.record_key
        reply_to = env.reply_to
        if not key or not reply_to:
            return self.finish(d, _DONE, result=result, result_type=result_type)
        # A first delivery (its "running" mark queued) whose submitter wants
        # the result: a tuple, not an op object, per task.
        core = self._core
        note = self.note(d, _DONE, error=None, result=result, result_type=result_type)
        item: FirstDone = (
            d,
            key,
            d.stream,
            d.entry_id,
            C.inbox_stream(reply_to, core.prefix),
            note,
            result,
            result_type,
        )
        return self._to_history(self.add(item), env.id, note)

    def _to_history(
        self, settled: asyncio.Future[Any], task_id: str, note: bytes | None
    ) -> asyncio.Future[Any]:
        """Hand ``note`` to the task history once the settle script made the move.

        Only a legal move (reply 1) reaches the history: a late settlement of a
        task already final elsewhere must not replace its first final record
        there either (final states are absorbing).
        """
        writer = self._core.writer
        if writer is None or note is None:
            return settled

        def written(f: asyncio.Future[Any]) -> None:
            if not f.cancelled() and f.exception() is None and f.result() == 1:
                writer.add(task_id, note)

        settled.add_done_callback(written)
        return settled

    def add(self, op: SettleOp | FirstDone) -> asyncio.Future[Any]:
        """Queue a ledger move (standalone servers) for the next shared settle script."""
        return self._core.batch.add(_SETTLE_KEY, self._build, op)

    def mark(self, d: Delivery) -> None:
        """Queue the "running" mark of a first delivery (``record_key`` and ``agent_id`` set).

        Nobody waits for its reply. When the delivery's completion joins the
        same settle script, both are one write (see :func:`queue_settle`).
        """
        marks = self._marks
        batch = self._core.batcher
        # A batch already built, or queued on a batcher since replaced (the
        # runtime restarted), takes no more marks.
        if marks is None or marks.taken or marks.owner is not batch:
            assert batch is not None
            marks = self._marks = MarkBatch(batch)
            batch.put(_SETTLE_KEY, self._build, marks)
        marks.append(d)

    def _build(
        self, pipe: Pipeline, ops: list[SettleOp | RunningMark | MarkBatch | FirstDone]
    ) -> None:
        queue_settle(
            pipe,
            ops,
            now=time.time(),
            ttl=self._core.ledger.ttl,
            group=C.TASK_GROUP,
            maxlen=self._core.inbox_maxlen,
        )

    @staticmethod
    def note(
        d: Delivery,
        state: TaskState,
        *,
        error: str | None,
        result: bytes | None,
        result_type: str | None,
    ) -> bytes:
        """The final record as the ledger script will write it, encoded for the submitter."""
        env = d.envelope
        base = d.record
        now = time.time()
        if base is None:
            # A first delivery: the record is the queued one plus this run.
            return _RECORD_ENCODER.encode(
                _Note(
                    env.id,
                    env.type,
                    env.recipient,
                    state,
                    env.attempt,
                    env.priority,
                    env.idempotency_key,
                    d.agent_id,
                    error,
                    result,
                    result_type or "",
                    env.created_at,
                    d.started_at or None,
                    now,
                    1 if state is _DONE else 0,
                    env.epoch,
                )
            )
        return _RECORD_ENCODER.encode(
            TaskRecord(
                task_id=base.task_id,
                type=base.type,
                recipient=base.recipient,
                state=state,
                attempts=env.attempt,
                priority=base.priority,
                idempotency_key=base.idempotency_key,
                agent_id=base.agent_id,
                error=error if error is not None else base.error,
                result=result,
                result_type=result_type or "",
                created_at=base.created_at,
                started_at=base.started_at,
                finished_at=now,
                executions=base.executions + (1 if state is _DONE else 0),
                epoch=base.epoch,
            )
        )

    async def settle_duplicate(self, d: Delivery, record: TaskRecord) -> None:
        """Ack a redelivered copy of a finished task (counted as a duplicate; no note).

        The submitter heard the one final result already, or reads it from
        the ledger: a second note could only repeat it.
        """
        DUPLICATE_SETTLEMENTS.inc()
        await self._ack(d)

    async def abandon(self, envelopes: list[bytes], error: str) -> None:
        """Record dead the tasks moved to the dead letters with a buried agent's stream.

        A task whose record is already final keeps it; the others' submitters
        are told.
        """
        core = self._core
        ledger = core.ledger
        for data in envelopes:
            try:
                env = core.codec.decode(data)
            except (DecodeError, MessageTooLarge):
                REJECTED.labels(reason="malformed_dead_letter").inc()
                continue
            TASKS_DEAD.inc()

            def build(pipe: Pipeline, task_id: str = env.id) -> None:
                ledger.queue_update(pipe, task_id, TaskState.DEAD, guard=True, error=error)

            (reply,) = await core.batch.call(build)
            record, kept = ledger.parse_update(reply)
            if record is None or kept:
                continue
            note = _RECORD_ENCODER.encode(record)
            if core.writer is not None:
                core.writer.add(record.task_id, note)
            if env.reply_to:
                inbox = C.inbox_stream(env.reply_to, core.prefix)
                await core.redis.xadd(
                    inbox, {"r": note}, maxlen=core.inbox_maxlen, approximate=True, nomkstream=True
                )

    async def fail(self, d: Delivery, error: str) -> None:
        """A handler failed: schedule the next attempt, or dead-letter the last."""
        env = d.envelope
        if env.attempt >= env.max_attempts:
            await self.dead_letter(d, error)
            return
        TASK_RETRIES.inc()
        nxt = msgspec.structs.replace(env, attempt=env.attempt + 1)
        due = time.time() + self._core.retry.backoff(env.attempt)
        await self._schedule(d, nxt, due, error)

    async def _schedule(self, d: Delivery, nxt: Envelope, due: float, error: str) -> None:
        core = self._core
        role = role_of(d.stream)
        member = d.stream.encode() + b"\n" + core.codec.encode(nxt)
        # The move first: a retry of a task finished elsewhere (reclaimed
        # while this attempt ran) is refused, and its entry only acked.
        if await self._refused(d, TaskState.QUEUED, error=error):
            return

        def build(pipe: Pipeline) -> None:
            pipe.eval(
                RETRY,
                2,
                d.stream,
                C.delayed_key(role, core.prefix),
                C.TASK_GROUP,
                d.entry_id,
                repr(due),
                member,
            )

        await core.batch.call(build)

    async def redeliver(self, d: Delivery, reason: str) -> None:
        """An interrupted delivery: back to its stream.

        A crash, timeout or cancellation counts as an attempt (the next one
        goes back); a hand-back (:func:`swarm.contract.charged`) is free: the
        same attempt goes back and the ledger's attempts are written down to
        the ones before it, as though this start had not happened.
        """
        env = d.envelope
        if not charged(reason):
            if not await self._refused(d, TaskState.QUEUED, error=reason, attempts=env.attempt - 1):
                await self.requeue(d, env)
            return
        nxt = msgspec.structs.replace(env, attempt=env.attempt + 1)
        if nxt.attempt > nxt.max_attempts:
            await self.dead_letter(d, reason)
            return
        if await self._refused(d, TaskState.QUEUED, error=reason):
            return
        await self.requeue(d, nxt)

    async def _refused(self, d: Delivery, state: TaskState, **fields: Any) -> bool:
        """Move the record of ``d``; if the move is refused (already final), ack and count it."""
        ledger = self._core.ledger
        (reply,) = await self._core.batch.call(
            lambda pipe: ledger.queue_update(pipe, d.envelope.id, state, quiet=True, **fields)
        )
        if isinstance(reply, Exception):
            raise reply
        if not count_duplicate(reply):
            return False
        await self._ack(d)
        return True

    async def _ack(self, d: Delivery) -> None:
        core = self._core
        await core.batch.call(lambda pipe: pipe.eval(ACK, 1, d.stream, C.TASK_GROUP, d.entry_id))

    async def requeue(self, d: Delivery, env: Envelope) -> None:
        """Ack the entry of ``d`` and append ``env`` to the same stream, atomically."""
        core = self._core
        await core.redis.eval(
            REQUEUE, 2, d.stream, d.stream, C.TASK_GROUP, d.entry_id, core.codec.encode(env)
        )

    async def dead_letter(self, d: Delivery, error: str) -> None:
        """Move the entry to its role's dead-letter stream, record it dead and notify."""
        core = self._core
        env = d.envelope
        state = await core.redis.hget(core.ledger.key(env.id), "state")
        if state is not None and state.decode() in FINAL_STATES:
            # Finished (or dead-lettered) elsewhere meanwhile: absorbing.
            DUPLICATE_SETTLEMENTS.inc()
            await self._ack(d)
            return
        TASKS_DEAD.inc()
        role = role_of(d.stream)
        data = core.codec.encode(env)
        note = self.note(d, TaskState.DEAD, error=error, result=None, result_type=None)
        if core.writer is not None:
            core.writer.add(env.id, note)
        ledger = core.ledger

        def build(pipe: Pipeline) -> None:
            # The move comes first: should we die half-way, the ledger still
            # says "running" and the dead letter is listed, rather than a
            # "dead" task that is in no queue.
            pipe.eval(
                DEAD,
                2,
                d.stream,
                C.dead_letter_stream(role, core.prefix),
                C.TASK_GROUP,
                d.entry_id,
                data,
                error,
                repr(time.time()),
                C.DEAD_LETTER_MAXLEN,
            )
            ledger.queue_update(pipe, env.id, TaskState.DEAD, attempts=env.attempt, error=error)
            if env.reply_to:
                pipe.xadd(
                    C.inbox_stream(env.reply_to, core.prefix),
                    {"r": note},
                    maxlen=core.inbox_maxlen,
                    approximate=True,
                    nomkstream=True,
                )

        replies = await core.batch.call(build)
        for reply in replies:
            if isinstance(reply, Exception):
                raise reply
        self._finished(d, TaskState.DEAD)
