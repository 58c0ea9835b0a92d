"""Many tasks per script: the submit and settle scripts of one event-loop turn.

On a standalone server the runtime groups the submits of one loop turn into
one :data:`STORE_MANY` call, and an agent node its "running" marks and
completions into one :data:`SETTLE_MANY` call (through
:meth:`~swarm.redis.streams.PipelineBatcher.add`), so a task costs a share
of one command rather than a command (and a script run) of its own. The keys
of one call are in many slots: Redis Cluster keeps the per-task path.

Each operation has the effect of the per-task script it replaces
(:class:`~swarm.redis.ledger.RedisLedger`'s store and update).

Example:
    >>> from swarm.redis.bulk import SettleOp
    >>> SettleOp("k", "running", [b"attempts", 1]).kind
    'r'
"""

from __future__ import annotations

import time
from typing import Any, Protocol

import msgspec

from swarm.ledger import FINAL_STATES, TaskState
from swarm.messages import Envelope
from swarm.redis.ledger import LUA_MOVES, RedisLedger
from swarm.redis.streams import Pipeline

__all__ = [
    "SETTLE_MANY",
    "STORE_MANY",
    "FirstDone",
    "MarkBatch",
    "RunningMark",
    "SettleOp",
    "StoreOp",
    "queue_settle",
    "queue_store",
]

_QUEUED = TaskState.QUEUED.value
# A float's shortest round-trip text, as repr() writes it for timestamps (and
# parsed back to the same float for any), at a tenth of repr()'s cost.
_float_text = msgspec.json.Encoder().encode

# A Lua table constructor: the final states as keys.
_FINALS = ", ".join(f"[{s.value!r}] = true" for s in sorted(FINAL_STATES, key=str))

# KEYS: [fence,] then per task its record, preceded by its stream when that
# differs from the previous task's. ARGV: epoch ("" when not fenced),
# then per task: the number n of further field/value elements (-n - 1 when
# its stream comes first in KEYS), the values of task_id, type, recipient,
# state and created_at, the n elements, the envelope. Returns the stream entry
# id of each task, or the FENCED error (for all of them: they share the epoch)
# when the fence is newer. The records are live (queued): no TTL.
STORE_MANY = """
local ki = 1
if ARGV[1] ~= '' then
  local fence = tonumber(redis.call('GET', KEYS[1]) or '0')
  if tonumber(ARGV[1]) < fence then
    return redis.error_reply('FENCED epoch ' .. ARGV[1] .. ' is older than ' .. fence)
  end
  ki = 2
end
local out = {}
local stream
local ai = 2
while ai <= #ARGV do
  local nf = tonumber(ARGV[ai])
  if nf < 0 then
    nf = -nf - 1
    stream = KEYS[ki]
    ki = ki + 1
  end
  local rec = KEYS[ki]
  redis.call('HSET', rec, 'task_id', ARGV[ai + 1], 'type', ARGV[ai + 2],
             'recipient', ARGV[ai + 3], 'state', ARGV[ai + 4], 'created_at', ARGV[ai + 5],
             unpack(ARGV, ai + 6, ai + 5 + nf))
  out[#out + 1] = redis.call('XADD', stream, '*', 'e', ARGV[ai + 6 + nf])
  ki = ki + 1
  ai = ai + 7 + nf
end
return out
"""

