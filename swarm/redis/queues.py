"""Queue depth and age of every role, read from Redis in one round trip.

Nothing is counted by hand: a role's waiting tasks are its band streams'
entries not yet delivered to the consumer group (acked entries are deleted,
so that is ``XLEN`` less the group's pending count), and the oldest waiting
task's age comes from the id of the first entry after the group's
last-delivered id. One script per role (its keys share the role's hash tag,
so this works on Redis Cluster too), all in one pipeline.

Example:
    >>> from swarm.redis.queues import QueueStats
    >>> QueueStats(role="scraper", waiting={9: 2}, oldest_age={9: 0.5}, delayed=0, dead=1).total
    2
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from swarm import constants as C

__all__ = ["QueueStats", "read_queues"]

# KEYS: groups of ARGV[2] keys, one per role: its band streams (best first), then
# its delayed set and dead-letter stream. ARGV: consumer group, keys per role.
# Returns the server time (s, us), then per role and band: exists (0/1),
# waiting, oldest waiting entry id ("" if none), entries the group was ever
# handed (its read counter, -1 if Redis does not know it); then per role its
# ZCARD and XLEN.
QUEUE_STATS = """
local out = redis.call('TIME')
local size = tonumber(ARGV[2])
local n = size - 2
for base = 0, #KEYS - size, size do
  for i = 1, n do
    local k = KEYS[base + i]
    local len = redis.call('XLEN', k)
    local exists = len > 0 and 1 or redis.call('EXISTS', k)
    local waiting, oldest, read = 0, '', -1
    if exists == 1 then
      local pending, last = 0, '0-0'
      local ok, groups = pcall(redis.call, 'XINFO', 'GROUPS', k)
      if ok then
        for _, g in ipairs(groups) do
          local f = {}
          for j = 1, #g, 2 do f[g[j]] = g[j + 1] end
          if f['name'] == ARGV[1] then
            pending = f['pending']
            last = f['last-delivered-id']
            if type(f['entries-read']) == 'number' then read = f['entries-read'] end
          end
        end
      end
      waiting = len - pending
      if waiting > 0 then
        local e = redis.call('XRANGE', k, '(' .. last, '+', 'COUNT', 1)
        if e[1] then oldest = e[1][1] end
      end
    end
    out[#out + 1] = exists
    out[#out + 1] = waiting
    out[#out + 1] = oldest
    out[#out + 1] = read
  end
  out[#out + 1] = redis.call('ZCARD', KEYS[base + n + 1])
  out[#out + 1] = redis.call('XLEN', KEYS[base + n + 2])
end
return out
"""


@dataclass(slots=True)
class QueueStats:
    """One role's queues.

    Attributes:
        role: The role.
        waiting: Tasks not yet delivered, per priority band that has a stream.
        oldest_age: Seconds the oldest of them has waited, per band (0 if none).
        delayed: Tasks waiting for their retry backoff.
        dead: Tasks in the dead-letter stream.
        delivered: Tasks ever handed to the role's agents (a counter; its rate
            is the role's throughput), over the bands where Redis knows it.
    """

    role: str
    waiting: dict[int, int] = field(default_factory=dict)
    oldest_age: dict[int, float] = field(default_factory=dict)
    delayed: int = 0
    dead: int = 0
    delivered: int = 0

    @property
    def total(self) -> int:
        """Tasks waiting in every band."""
        return sum(self.waiting.values())


# One Script object per client: redis-py keeps its SHA and loads it on demand.
_scripts: dict[int, Any] = {}


def _ms(entry_id: bytes | str) -> int:
    raw = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
    return int(raw.partition("-")[0])


async def read_queues(
    redis: Any, prefix: str, roles: Iterable[str], *, cluster: bool = False
) -> list[QueueStats]:
    """The queues of ``roles``: one script call for all (on Redis Cluster, one per role).

    Raises:
        redis.exceptions.RedisError: The read failed (the caller translates it).
    """
    names = sorted(set(roles))
    if not names:
        return []
    script = _scripts.get(id(redis))
    if script is None or script.registered_client is not redis:
        script = _scripts[id(redis)] = redis.register_script(QUEUE_STATS)
    bands = C.PRIORITY_BANDS
    size = len(bands) + 2
    groups = []
    for role in names:
        keys = [C.task_stream(role, b, prefix) for b in bands]
        keys += [C.delayed_key(role, prefix), C.dead_letter_stream(role, prefix)]
        groups.append(keys)
    if cluster:
        # A role's keys share its hash tag (one slot); different roles may not.
        # EVAL, not EVALSHA: a cluster pipeline does not load scripts on the nodes.
        pipe = redis.pipeline(transaction=False)
        for keys in groups:
            pipe.eval(QUEUE_STATS, len(keys), *keys, C.TASK_GROUP, size)
        replies = await pipe.execute()
    else:
        # EVALSHA (loaded on demand): one command and one reply for every role.
        flat = await script(keys=[k for keys in groups for k in keys], args=[C.TASK_GROUP, size])
        per_role = 4 * len(bands) + 2
        replies = [
            [flat[0], flat[1], *flat[2 + i * per_role : 2 + (i + 1) * per_role]]
            for i in range(len(names))
        ]
    out = []
    for role, reply in zip(names, replies, strict=True):
        now_ms = int(reply[0]) * 1000 + int(reply[1]) // 1000
        stats = QueueStats(role=role, delayed=int(reply[-2]), dead=int(reply[-1]))
        for i, band in enumerate(bands):
            exists, waiting, oldest, read = reply[2 + 4 * i : 6 + 4 * i]
            if not int(exists):
                continue
            if int(read) > 0:
                stats.delivered += int(read)
            stats.waiting[band] = int(waiting)
            stats.oldest_age[band] = max(0.0, (now_ms - _ms(oldest)) / 1000) if oldest else 0.0
        out.append(stats)
    return out
