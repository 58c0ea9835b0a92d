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

from typing import Any

from swarm.ledger import FINAL_STATES
from swarm.redis.streams import Pipeline

__all__ = ["SETTLE_MANY", "STORE_MANY", "SettleOp", "StoreOp", "queue_settle", "queue_store"]

_FINALS = " ".join(s.value for s in FINAL_STATES)

# KEYS: [fence,] then record and stream of each task. ARGV: ttl, epoch ("" when
# not fenced), then per task: number of field/value elements, the elements,
# the envelope. Returns the stream entry id of each task, or the FENCED error
# (for all of them: they share the epoch) when the fence is newer.
STORE_MANY = """
local ki = 1
if ARGV[2] ~= '' then
  local fence = tonumber(redis.call('GET', KEYS[1]) or '0')
  if tonumber(ARGV[2]) < fence then
    return redis.error_reply('FENCED epoch ' .. ARGV[2] .. ' is older than ' .. fence)
  end
  ki = 2
end
local out = {}
local ai = 3
while ai <= #ARGV do
  local nf = tonumber(ARGV[ai])
  redis.call('HSET', KEYS[ki], unpack(ARGV, ai + 1, ai + nf))
  redis.call('EXPIRE', KEYS[ki], ARGV[1])
  out[#out + 1] = redis.call('XADD', KEYS[ki + 1], '*', 'e', ARGV[ai + nf + 1])
  ki = ki + 2
  ai = ai + nf + 2
end
return out
"""

# KEYS: per operation its record [, stream [, inbox]]. ARGV: now, ttl, group,
# inbox max length, then per operation: kind ("r": record only, "a": and ack,
# "n": and ack and notify, "x": nothing, merged into a later operation),
# state, number of field/value elements, the elements, then (kinds "a" and
# "n") the entry id and (kind "n") the note.
# Per operation as the ledger's update script with ``quiet``: an unknown
# record is left alone and its entry not acked (reply 0, else 1). Acks run
# last, one XACK and one XDEL per stream.
SETTLE_MANY = """
local now, ttl, group, maxlen = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local finals = ' FINALS '
local out = {}
local acks = {}
local streams = {}
local ki, ai = 1, 5
while ai <= #ARGV do
  local kind, state, nf = ARGV[ai], ARGV[ai + 1], tonumber(ARGV[ai + 2])
  local rec = KEYS[ki]
  local first = ai + 3
  ai = first + nf
  local stream, inbox, entry, note
  ki = ki + 1
  if kind == 'a' or kind == 'n' then
    stream = KEYS[ki]
    entry = ARGV[ai]
    ki = ki + 1
    ai = ai + 1
    if kind == 'n' then
      inbox = KEYS[ki]
      note = ARGV[ai]
      ki = ki + 1
      ai = ai + 1
    end
  end
  local cur = kind ~= 'x' and redis.call('HMGET', rec, 'state', 'executions')
  if not cur then
    -- Merged into a later operation of this call.
    out[#out + 1] = 1
  elseif not cur[1] then
    -- Unknown (every record has a state).
    out[#out + 1] = 0
  else
    local prev = cur[1]
    local prev_final = string.find(finals, ' ' .. prev .. ' ', 1, true) ~= nil
    local final = string.find(finals, ' ' .. state .. ' ', 1, true) ~= nil
    local set = {'state', state}
    if state == 'running' then
      set[#set + 1] = 'started_at'
      set[#set + 1] = now
    elseif state == 'done' then
      set[#set + 1] = 'executions'
      set[#set + 1] = (tonumber(cur[2]) or 0) + 1
    end
    if final and not prev_final then
      set[#set + 1] = 'finished_at'
      set[#set + 1] = now
    elseif prev_final and not final then
      redis.call('HDEL', rec, 'finished_at')
    end
    for i = first, first + nf - 1 do set[#set + 1] = ARGV[i] end
    redis.call('HSET', rec, unpack(set))
    redis.call('EXPIRE', rec, ttl)
    if inbox then
      redis.call('XADD', inbox, 'MAXLEN', '~', maxlen, '*', 'r', note)
    end
    if stream then
      if not acks[stream] then
        acks[stream] = {}
        streams[#streams + 1] = stream
      end
      local ids = acks[stream]
      ids[#ids + 1] = entry
    end
    out[#out + 1] = 1
  end
end
for _, stream in ipairs(streams) do
  redis.call('XACK', stream, group, unpack(acks[stream]))
  redis.call('XDEL', stream, unpack(acks[stream]))
end
return out
""".replace("FINALS", _FINALS)


