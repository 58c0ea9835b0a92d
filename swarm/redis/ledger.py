"""The task ledger in Redis: one hash per task; a finished task's expires.

Redis holds live work: a record expires ``ttl`` seconds (the retention,
minutes by default) after the write that made it final (done, failed, dead,
expired); the task history (:mod:`swarm.history`) keeps it after that, and
:meth:`RedisLedger.get` falls through to it. The record of a live task (queued, running, waiting
for a retry) has no TTL: however long a backlog waits, its ledger is there
when it runs. A move out of a final state (a re-driven dead letter) drops the
TTL again.

Every write is one Lua script on the task's own key, so a state move and its
timings (``started_at``, ``finished_at``, ``executions``) change together. An
idempotency key is claimed with ``SET NX`` before the record counts as
created, so two submitters racing on one key get one task between them.

The ``queue_*`` methods add the commands to a caller's pipeline, so the
runtime can batch ledger writes with its stream commands in one round trip.

Example:
    >>> import asyncio, os
    >>> from redis.asyncio import Redis
    >>> from swarm.ledger import TaskRecord, TaskState
    >>> from swarm.redis.ledger import RedisLedger
    >>> async def demo():  # doctest: +SKIP
    ...     redis = Redis.from_url(os.environ.get("SWARM_TEST_REDIS_URL", "redis://127.0.0.1:6379/0"))
    ...     ledger = RedisLedger(redis=redis, prefix="doc-ledger")
    ...     await ledger.create(TaskRecord(task_id="t1", type="Ping", recipient="role:x"))
    ...     rec = await ledger.update("t1", TaskState.DONE)
    ...     await redis.delete("doc-ledger:ledger:t1")
    ...     return rec.state
    >>> asyncio.run(demo())  # doctest: +SKIP
    <TaskState.DONE: 'done'>
"""

from __future__ import annotations

import time
from collections import Counter
from typing import TYPE_CHECKING, Any

from swarm.constants import KEY_PREFIX, idempotency_key, ledger_key, ledger_pattern
from swarm.history.settings import DEFAULT_RETENTION
from swarm.ledger import FINAL_STATES, TaskRecord, TaskState
from swarm.messages import Envelope
from swarm.redis.connections import AnyRedis
from swarm.redis.streams import Pipeline

if TYPE_CHECKING:
    from swarm.history.store import TaskHistory

__all__ = ["DEFAULT_LEDGER_TTL", "RedisLedger", "record_from_hash"]

#: Seconds a finished task's record stays in Redis after its last write.
DEFAULT_LEDGER_TTL = int(DEFAULT_RETENTION)

_FINALS = " ".join(s.value for s in FINAL_STATES)
_QUEUED = TaskState.QUEUED.value

