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
from typing import TYPE_CHECKING, Any, NamedTuple

from redis.asyncio.cluster import RedisCluster

from swarm.constants import KEY_PREFIX, idempotency_key, ledger_key, ledger_pattern
from swarm.history.settings import DEFAULT_RETENTION
from swarm.ledger import FINAL_STATES, MOVES, REDRIVE, TaskRecord, TaskState
from swarm.messages import Envelope
from swarm.redis.connections import AnyRedis
from swarm.redis.errors import mapped
from swarm.redis.streams import Pipeline

if TYPE_CHECKING:
    from swarm.history.store import TaskHistory

__all__ = ["DEFAULT_LEDGER_TTL", "LUA_MOVES", "RedisLedger", "Start", "record_from_hash"]

#: Seconds a finished task's record stays in Redis after its last write.
DEFAULT_LEDGER_TTL = int(DEFAULT_RETENTION)

_FINALS = " ".join(s.value for s in FINAL_STATES)
_QUEUED = TaskState.QUEUED.value

#: :data:`swarm.ledger.MOVES` as a Lua table constructor: ``moves[prev][new]``
#: is true for a legal move. Every script that moves a record checks it.
LUA_MOVES = (
    "{"
    + ", ".join(
        f"[{prev.value!r}] = {{"
        + ", ".join(f"[{new.value!r}] = true" for new in sorted(MOVES[prev]))
        + "}"
        for prev in TaskState
    )
    + "}"
)

# KEYS: record [, stream to ack in [, inbox to notify]]. ARGV: state, now, ttl
# (set on a move to a final state; any other move drops a TTL),
# flags ("d": the re-drive move, leave a record that is not dead alone;
# "q": reply {"ok", executions} instead of the record), then field/value
# pairs to set, then (with a stream) group,
# entry id, note, inbox max length. The stream and inbox keys are in other
# slots than the record, so that form is for standalone servers only. Returns
# the record as a flat hash, or {"final", hash} when the move is not legal
# (MOVES: a final record is absorbing; its entry is only acked, no note is
# sent), or {"alive"} when "d" kept one, or nil when unknown.
_UPDATE = """
if redis.call('EXISTS', KEYS[1]) == 0 then return false end
local finals = ' FINALS '
local moves = LUA_MOVES
local prev = redis.call('HGET', KEYS[1], 'state') or ''
local prev_final = string.find(finals, ' ' .. prev .. ' ', 1, true) ~= nil
local state = ARGV[1]
if string.find(ARGV[4], 'd', 1, true) then
  if prev ~= 'REDRIVE_FROM' or state ~= 'REDRIVE_TO' then return {'alive'} end
elseif not (moves[prev] and moves[prev][state]) then
  if #KEYS >= 2 then
    local n = #ARGV
    redis.call('XACK', KEYS[2], ARGV[n - 3], ARGV[n - 2])
    redis.call('XDEL', KEYS[2], ARGV[n - 2])
  end
  return {'final', redis.call('HGETALL', KEYS[1])}
end
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
""".replace("FINALS", _FINALS).replace("LUA_MOVES", LUA_MOVES).replace(
    "REDRIVE_FROM", REDRIVE[0].value
).replace("REDRIVE_TO", REDRIVE[1].value)


# KEYS: record. ARGV: now, the envelope's attempt, max attempts, agent id. The
# start of a redelivery or retry: its attempt is the envelope's, or one past
# the last start the record holds (a start that never settled: a crash), so a
# delivery that never started its handler costs nothing, and a hand-back (which
# writes the attempts back down) neither. Returns nil when unknown,
# {"final", hash} when MOVES refuses "running" (the record is final),
# {"exhausted", attempt} past max attempts (the record is left alone), else
# the record as a flat hash after its move to running.
_START = """
local cur = redis.call('HMGET', KEYS[1], 'state', 'attempts')
if not cur[1] then return false end
local moves = LUA_MOVES
if not (moves[cur[1]] and moves[cur[1]]['running']) then
  return {'final', redis.call('HGETALL', KEYS[1])}
end
local attempt = math.max(tonumber(ARGV[2]), (tonumber(cur[2]) or 0) + 1)
if attempt > tonumber(ARGV[3]) then return {'exhausted', attempt} end
redis.call('HSET', KEYS[1], 'state', 'running', 'started_at', ARGV[1], 'attempts', attempt,
           'agent_id', ARGV[4])
redis.call('PERSIST', KEYS[1])
return redis.call('HGETALL', KEYS[1])
""".replace("LUA_MOVES", LUA_MOVES)


# KEYS: idempotency key, record. ARGV: task id, idempotency TTL, ledger key
# prefix, record TTL (0: live), then the record's field/value pairs. The Ledger
# Protocol's create with a key, in one step: the holder's id when its record
# exists (reply {"dup", id}), else {"new"} after claiming and storing.
_CREATE_ONCE = """
local owner = redis.call('GET', KEYS[1])
if owner and redis.call('EXISTS', ARGV[3] .. owner) == 1 then
  return {'dup', owner}
end
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
redis.call('HSET', KEYS[2], unpack(ARGV, 5))
if tonumber(ARGV[4]) > 0 then redis.call('EXPIRE', KEYS[2], ARGV[4]) end
return {'new'}
"""