# KEYS: per operation its record, and the stream (kinds "A", "N", "F") and
# inbox (kinds "N", "F") it switches to. ARGV: now, ttl, group, inbox max
# length, then per operation one of:
# * "" (the place of "running" marks, which are written with their own
#   completion in this call, or as "r" operations after all the others);
# * kind ("r": record only, "a": and ack on the current stream, "n": and ack
#   and notify the current inbox, "A"/"N": as "a"/"n" after switching), state,
#   the number n of field/value elements (-n - 1: and started_at is now, for a
#   "running" mark merged into this move), the elements, then (acking kinds)
#   the entry id and (notifying kinds) the note;
# * "f" (or "F" after switching): a first delivery's "running" mark and its
#   "done" move with note in one, with fixed fields: agent_id, result,
#   result_type, entry id, note (attempts 1, started_at now).
# Streams and inboxes are named only when they change: a call's operations
# mostly share one of each.
# Per operation as the ledger's update script with ``quiet``: an unknown
# record is left alone and its entry not acked (reply 0, else 1); a move that
# MOVES refuses (the record is final: absorbing) only acks its entry, without
# a note (reply 2, a duplicate settlement). Notes and
# acks run last: per inbox one entry holding all its notes (field "r": one
# note; "rs": a MessagePack array of them), per stream one XACK and one XDEL.
SETTLE_MANY = """
local now, ttl, group, maxlen = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4])
local finals = {FINALS}
local moves = LUA_MOVES
local out = {}
local acks, streams = {}, {}
local notes, inboxes = {}, {}
local stream, inbox
local ki, ai = 1, 5
local function settled(entry, note)
  if note then
    local n = notes[inbox]
    if not n then
      n = {}
      notes[inbox] = n
      inboxes[#inboxes + 1] = inbox
    end
    n[#n + 1] = note
  end
  if entry then
    local ids = acks[stream]
    if not ids then
      ids = {}
      acks[stream] = ids
      streams[#streams + 1] = stream
    end
    ids[#ids + 1] = entry
  end
end
while ai <= #ARGV do
  local kind = ARGV[ai]
  if kind == '' then
    out[#out + 1] = 1
    ai = ai + 1
  elseif kind == 'f' or kind == 'F' then
    local rec = KEYS[ki]
    ki = ki + 1
    if kind == 'F' then
      stream, inbox = KEYS[ki], KEYS[ki + 1]
      ki = ki + 2
    end
    local cur = redis.call('HMGET', rec, 'state', 'executions')
    if not cur[1] then
      out[#out + 1] = 0
    elseif not (moves[cur[1]] and moves[cur[1]]['done']) then
      settled(ARGV[ai + 4], nil)
      out[#out + 1] = 2
    else
      local executions = (tonumber(cur[2]) or 0) + 1
      redis.call('HSET', rec, 'state', 'done', 'started_at', now, 'executions', executions,
                 'finished_at', now, 'attempts', 1, 'agent_id', ARGV[ai + 1],
                 'result', ARGV[ai + 2], 'result_type', ARGV[ai + 3])
      redis.call('EXPIRE', rec, ttl)
      settled(ARGV[ai + 4], ARGV[ai + 5])
      out[#out + 1] = 1
    end
    ai = ai + 6
  else
    local state, nf = ARGV[ai + 1], tonumber(ARGV[ai + 2])
    local started = state == 'running'
    if nf < 0 then
      nf = -nf - 1
      started = true
    end
    local rec = KEYS[ki]
    local first = ai + 3
    ai = first + nf
    ki = ki + 1
    local entry, note
    if kind ~= 'r' then
      if kind == 'A' or kind == 'N' then
        stream = KEYS[ki]
        ki = ki + 1
        if kind == 'N' then
          inbox = KEYS[ki]
          ki = ki + 1
        end
      end
      entry = ARGV[ai]
      ai = ai + 1
      if kind == 'n' or kind == 'N' then
        note = ARGV[ai]
        ai = ai + 1
      end
    end
    local cur = redis.call('HMGET', rec, 'state', 'executions')
    if not cur[1] then
      -- Unknown (every record has a state).
      out[#out + 1] = 0
    elseif not (moves[cur[1]] and moves[cur[1]][state]) then
      settled(entry, nil)
      out[#out + 1] = 2
    else
      -- A legal move starts from a live state (final ones are absorbing).
      local final = finals[state] == true
      local set = {'state', state}
      if started then
        set[#set + 1] = 'started_at'
        set[#set + 1] = now
      end
      if state == 'done' then
        set[#set + 1] = 'executions'
        set[#set + 1] = (tonumber(cur[2]) or 0) + 1
      end
      if final then
        set[#set + 1] = 'finished_at'
        set[#set + 1] = now
      end
      for i = first, first + nf - 1 do set[#set + 1] = ARGV[i] end
      redis.call('HSET', rec, unpack(set))
      -- A finished task's record expires; a live one's never does (PERSIST
      -- also clears the TTL that earlier releases gave every record).
      if final then
        redis.call('EXPIRE', rec, ttl)
      else
        redis.call('PERSIST', rec)
      end
      settled(entry, note)
      out[#out + 1] = 1
    end
  end
end
for _, box in ipairs(inboxes) do
  local n = notes[box]
  local count = #n
  if count == 1 then
    redis.call('XADD', box, 'NOMKSTREAM', 'MAXLEN', '~', maxlen, '*', 'r', n[1])
  else
    -- Trimmed by entries, as single notes are: a limit scaled down by the
    -- notes per entry would cut the unread single-note entries before it.
    local head
    if count < 16 then
      head = string.char(0x90 + count)
    else
      head = string.char(0xdc, math.floor(count / 256), count % 256)
    end
    redis.call('XADD', box, 'NOMKSTREAM', 'MAXLEN', '~', maxlen, '*', 'rs', head .. table.concat(n))
  end
end
for _, s in ipairs(streams) do
  redis.call('XACK', s, group, unpack(acks[s]))
  redis.call('XDEL', s, unpack(acks[s]))
end
return out
""".replace("FINALS", _FINALS).replace("LUA_MOVES", LUA_MOVES)