# KEYS: record [, stream to ack in [, inbox to notify]]. ARGV: state, now, ttl
# (set on a move to a final state; any other move drops a TTL),
# flags ("g": leave a final record alone; "d": leave a record that is not dead
# alone; "q": reply {"ok", executions} instead of the record), then field/value
# pairs to set, then (with a stream) group,
# entry id, note, inbox max length. The stream and inbox keys are in other
# slots than the record, so that form is for standalone servers only. Returns
# the record as a flat hash, or {"final", hash} when the guard kept a final
# record, or {"alive"} when "d" kept one, or nil when unknown.
_UPDATE = """
if redis.call('EXISTS', KEYS[1]) == 0 then return false end
local finals = ' FINALS '
local prev = redis.call('HGET', KEYS[1], 'state') or ''
local prev_final = string.find(finals, ' ' .. prev .. ' ', 1, true) ~= nil
if string.find(ARGV[4], 'g', 1, true) and prev_final then
  return {'final', redis.call('HGETALL', KEYS[1])}
end
if string.find(ARGV[4], 'd', 1, true) and prev ~= 'dead' then
  return {'alive'}
end
local state = ARGV[1]
local final = string.find(finals, ' ' .. state .. ' ', 1, true) ~= nil
if state == 'running' then
  redis.call('HSET', KEYS[1], 'started_at', ARGV[2])
elseif state == 'done' then
  redis.call('HINCRBY', KEYS[1], 'executions', 1)
end
if final and not prev_final then
  redis.call('HSET', KEYS[1], 'finished_at', ARGV[2])
elseif prev_final and not final then
  redis.call('HDEL', KEYS[1], 'finished_at')
end
redis.call('HSET', KEYS[1], 'state', state)
local n = #ARGV
if #KEYS >= 2 then n = n - 4 end
for i = 5, n, 2 do redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) end
if final then
  redis.call('EXPIRE', KEYS[1], ARGV[3])
else
  redis.call('PERSIST', KEYS[1])
end
if #KEYS >= 3 then
  redis.call('XADD', KEYS[3], 'NOMKSTREAM', 'MAXLEN', '~', ARGV[#ARGV], '*', 'r', ARGV[#ARGV - 1])
end
if #KEYS >= 2 then
  redis.call('XACK', KEYS[2], ARGV[#ARGV - 3], ARGV[#ARGV - 2])
  redis.call('XDEL', KEYS[2], ARGV[#ARGV - 2])
end
if string.find(ARGV[4], 'q', 1, true) then
  return {'ok', tonumber(redis.call('HGET', KEYS[1], 'executions') or '0')}
end
return redis.call('HGETALL', KEYS[1])
""".replace("FINALS", _FINALS)


# KEYS: record [, task stream]. ARGV: ttl (0: a live record, no TTL), [envelope,]
# then field/value pairs. One command instead of HSET + EXPIRE (+ XADD of the
# task, standalone only: the stream is in another slot).
_STORE = """
local ttl = tonumber(ARGV[1])
if #KEYS >= 2 then
  redis.call('HSET', KEYS[1], unpack(ARGV, 3))
  if ttl > 0 then redis.call('EXPIRE', KEYS[1], ttl) end
  return redis.call('XADD', KEYS[2], '*', 'e', ARGV[2])
end
redis.call('HSET', KEYS[1], unpack(ARGV, 2))
if ttl > 0 then redis.call('EXPIRE', KEYS[1], ttl) end
return 1
"""


# KEYS: record, task stream, fence (a leadership's epoch key). ARGV: ttl (0: none), envelope,
# epoch, then field/value pairs. The store and the XADD happen only if the writer's
# epoch is not older than the fence: a deposed Queen's dispatch is refused where it
# lands, atomically (standalone servers only; the keys are in different slots).
_STORE_FENCED = """
local fence = tonumber(redis.call('GET', KEYS[3]) or '0')
if tonumber(ARGV[3]) < fence then
  return redis.error_reply('FENCED epoch ' .. ARGV[3] .. ' is older than ' .. fence)
end
redis.call('HSET', KEYS[1], unpack(ARGV, 4))
if tonumber(ARGV[1]) > 0 then redis.call('EXPIRE', KEYS[1], ARGV[1]) end
return redis.call('XADD', KEYS[2], '*', 'e', ARGV[2])
"""


# KEYS: record. Deletes it if it is final (a re-driven one is live again).
_EVICT = """
local st = redis.call('HGET', KEYS[1], 'state')
if st and string.find(' FINALS ', ' ' .. st .. ' ', 1, true) then
  return redis.call('UNLINK', KEYS[1])
end
return 0
""".replace("FINALS", _FINALS)


def _s(raw: dict[bytes, bytes], key: bytes) -> str | None:
    v = raw.get(key)
    return None if v is None else v.decode()


