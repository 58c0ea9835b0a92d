"""The consuming side of the Redis runtime: each replica's stream reader and workers.

A replica's reader first re-reads its own pending entries (a restart of the
same agent id), then new ones, best band first; it validates each entry and
queues it for the replica's workers, which run the handler and hand the
outcome to the :class:`~swarm.redis.settle.Settler`. Entries that are not
tasks for this replica are moved aside to the role's rejected stream.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

import msgspec
import structlog
from redis.exceptions import RedisError

from swarm import constants as C
from swarm import tracing
from swarm.agent.base import AgentState
from swarm.codec import Codec
from swarm.errors import DecodeError, EncodeError, MessageTooLarge, Reject
from swarm.ledger import TaskState
from swarm.logging import current_task_id
from swarm.messages import Kind
from swarm.metrics import REJECTED
from swarm.redis.connections import close_dedicated, dedicated
from swarm.redis.core import Core, Delivery, Replica, check_cancelled
from swarm.redis.settle import Settler, count_duplicate
from swarm.redis.streams import (
    FETCH,
    REJECT,
    REQUEUE,
    StreamEntry,
    ensure_group,
    parse_entries,
    parse_read,
)
from swarm.tracing import dispatch_span, handler_span, settle_span, tracing_enabled

__all__ = ["Consumer"]

_log = structlog.get_logger("swarm.redis.consumer")
_set_task_id = current_task_id.set

_REJECTED_MAXLEN = C.REJECTED_MAXLEN
# Module globals: an enum member read through its class costs ~0.1 us, and
# these are read several times per task.
_TASK = Kind.TASK
_BUSY, _READY = AgentState.BUSY, AgentState.READY


class Consumer:
    """Reads task entries for local replicas and runs them on their workers.

    Args:
        core: The runtime's shared state.
        settler: Records outcomes and acks entries.
    """

    def __init__(self, core: Core, settler: Settler) -> None:
        self._core = core
        self._settler = settler

    def start(self, rep: Replica) -> None:
        """Spawn the workers and the reader of a registered replica."""
        tasks = self._core.tasks
        agent_id = rep.agent.agent_id
        for i in range(rep.agent.concurrency):
            rep.workers.append(
                tasks.supervise(
                    lambda: self._worker(rep), name=f"{agent_id}:{i}", label=f"worker:{rep.role}"
                )
            )

    def start_reader(self, rep: Replica) -> None:
        """Spawn the reader of a replica (once it is in the directory)."""
        rep.reader = self._core.tasks.supervise(
            lambda: self._reader(rep),
            name=f"{rep.agent.agent_id}:reader",
            label=f"reader:{rep.role}",
        )

    async def stop_reader(self, rep: Replica) -> None:
        """Cancel a replica's reader and wait for it."""
        if rep.reader is not None:
            rep.reader.cancel()
            await asyncio.gather(rep.reader, return_exceptions=True)
            rep.reader = None

    async def return_queued(self, rep: Replica) -> None:
        """Return entries read but not started to their stream, with the attempt unchanged."""
        while not rep.queue.empty():
            d = rep.queue.get_nowait()
            rep.assigned -= 1
            with contextlib.suppress(RedisError):
                await self._settler.requeue(d, d.envelope)
        if rep.assigned == 0:
            rep.settled.set()

    async def give_back(self, rep: Replica) -> None:
        """Return the entries still pending for a leaving replica to their streams."""
        # A cancelled blocking read may have been served after we stopped
        # listening: those entries sit in our pending list; return them now
        # rather than after a visibility timeout.
        redis = self._core.redis
        try:
            raw = await redis.eval(
                FETCH, len(rep.streams), *rep.streams, C.TASK_GROUP, rep.agent.agent_id, 1000, "0"
            )
            for entry in parse_entries(raw):
                stream = rep.streams[entry.key_index]
                data = entry.get(b"e")
                if data is None:
                    continue
                await redis.eval(REQUEUE, 2, stream, stream, C.TASK_GROUP, entry.entry_id, data)
        except RedisError as exc:
            _log.warning("could not give back pending entries", error=repr(exc))

    # -- reading ------------------------------------------------------------
    async def _reader(self, rep: Replica) -> None:
        # One connection for this reader's blocking reads, kept across them.
        # Its reads' replies are parsed here (see ``parse_read``): redis-py
        # would first turn every entry's fields into a dict.
        blocking = dedicated(self._core.blocking, raw=("XREADGROUP",))
        try:
            await self._read(rep, blocking)
        finally:
            await close_dedicated(blocking, self._core.blocking)

    async def _read(self, rep: Replica, blocking: Any) -> None:
        core = self._core
        agent = rep.agent
        start = "0"  # our own pending entries first (a restart of this agent id)
        # Whether the last blocking read found the streams (nearly) drained:
        # then the next read blocks at once rather than first polling with
        # FETCH, one round trip fewer per task when tasks come one at a time.
        drained = False
        failures = 0
        while not rep.dead:
            check_cancelled()
            if not agent.accepting or rep.free <= 0 or not self._least_loaded(rep):
                await rep.wake.wait()
                rep.wake.clear()
                continue
            try:
                if drained:
                    entries, drained = await self._blocking_read(rep, blocking)
                else:
                    # Our own pending entries are read in one pass (re-reading
                    # them later would hand us the ones we are running again).
                    count = 10_000 if start == "0" else rep.free
                    raw = await core.redis.eval(
                        FETCH,
                        len(rep.streams),
                        *rep.streams,
                        C.TASK_GROUP,
                        agent.agent_id,
                        count,
                        start,
                    )
                    entries = parse_entries(raw)
                    if start == "0":
                        start = ">"
                    elif not entries:
                        entries, drained = await self._blocking_read(rep, blocking)
                failures = 0
            except (RedisError, OSError) as exc:
                check_cancelled()
                failures += 1
                if "NOGROUP" in str(exc):
                    # A stream (or the whole server's data) was lost: its
                    # group is gone. Make them again and read on at once.
                    await self._heal_groups(rep)
                    if failures == 1:
                        continue
                delay = min(2.0, 0.05 * 2 ** min(failures, 6))
                _log.warning("stream read failed", agent_id=agent.agent_id, error=repr(exc))
                await asyncio.sleep(delay)
                continue
            streams = rep.streams
            for entry in entries:
                stream = streams[entry.key_index]
                reason = self.take(rep, stream, entry)
                if reason is not None:
                    await self._reject(stream, entry.entry_id, reason, rep.role)
            if entries:
                # Once for the batch: this replica's load changed.
                core.wake_role(rep.role)
                # Let the workers start what we just handed them, and their
                # first round trip (the "running" mark, or with a quick handler
                # the whole settlement) go out before our next read: sending
                # the read first would delay that round trip by the read's
                # client-side cost, on every task when they come one at a time.
                await asyncio.sleep(0)
                await core.batch.written()

    async def _heal_groups(self, rep: Replica) -> None:
        """Re-create the consumer groups of a replica's streams (after NOGROUP)."""
        _log.warning("consumer group missing; re-creating", agent_id=rep.agent.agent_id)
        try:
            for stream in rep.streams:
                await ensure_group(self._core.redis, stream, C.TASK_GROUP)
        except (RedisError, OSError) as exc:
            _log.warning("could not re-create consumer groups", error=repr(exc))

    def _least_loaded(self, rep: Replica) -> bool:
        # Among this node's replicas of a role, only the least loaded read, so
        # that a task goes to an idle replica rather than a busy one.
        role = rep.role
        return all(
            rep.assigned <= r.assigned
            for r in self._core.replicas.values()
            if r.role == role and r is not rep and r.agent.accepting and r.free > 0
        )

    async def _blocking_read(self, rep: Replica, blocking: Any) -> tuple[list[StreamEntry], bool]:
        """Block for new entries; return them and whether fewer came than asked for."""
        count = max(1, rep.free)
        reply = await blocking.xreadgroup(
            C.TASK_GROUP,
            rep.agent.agent_id,
            dict.fromkeys(rep.streams, ">"),
            count=count,
            block=self._core.block_ms,
        )
        out = parse_read(reply, rep.streams)
        return out, len(out) < count

    async def accept(self, rep: Replica, stream: str, entry: StreamEntry) -> None:
        """Validate an entry and hand it to the replica's workers, or move it aside."""
        reason = self.take(rep, stream, entry)
        if reason is not None:
            await self._reject(stream, entry.entry_id, reason, rep.role)
            return
        self._core.wake_role(rep.role)

    def take(self, rep: Replica, stream: str, entry: StreamEntry) -> str | None:
        """Hand a valid entry to the replica's workers; else return why to move it aside.

        The caller wakes the role's readers (the replica's load changed): the
        stream reader once per batch rather than per entry.
        """
        fields = entry.fields
        if len(fields) != 2 or fields[0] != b"e":
            return "foreign"
        data = fields[1]
        try:
            env = self._core.codec.decode(data)
        except MessageTooLarge:
            return "oversized"
        except DecodeError:
            return "malformed"
        expected = rep.direct if stream == rep.streams[0] else rep.shared
        if env.kind is not _TASK or env.recipient != expected:
            return "foreign"
        rep.assigned += 1
        rep.settled.clear()
        d = Delivery(env, entry.entry_id, stream, read_at=time.monotonic())
        # Not charged here: a delivery that never started its handler (read
        # by an agent that died first, or waiting in its local queue) is no
        # attempt. The ledger's start script tells (see _start_again).
        d.redelivered = entry.deliveries > 1
        rep.queue.put_nowait(d)
        return None

    async def _reject(self, stream: str, entry_id: bytes, reason: str, role: str) -> None:
        REJECTED.labels(reason=reason).inc()
        _log.warning("rejected stream entry", stream=stream, entry_id=entry_id, reason=reason)
        try:
            await self._core.redis.eval(
                REJECT,
                2,
                stream,
                C.rejected_stream(role, self._core.prefix),
                C.TASK_GROUP,
                entry_id,
                reason,
                _REJECTED_MAXLEN,
            )
        except RedisError as exc:
            _log.warning("could not move a rejected entry aside", error=repr(exc))

    # -- execution ----------------------------------------------------------
    async def _worker(self, rep: Replica) -> None:
        me = asyncio.current_task()
        assert me is not None
        agent = rep.agent
        while True:
            d = await rep.queue.get()
            # Log lines of the handler (any logger) carry the task id.
            _set_task_id(d.envelope.id)
            try:
                if tracing._enabled:
                    with dispatch_span(d.envelope, agent.agent_id):
                        await self._execute(rep, d, me)
                else:
                    await self._execute(rep, d, me)
            except (RedisError, OSError) as exc:
                check_cancelled()
                # The entry stays pending; the reaper redelivers it.
                _log.warning("task bookkeeping failed", task_id=d.envelope.id, error=repr(exc))
            finally:
                if rep.alone is d:
                    self.end_alone(rep, d)
                rep.assigned -= 1
                if rep.assigned == 0:
                    rep.settled.set()
                if agent.state is _BUSY and agent.inflight == 0:
                    agent.state = _READY
                self._core.wake_role(rep.role)
            if rep.dead:
                return

    def _start_first(self, rep: Replica, d: Delivery) -> None:
        """Record "running" for a first delivery, without waiting for the reply."""
        # A first delivery cannot duplicate a finished task: the handler starts
        # one round trip sooner, and no coroutine of its own runs for this.
        core = self._core
        env = d.envelope
        agent_id = rep.agent.agent_id
        ledger = core.ledger
        d.started_at = time.time()
        d.agent_id = agent_id
        if core.cluster:
            d.running = core.batch.enqueue(
                lambda pipe: ledger.queue_update(
                    pipe, env.id, TaskState.RUNNING, quiet=True, attempts=1, agent_id=agent_id
                )
            )
        else:
            # No future: nothing reads the mark's reply (the completion's,
            # which follows in order, is awaited).
            d.record_key = core.ledger_prefix + env.id
            self._settler.mark(d)

    async def _start_again(self, rep: Replica, d: Delivery) -> bool:
        """Record "running" for a redelivery or retry; False when it must not run.

        The ledger's start script gives the attempt: the envelope's, or one
        past the last start it recorded if that one never settled (a crash).
        Past ``max_attempts`` the entry is dead-lettered; a finished task's
        copy is only acked; an entry without a record is moved aside.
        """
        env = d.envelope
        core = self._core
        agent_id = rep.agent.agent_id
        ledger = core.ledger
        d.started_at = time.time()
        d.agent_id = agent_id
        replies = await core.batch.call(
            lambda pipe: ledger.queue_start(pipe, env.id, env.attempt, env.max_attempts, agent_id)
        )
        start = ledger.parse_start(replies[0])
        if start.missing:
            await self.reject_unrecorded(d, rep.role)
            return False
        if start.exhausted:
            d.envelope = msgspec.structs.replace(env, attempt=start.attempt)
            await self._settler.dead_letter(
                d, f"started {start.attempt - 1} times without finishing (agent crashes?)"
            )
            return False
        record = start.record
        d.record = record
        if start.final and record is not None:
            # A redelivered duplicate of a task that already finished: settle it.
            await self._settler.settle_duplicate(d, record)
            return False
        if record is not None and record.attempts != env.attempt:
            d.envelope = msgspec.structs.replace(env, attempt=record.attempts)
        return True

    async def _begin(self, rep: Replica, d: Delivery) -> bool:
        """Start a delivery through the ledger, alone if it is a suspect.

        A suspect is a redelivery (Redis's delivery counter is past one): the
        process that read it before died, or it outlived its visibility
        timeout. Whether it had started there, and killed that process, no one
        can tell (a first start is marked in the same round trip as its
        completion). So it runs with nothing else started beside it on this
        replica: a task that kills its process is charged for it, and the
        tasks it would take down with it are not (they are not marked running
        until it is done).
        """
        while rep.alone is not None and rep.alone is not d:
            await rep.shared_turn.wait()
        if d.redelivered and rep.alone is None:
            rep.alone = d
            rep.shared_turn.clear()
            while rep.inflight or rep.starting:
                rep.quiet.clear()
                await rep.quiet.wait()
        rep.starting += 1
        try:
            return await self._start_again(rep, d)
        finally:
            rep.starting -= 1
            self._left(rep)

    @staticmethod
    def _left(rep: Replica) -> None:
        if not rep.inflight and not rep.starting:
            rep.quiet.set()

    @staticmethod
    def end_alone(rep: Replica, d: Delivery) -> None:
        """A suspect delivery ``d`` is over: the replica's other deliveries start again."""
        if rep.alone is d:
            rep.alone = None
            rep.shared_turn.set()

    async def reject_unrecorded(self, d: Delivery, role: str) -> None:
        """Move aside (once, counted) an entry whose task has no ledger record."""
        await self._reject(d.stream, d.entry_id, "no_ledger_record", role)

    async def _execute(self, rep: Replica, d: Delivery, me: asyncio.Task[Any]) -> None:
        core = self._core
        settler = self._settler
        env = d.envelope
        agent = rep.agent
        now = time.monotonic()
        if now - d.read_at > core.visibility_timeout:
            # Waited here past the visibility timeout: another replica may have
            # claimed it meanwhile. Leave it pending; a reaper hands it on.
            _log.warning("stale delivery left to the reaper", task_id=env.id)
            return
        if env.deadline is not None and env.expired():
            await settler.complete(d, TaskState.EXPIRED, error="deadline passed before start")
            return
        if env.attempt == 1 and not d.redelivered and rep.alone is None:
            self._start_first(rep, d)
        else:
            if not await self._begin(rep, d):
                return
            env = d.envelope
            now = time.monotonic()
        if agent.state is _READY:
            agent.state = _BUSY
        d.worker = me
        d.lease_until = now + core.visibility_timeout
        rep.inflight[env.id] = d
        agent.inflight += 1
        codec = core.codec
        meters = core.meters(d.stream)
        if meters is not None:
            meters.started += 1
        try:
            # As in the in-process runtime: no span context manager (a
            # generator per task) unless tracing is on; ``dispatch`` makes the
            # task context only for a handler that takes one.
            if tracing_enabled():
                with handler_span(env, agent.agent_id):
                    value = await agent.dispatch(env, rep.context, codec)
            else:
                value = await agent.dispatch(env, rep.context, codec)
        except asyncio.CancelledError:
            if meters is not None:
                meters.handler.observe(time.time() - d.started_at)
            self._settle(rep, d)
            if d.interrupted is None:
                if me.cancelling():
                    await settler.redeliver(d, "cancelled")
                    raise
                d.interrupted = "cancelled"
            else:
                me.uncancel()
            if d.interrupted != "killed":
                await settler.redeliver(d, d.interrupted)
            return
        except Reject as exc:
            if meters is not None:
                meters.handler.observe(time.time() - d.started_at)
            self._settle(rep, d)
            await settler.complete(d, TaskState.FAILED, error=f"rejected: {exc}")
            return
        except DecodeError as exc:
            if meters is not None:
                meters.handler.observe(time.time() - d.started_at)
            self._settle(rep, d)
            REJECTED.labels(reason="bad_payload").inc()
            await settler.complete(d, TaskState.FAILED, error=str(exc))
            return
        except Exception as exc:
            if meters is not None:
                meters.handler.observe(time.time() - d.started_at)
            self._settle(rep, d)
            agent.failed += 1
            with settle_span(env, "failed"):
                await settler.fail(d, f"{type(exc).__name__}: {exc}")
            return
        rep.inflight.pop(env.id, None)
        agent.inflight -= 1
        finished = time.time()
        if meters is not None:
            meters.handler.observe(finished - d.started_at)
        if not rep.inflight:
            self._left(rep)
        if d.interrupted is not None:
            me.uncancel()
            if d.interrupted != "killed":
                await settler.redeliver(d, d.interrupted)
            return
        agent.processed += 1
        try:
            payload = codec.encode_payload(value)
        except (EncodeError, MessageTooLarge) as exc:
            await settler.complete(d, TaskState.FAILED, error=f"result: {exc}")
            return
        result, result_type = bytes(payload), Codec.type_name(value)
        if core.cluster:
            await settler.complete(d, TaskState.DONE, result=result, result_type=result_type)
            return
        # Straight on the settle script's future: one coroutine less per task.
        if tracing._enabled:
            with settle_span(env, "done"):
                reply = await settler.done(d, result, result_type)
        else:
            reply = await settler.done(d, result, result_type)
        if reply != 1:
            if isinstance(reply, Exception):
                raise reply
            if reply == 0:
                # No ledger record (lost, or an entry written by hand): moved
                # aside once rather than redelivered up to max_attempts.
                await self.reject_unrecorded(d, rep.role)
                return
            count_duplicate(reply)
            return
        if meters is not None:
            meters.done += 1
            meters.latency.observe(finished - env.created_at)

    @classmethod
    def _settle(cls, rep: Replica, d: Delivery) -> None:
        rep.inflight.pop(d.envelope.id, None)
        rep.agent.inflight -= 1
        cls._left(rep)