class StoreOp:
    """One task of a :data:`STORE_MANY` call: its record's fields and its stream entry.

    Args:
        record_key: The task's ledger key.
        stream: The stream the task goes to.
        fields: The record's :meth:`~swarm.redis.ledger.RedisLedger.flat_fields`,
            or None for a new task's (those of ``env``).
        data: The encoded envelope.
        env: The task, when ``fields`` is None.
    """

    __slots__ = ("data", "env", "fields", "record_key", "stream")

    def __init__(
        self,
        record_key: str,
        stream: str,
        fields: list[Any] | None,
        data: bytes,
        env: Envelope | None = None,
    ) -> None:
        if fields is None and env is None:
            raise ValueError("a StoreOp needs the record's fields or the task")
        self.record_key = record_key
        self.stream = stream
        self.fields = fields
        self.data = data
        self.env = env


class RunningMark(Protocol):
    """A first delivery's "running" mark in a :func:`queue_settle` call.

    Attributes:
        record_key: The task's ledger key.
        agent_id: The agent running it.
        mark: Set by :func:`queue_settle` while it builds the call holding
            the mark; None otherwise.
    """

    record_key: str
    agent_id: str | None
    mark: object


class MarkBatch(list[RunningMark]):
    """Marks queued as one item of a :func:`queue_settle` call (one reply for all).

    Attributes:
        taken: Set once a call holding the batch is built: it takes no more marks.
        owner: Whatever queued it (a batcher), for the queuer to tell its own batches.
    """

    __slots__ = ("owner", "taken")

    def __init__(self, owner: object = None) -> None:
        super().__init__()
        self.owner = owner
        self.taken = False


#: A first delivery's "done" move with its note, for the task whose
#: :class:`RunningMark` is the first element: (mark, record key, stream, entry
#: id, inbox, note, result, result_type). A tuple, not an object: one per task.
FirstDone = tuple[RunningMark, str, str, bytes, str, bytes, bytes, str]


class SettleOp:
    """One ledger move of a :data:`SETTLE_MANY` call, with its entry's ack and note.

    Args:
        record_key: The task's ledger key.
        state: The new state (a :class:`~swarm.ledger.TaskState` value).
        fields: Field/value elements to set besides the state and timings.
        ack: (stream, entry id) to ack and delete, if any.
        notify: (inbox stream, note) to append, if any (needs ``ack``).
        mark: The task's "running" mark, if it may be in the same call (it is
            then written with this move; ``fields`` must set the attempts).
    """

    __slots__ = ("ack", "fields", "kind", "mark", "notify", "record_key", "state")

    def __init__(
        self,
        record_key: str,
        state: str,
        fields: list[Any],
        ack: tuple[str, bytes] | None = None,
        notify: tuple[str, bytes] | None = None,
        mark: RunningMark | None = None,
    ) -> None:
        self.record_key = record_key
        self.state = state
        self.fields = fields
        self.ack = ack
        self.notify = notify
        self.mark = mark
        self.kind = "r" if ack is None else "a" if notify is None else "n"


def queue_store(
    pipe: Pipeline, ops: list[StoreOp], *, fence: str | None, epoch: int
) -> None:
    """Add one :data:`STORE_MANY` call for ``ops`` to ``pipe`` (``fence``: an epoch key)."""
    keys: list[str] = [] if fence is None else [fence]
    args: list[Any] = ["" if fence is None else epoch]
    stream = None
    for op in ops:
        fields = op.fields
        env = op.env
        if fields is None and env is not None:
            # A new task: the values of RedisLedger.task_fields, without
            # building that list (and slicing it) per task.
            more: list[Any] | tuple[()] = (
                RedisLedger.task_fields(env)[10:]
                if env.priority or env.epoch or env.idempotency_key
                else ()
            )
            extra = len(more)
            if op.stream != stream:
                stream = op.stream
                keys.append(stream)
                extra = -extra - 1
            keys.append(op.record_key)
            created = _float_text(env.created_at or time.time())
            if more:
                args += (extra, env.id, env.type, env.recipient, _QUEUED, created, *more)
                args.append(op.data)
            else:
                args += (extra, env.id, env.type, env.recipient, _QUEUED, created, op.data)
            continue
        assert fields is not None  # checked by StoreOp
        # The first five pairs have fixed names (see RedisLedger.flat_fields).
        extra = len(fields) - 10
        if op.stream != stream:
            stream = op.stream
            keys.append(stream)
            extra = -extra - 1
        keys.append(op.record_key)
        args.append(extra)
        args += fields[1:10:2]
        args += fields[10:]
        args.append(op.data)
    pipe.eval(STORE_MANY, len(keys), *keys, *args)