def record_from_hash(raw: dict[bytes, bytes] | list[Any]) -> TaskRecord:
    """Build a :class:`TaskRecord` from a ledger hash (a dict, or HGETALL's flat list)."""
    if isinstance(raw, list):
        raw = {raw[i]: raw[i + 1] for i in range(0, len(raw) - 1, 2)}
    started = raw.get(b"started_at")
    finished = raw.get(b"finished_at")
    return TaskRecord(
        task_id=raw[b"task_id"].decode(),
        type=raw[b"type"].decode(),
        recipient=raw[b"recipient"].decode(),
        state=TaskState(raw[b"state"].decode()),
        attempts=int(raw.get(b"attempts", b"0")),
        priority=int(raw.get(b"priority", b"0")),
        idempotency_key=_s(raw, b"idempotency_key"),
        agent_id=_s(raw, b"agent_id"),
        error=_s(raw, b"error"),
        result=raw.get(b"result"),
        result_type=(raw.get(b"result_type") or b"").decode(),
        created_at=float(raw.get(b"created_at", b"0")),
        started_at=None if started is None else float(started),
        finished_at=None if finished is None else float(finished),
        executions=int(raw.get(b"executions", b"0")),
        epoch=int(raw.get(b"epoch", b"0")),
    )


class RedisLedger:
    """Task records in Redis hashes; a finished task's expires ``ttl`` seconds after its last write.

    A live task's record (queued, running, waiting for a retry) does not
    expire, so a backlog older than ``ttl`` keeps its ledger.

    Args:
        redis: Client (with ``decode_responses=False``).
        prefix: Key prefix (see :mod:`swarm.constants`).
        ttl: Seconds a finished task's record stays in Redis after its last write.
        history: Where finished records are looked up once Redis dropped them.
        idempotency_ttl: Seconds an idempotency key is remembered (default: ``ttl``).
    """

    def __init__(
        self,
        *,
        redis: AnyRedis,
        prefix: str = KEY_PREFIX,
        ttl: int = DEFAULT_LEDGER_TTL,
        history: TaskHistory | None = None,
        idempotency_ttl: int | None = None,
    ):
        if ttl <= 0:
            raise ValueError("ttl must be positive")
        # Any: redis-py types replies as str/bytes unions; we never decode responses.
        self.redis: Any = redis
        self.prefix = prefix
        self.ttl = ttl
        self.history = history
        self.idempotency_ttl = idempotency_ttl or ttl

    def key(self, task_id: str) -> str:
        """The Redis key of a task's record."""
        return ledger_key(task_id, self.prefix)

    # -- pipeline building blocks ------------------------------------------
    @staticmethod
    def flat_fields(record: TaskRecord) -> list[str | bytes | int | float]:
        """A new record's hash as flat field/value elements (as :meth:`queue_store` writes it).

        The first five pairs are always task_id, type, recipient, state and
        created_at, in this order (:func:`swarm.redis.bulk.queue_store` sends
        only their values).
        """
        flat: list[str | bytes | int | float] = [
            "task_id",
            record.task_id,
            "type",
            record.type,
            "recipient",
            record.recipient,
            "state",
            record.state.value,
            "created_at",
            repr(record.created_at),
        ]
        # Zero counters are left out (read back as 0): fewer fields to write
        # and to keep for every queued task.
        for name in ("attempts", "priority", "executions", "epoch"):
            value = getattr(record, name)
            if value:
                flat += (name, value)
        for name in ("idempotency_key", "agent_id", "error", "result", "result_type"):
            value = getattr(record, name)
            if value:
                flat += (name, value)
        for name in ("started_at", "finished_at"):
            value = getattr(record, name)
            if value is not None:
                flat += (name, repr(value))
        return flat

    @staticmethod
    def task_fields(envelope: Envelope) -> list[str | bytes | int | float]:
        """``flat_fields(TaskRecord.for_task(envelope))``, without building the record."""
        flat: list[str | bytes | int | float] = [
            "task_id",
            envelope.id,
            "type",
            envelope.type,
            "recipient",
            envelope.recipient,
            "state",
            _QUEUED,
            "created_at",
            repr(envelope.created_at or time.time()),
        ]
        # Same order as flat_fields (a new record has no attempts, no
        # executions, no run fields).
        if envelope.priority:
            flat += ("priority", envelope.priority)
        if envelope.epoch:
            flat += ("epoch", envelope.epoch)
        if envelope.idempotency_key:
            flat += ("idempotency_key", envelope.idempotency_key)
        return flat

    def queue_store(
        self,
        pipe: Pipeline,
        record: TaskRecord,
        *,
        then_add: tuple[str, bytes] | None = None,
        fence: str | None = None,
    ) -> None:
        """Add the command writing a new record (no idempotency claim) to ``pipe``.

        ``then_add`` (stream, envelope) also appends the task to its stream in
        the same script: standalone servers only (the keys are in other slots).
        ``fence`` (an epoch key, with ``then_add``) makes the script refuse the
        write with a ``FENCED`` error when ``record.epoch`` is older than it.
        """
        flat = self.flat_fields(record)
        ttl = self.ttl if record.state in FINAL_STATES else 0
        if then_add is not None and fence is not None:
            stream, data = then_add
            key = self.key(record.task_id)
            pipe.eval(_STORE_FENCED, 3, key, stream, fence, ttl, data, record.epoch, *flat)
        elif then_add is not None:
            stream, data = then_add
            pipe.eval(_STORE, 2, self.key(record.task_id), stream, ttl, data, *flat)
        else:
            pipe.eval(_STORE, 1, self.key(record.task_id), ttl, *flat)

    def queue_update(
        self,
        pipe: Pipeline,
        task_id: str,
        state: TaskState,
        *,
        guard: bool = False,
        quiet: bool = False,
        attempts: int | None = None,
        agent_id: str | None = None,
        error: str | None = None,
        result: bytes | None = None,
        result_type: str | None = None,
        then_ack: tuple[str, str, bytes] | None = None,
        then_notify: tuple[str, bytes, int] | None = None,
    ) -> None:
        """Add a state move to ``pipe``; its reply parses with :meth:`parse_update`.

        ``then_ack`` (stream, group, entry id) and ``then_notify`` (inbox
        stream, note, max length) fold the ack and the submitter's note into
        the same script, atomically: standalone servers only (cross-slot).

        With ``guard``, a record already final is left alone (a redelivered
        duplicate of a finished task must not run again). With ``quiet`` the
        reply is ``[b"ok", executions]`` rather than the whole record.
        """
        args: list[str | bytes | int | float] = [
            state.value,
            repr(time.time()),
            self.ttl,
            ("g" if guard else "") + ("q" if quiet else "-"),
        ]
        for name, value in (
            ("attempts", attempts),
            ("agent_id", agent_id),
            ("error", error),
            ("result", result),
            ("result_type", result_type),
        ):
            if value is not None:
                args += [name, value]
        keys = [self.key(task_id)]
        if then_ack is not None:
            stream, group, entry_id = then_ack
            inbox, note, maxlen = then_notify if then_notify is not None else ("", b"", 0)
            keys.append(stream)
            if then_notify is not None:
                keys.append(inbox)
            args += [group, entry_id, note, maxlen]
        pipe.eval(_UPDATE, len(keys), *keys, *args)

    @staticmethod
    def parse_update(reply: Any) -> tuple[TaskRecord | None, bool]:
        """Parse a :meth:`queue_update` reply into (record, whether the guard kept it)."""
        if isinstance(reply, Exception):
            raise reply
        if not reply:
            return None, False
        if reply[0] == b"final" and isinstance(reply[1], list):
            return record_from_hash(reply[1]), True
        if reply[0] == b"ok":
            return None, False
        return record_from_hash(reply), False

    # -- the Ledger Protocol ------------------------------------------------
    async def create(self, record: TaskRecord) -> TaskRecord:
        if record.idempotency_key is not None:
            existing = await self.claim(record.idempotency_key, record.task_id)
            if existing is not None:
                return existing
        pipe = self.redis.pipeline(transaction=False)
        self.queue_store(pipe, record)
        await pipe.execute()
        return record

    async def claim(self, key: str, task_id: str) -> TaskRecord | None:
        """Claim an idempotency key for ``task_id``; return the earlier task's record if taken."""
        ikey = idempotency_key(key, self.prefix)
        for _ in range(3):
            if await self.redis.set(ikey, task_id, nx=True, ex=self.idempotency_ttl):
                return None
            owner = await self.redis.get(ikey)
            if owner is None:
                continue  # expired in between: try to claim again
            rec = await self.get(owner.decode())
            if rec is not None:
                return rec
            # The claimant's record expired or was never written: take the key over.
            await self.redis.set(ikey, task_id, ex=self.idempotency_ttl)
            return None
        return None

    async def requeue_dead(self, task_id: str) -> bool | None:
        """Move a dead task's record back to "queued" (attempts 0) for a re-drive.

        Returns:
            True when moved; False when the record is not dead (another
            re-drive took it first: its run must not be overwritten); None when
            there is no record.
        """
        args: list[str | bytes | int | float] = [
            TaskState.QUEUED.value,
            repr(time.time()),
            self.ttl,
            "d",
            "attempts",
            0,
        ]
        reply = await self.redis.eval(_UPDATE, 1, self.key(task_id), *args)
        if not reply:
            return None
        return bool(reply != [b"alive"])

    async def update(
        self,
        task_id: str,
        state: TaskState,
        *,
        attempts: int | None = None,
        agent_id: str | None = None,
        error: str | None = None,
        result: bytes | None = None,
        result_type: str | None = None,
    ) -> TaskRecord | None:
        pipe = self.redis.pipeline(transaction=False)
        self.queue_update(
            pipe,
            task_id,
            state,
            attempts=attempts,
            agent_id=agent_id,
            error=error,
            result=result,
            result_type=result_type,
        )
        (reply,) = await pipe.execute(raise_on_error=False)
        return self.parse_update(reply)[0]

    async def get(self, task_id: str) -> TaskRecord | None:
        raw = await self.redis.hgetall(self.key(task_id))
        if raw:
            return record_from_hash(raw)
        return await self.history.get(task_id) if self.history is not None else None

    async def finished_by(self, agent_id: str, since: float) -> list[TaskRecord]:
        """Final records in Redis of tasks ``agent_id`` ran, finished at ``since`` or later.

        A ``SCAN`` over every record: for the rare repair after an agent died
        (see ``Reaper.bury``), not for the hot path.
        """
        keys: list[bytes] = [
            k async for k in self.redis.scan_iter(match=ledger_pattern(self.prefix), count=1000)
        ]
        wanted: list[bytes] = []
        me = agent_id.encode()
        finals = {s.value.encode() for s in FINAL_STATES}
        for i in range(0, len(keys), 1000):
            pipe = self.redis.pipeline(transaction=False)
            for key in keys[i : i + 1000]:
                pipe.hmget(key, "agent_id", "state", "finished_at")
            replies = await pipe.execute()
            for key, (agent, state, at) in zip(keys[i : i + 1000], replies, strict=True):
                if agent == me and state in finals and at is not None and float(at) >= since:
                    wanted.append(key)
        out: list[TaskRecord] = []
        for i in range(0, len(wanted), 1000):
            pipe = self.redis.pipeline(transaction=False)
            for key in wanted[i : i + 1000]:
                pipe.hgetall(key)
            out += [record_from_hash(raw) for raw in await pipe.execute() if raw]
        return out

    async def evict(self, task_ids: list[str]) -> int:
        """Delete the records of ``task_ids`` that are final (the count bound); returns how many."""
        pipe = self.redis.pipeline(transaction=False)
        for task_id in task_ids:
            pipe.eval(_EVICT, 1, self.key(task_id))
        return sum(int(n) for n in await pipe.execute())

    async def counts(self) -> dict[TaskState, int]:
        # Counts are for dashboards and tests, not the hot path: a SCAN is fine.
        counter: Counter[TaskState] = Counter()
        keys: list[bytes] = []
        async for key in self.redis.scan_iter(match=ledger_pattern(self.prefix), count=1000):
            keys.append(key)
        for i in range(0, len(keys), 1000):
            pipe = self.redis.pipeline(transaction=False)
            for key in keys[i : i + 1000]:
                pipe.hget(key, "state")
            for state in await pipe.execute():
                if state is not None:
                    counter[TaskState(state.decode())] += 1
        return dict(counter)