class StoreOp:
    """One task of a :data:`STORE_MANY` call: its record's fields and its stream entry."""

    __slots__ = ("data", "fields", "record_key", "stream")

    def __init__(self, record_key: str, stream: str, fields: list[Any], data: bytes) -> None:
        self.record_key = record_key
        self.stream = stream
        self.fields = fields
        self.data = data


class SettleOp:
    """One ledger move of a :data:`SETTLE_MANY` call, with its entry's ack and note.

    Args:
        record_key: The task's ledger key.
        state: The new state (a :class:`~swarm.ledger.TaskState` value).
        fields: Field/value elements to set besides the state and timings.
        ack: (stream, entry id) to ack and delete, if any.
        notify: (inbox stream, note) to append, if any (needs ``ack``).
    """

    __slots__ = ("ack", "fields", "kind", "notify", "record_key", "state")

    def __init__(
        self,
        record_key: str,
        state: str,
        fields: list[Any],
        ack: tuple[str, bytes] | None = None,
        notify: tuple[str, bytes] | None = None,
    ) -> None:
        self.record_key = record_key
        self.state = state
        self.fields = fields
        self.ack = ack
        self.notify = notify
        self.kind = "r" if ack is None else "a" if notify is None else "n"


def queue_store(
    pipe: Pipeline, ops: list[StoreOp], *, ttl: int, fence: str | None, epoch: int
) -> None:
    """Add one :data:`STORE_MANY` call for ``ops`` to ``pipe`` (``fence``: an epoch key)."""
    keys: list[str] = [] if fence is None else [fence]
    args: list[Any] = [ttl, "" if fence is None else epoch]
    for op in ops:
        keys += (op.record_key, op.stream)
        args.append(len(op.fields))
        args += op.fields
        args.append(op.data)
    pipe.eval(STORE_MANY, len(keys), *keys, *args)


def queue_settle(
    pipe: Pipeline, ops: list[SettleOp], *, now: float, ttl: int, group: str, maxlen: int
) -> None:
    """Add one :data:`SETTLE_MANY` call for ``ops`` to ``pipe``.

    A "running" mark followed by a final move of the same record in ``ops``
    becomes one write (nobody could observe the state between the two).
    """
    stamp = repr(now)
    marks: dict[str, int] = {}
    merged: dict[int, list[Any]] = {}
    for i, op in enumerate(ops):
        if op.kind == "r":
            marks[op.record_key] = i
        else:
            j = marks.pop(op.record_key, -1)
            if j >= 0:
                merged[j] = merged[i] = [*ops[j].fields, b"started_at", stamp, *op.fields]
    keys: list[Any] = []
    args: list[Any] = [stamp, ttl, group, maxlen]
    for i, op in enumerate(ops):
        keys.append(op.record_key)
        fields = merged.get(i, op.fields)
        if op.kind == "r" and i in merged:
            args += ("x", "", 0)
            continue
        args += (op.kind, op.state, len(fields))
        args += fields
        if op.ack is not None:
            keys.append(op.ack[0])
            args.append(op.ack[1])
            if op.notify is not None:
                keys.append(op.notify[0])
                args.append(op.notify[1])
    pipe.eval(SETTLE_MANY, len(keys), *keys, *args)