def queue_settle(
    pipe: Pipeline,
    ops: list[SettleOp | RunningMark | MarkBatch | FirstDone],
    *,
    now: float,
    ttl: int,
    group: str,
    maxlen: int,
) -> None:
    """Add one :data:`SETTLE_MANY` call for ``ops`` to ``pipe``.

    ``ops`` holds ledger moves, "running" marks (a :class:`RunningMark`: the
    record goes to "running" at ``now``, attempt 1, with the mark's agent id;
    or a :class:`MarkBatch` of them) and first-delivery completions
    (:data:`FirstDone`). A mark whose own completion (a :data:`FirstDone`, or
    a :class:`SettleOp` naming it as ``mark``) is in the same call becomes part
    of that one write: nobody could observe the state between the two. Each
    mark of the call is stamped (its ``mark`` attribute) while the call is
    built, and cleared once it is. The reply has one entry per item of
    ``ops``, then one per mark written on its own (after all of them). Notes
    must be MessagePack objects (the submitter reads several as one array).
    """
    keys: list[Any] = []
    args: list[Any] = [repr(now), ttl, group, maxlen]
    append = args.append
    stream: str | None = None
    inbox: str | None = None
    marks: list[RunningMark] = []
    for op in ops:
        cls = op.__class__
        if cls is tuple:
            done: FirstDone = op  # type: ignore[assignment]
            d, key, ack_stream, entry, to, note, result, result_type = done
            if d.mark is ops:
                d.mark = None
                keys.append(key)
                if ack_stream != stream or to != inbox:
                    stream, inbox = ack_stream, to
                    keys += (stream, inbox)
                    append("F")
                else:
                    append("f")
                args += (d.agent_id, result, result_type, entry, note)
                continue
            # Its mark went out in an earlier call: a plain "done" move.
            op = SettleOp(
                key,
                "done",
                [b"attempts", 1, b"result", result, b"result_type", result_type],
                ack=(ack_stream, entry),
                notify=(to, note),
            )
        elif cls is MarkBatch:
            batch: MarkBatch = op  # type: ignore[assignment]
            batch.taken = True
            for mark in batch:
                mark.mark = ops
            marks += batch
            # A placeholder keeps the replies in step with ``ops``; the marks
            # are written with their completions, or after the last move.
            append("")
            continue
        elif cls is not SettleOp:
            one: RunningMark = op  # type: ignore[assignment]
            one.mark = ops
            marks.append(one)
            append("")
            continue
        assert isinstance(op, SettleOp)
        kind = op.kind
        fields = op.fields
        count = len(fields)
        mine = op.mark
        if mine is not None and mine.mark is ops:
            mine.mark = None
            fields = [b"agent_id", mine.agent_id, *fields]
            count = -len(fields) - 1  # and started_at: the mark's time
        keys.append(op.record_key)
        ack = op.ack
        if ack is None:
            args += (kind, op.state, count)
            args += fields
            continue
        notify = op.notify
        if notify is None:
            if ack[0] != stream:
                stream = ack[0]
                keys.append(stream)
                kind = "A"
        elif ack[0] != stream or notify[0] != inbox:
            stream, inbox = ack[0], notify[0]
            keys += (stream, inbox)
            kind = "N"
        args += (kind, op.state, count)
        args += fields
        append(ack[1])
        if notify is not None:
            append(notify[1])
    for mark in marks:
        if mark.mark is ops:
            # Still running (or settled in a later call).
            mark.mark = None
            keys.append(mark.record_key)
            args += ("r", "running", 4, b"attempts", 1, b"agent_id", mark.agent_id)
    pipe.eval(SETTLE_MANY, len(keys), *keys, *args)