# KEYS: idempotency key, record, task stream [, fence]. ARGV: task id, idempotency
# TTL, ledger key prefix, envelope, epoch, then the record's field/value pairs.
# The claim of an idempotency key and the store of its task in one step: the
# key's holder, if its record exists, is the task (reply {"dup", id}); else
# this task claims the key, is recorded and queued (reply {"new", entry id}).
# A fence newer than the epoch refuses it (FENCED error). Standalone servers
# only (the keys are in different slots; names built in the script).
_STORE_ONCE = """
if #KEYS >= 4 then
  local fence = tonumber(redis.call('GET', KEYS[4]) or '0')
  if tonumber(ARGV[5]) < fence then
    return redis.error_reply('FENCED epoch ' .. ARGV[5] .. ' is older than ' .. fence)
  end
end
local owner = redis.call('GET', KEYS[1])
if owner and redis.call('EXISTS', ARGV[3] .. owner) == 1 then
  return {'dup', owner}
end
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
redis.call('HSET', KEYS[2], unpack(ARGV, 6))
return {'new', redis.call('XADD', KEYS[3], '*', 'e', ARGV[4])}
"""


class Start(NamedTuple):
    """A parsed reply of :meth:`RedisLedger.queue_start`."""

    record: TaskRecord | None
    attempt: int
    missing: bool = False
    final: bool = False
    exhausted: bool = False


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


def _is_cluster(redis: Any) -> bool:
    # Keys built inside a script are not declared: Redis Cluster refuses them.
    return isinstance(redis, RedisCluster)


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

    def queue_store_once(
        self,
        pipe: Pipeline,
        envelope: Envelope,
        stream: str,
        data: bytes,
        *,
        fence: str | None = None,
    ) -> None:
        """Add the atomic claim of ``envelope``'s idempotency key and its store to ``pipe``.

        One key gives one task, however many submitters race on it (the
        claim and the store are one script). Parse with :meth:`parse_store_once`.
        Standalone servers only.
        """
        key = envelope.idempotency_key
        if key is None:
            raise ValueError("store_once needs an idempotency key")
        keys = [idempotency_key(key, self.prefix), self.key(envelope.id), stream]
        if fence is not None:
            keys.append(fence)
        pipe.eval(
            _STORE_ONCE,
            len(keys),
            *keys,
            envelope.id,
            self.ttl,
            self.key(""),
            data,
            envelope.epoch,
            *self.task_fields(envelope),
        )

    @staticmethod
    def parse_store_once(reply: Any) -> str | None:
        """The id of the task already holding the key, or None when this one was stored."""
        if isinstance(reply, Exception):
            raise reply
        return reply[1].decode() if reply[0] == b"dup" else None

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

        A record already final is always left alone (final states are
        absorbing, :data:`swarm.ledger.MOVES`): its entry is only acked and
        no note is sent. ``guard`` is kept for callers that say so. With
        ``quiet`` the reply is ``[b"ok", executions]`` rather than the whole
        record.
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

    def queue_start(
        self, pipe: Pipeline, task_id: str, attempt: int, max_attempts: int, agent_id: str
    ) -> None:
        """Add the start of a redelivery or retry to ``pipe``; parse with :meth:`parse_start`."""
        pipe.eval(
            _START, 1, self.key(task_id), repr(time.time()), attempt, max_attempts, agent_id
        )

    @staticmethod
    def parse_start(reply: Any) -> Start:
        """Parse a :meth:`queue_start` reply."""
        if isinstance(reply, Exception):
            raise reply
        if not reply:
            return Start(None, 0, missing=True)
        if reply[0] == b"final":
            return Start(record_from_hash(reply[1]), 0, final=True)
        if reply[0] == b"exhausted":
            return Start(None, int(reply[1]), exhausted=True)
        record = record_from_hash(reply)
        return Start(record, record.attempts)

    @staticmethod
    def refused(reply: Any) -> bool:
        """Whether a :meth:`queue_update` reply says the move was refused (a final record)."""
        return isinstance(reply, list) and bool(reply) and reply[0] == b"final"

    @staticmethod
    def parse_update(reply: Any) -> tuple[TaskRecord | None, bool]:
        """Parse a :meth:`queue_update` reply into (record, whether it was final and kept)."""
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
    @mapped("storing a task record")
    async def create(self, record: TaskRecord) -> TaskRecord:
        key = record.idempotency_key
        if key is not None and not _is_cluster(self.redis):
            # Claim and store in one script: one key, one task, under any race.
            reply = await self.redis.eval(
                _CREATE_ONCE,
                2,
                idempotency_key(key, self.prefix),
                self.key(record.task_id),
                record.task_id,
                self.ttl,
                self.key(""),
                self.ttl if record.state in FINAL_STATES else 0,
                *self.flat_fields(record),
            )
            if reply[0] == b"dup":
                existing = await self.get(reply[1].decode())
                if existing is not None:
                    return existing
            return record
        if key is not None:
            existing = await self.claim(key, record.task_id)
            if existing is not None:
                return existing
        pipe = self.redis.pipeline(transaction=False)
        self.queue_store(pipe, record)
        await pipe.execute()
        return record

    @mapped("claiming an idempotency key")
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

    @mapped("re-queueing a dead task")
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

    @mapped("updating a task record")
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
        record, refused = self.parse_update(reply)
        return None if refused else record

    @mapped("reading a task record")
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

    @mapped("counting task records")
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
