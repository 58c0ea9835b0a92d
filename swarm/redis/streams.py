"""Redis Streams helpers of the Redis runtime: the Lua scripts and a pipeline batcher.

Every state change of a task entry that must not be half-done runs as one
Lua script on the keys of one role, which share the ``{role}`` hash tag and
so one Redis Cluster slot: ack-and-delete, ack-and-schedule-a-retry,
ack-and-dead-letter, ack-and-move-aside, promotion of due retries, and the
reclaim of entries idle past the visibility timeout together with their
delivery counts.

Scripts are sent with ``EVAL`` (not ``EVALSHA``): Redis caches them by digest
anyway, and a restarted server (which forgets loaded scripts) then needs no
reload-and-retry dance in the middle of a pipeline.

Example:
    >>> from swarm.redis.streams import band_of
    >>> band_of(7), band_of(1), band_of(-3)
    (2, 1, 0)
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Any, Protocol

import structlog
from redis.exceptions import ResponseError

from swarm.constants import PRIORITY_BANDS
from swarm.redis.connections import (
    AnyRedis,
    HiredisPackConnection,
    PipelineConnection,
    use_hiredis_packer,
)

__all__ = [
    "ACK",
    "BURY",
    "DEAD",
    "FETCH",
    "ORPHANS",
    "PROMOTE",
    "RECLAIM",
    "REDRIVE",
    "REJECT",
    "REQUEUE",
    "RETRY",
    "TRIM",
    "HiredisPackConnection",
    "PipelineBatcher",
    "ReplyWatcher",
    "StreamEntry",
    "band_of",
    "ensure_group",
    "flat_fields",
    "parse_entries",
    "parse_read",
    "stream_pairs",
    "use_hiredis_packer",
]

_log = structlog.get_logger("swarm.redis.streams")

#: A standalone or Cluster pipeline (their command APIs match).
Pipeline = Any

# KEYS: streams, best first. ARGV: group, consumer, count, start id (">" or "0").
# Returns a flat list: key index, entry id, fields (or false if deleted), delivery count.
# New entries are only looked for in a stream that holds entries at all: most
# of a replica's streams (its own, the bands nobody uses) are mostly empty, and
# XLEN costs a fraction of an XREADGROUP that finds nothing.
FETCH = """
local out = {}
local left = tonumber(ARGV[3])
local new = ARGV[4] == '>'
for i, key in ipairs(KEYS) do
  if left <= 0 then break end
  local res = false
  if not new or redis.call('XLEN', key) > 0 then
    res = redis.call('XREADGROUP', 'GROUP', ARGV[1], ARGV[2], 'COUNT', left,
                     'STREAMS', key, ARGV[4])
  end
  if res and res[1] then
    local entries = res[1][2]
    local counts = {}
    if ARGV[4] ~= '>' and #entries > 0 then
      local p = redis.call('XPENDING', key, ARGV[1], entries[1][1], entries[#entries][1],
                           #entries, ARGV[2])
      for _, e in ipairs(p) do counts[e[1]] = e[4] end
    end
    for _, e in ipairs(entries) do
      if e[2] then
        table.insert(out, i)
        table.insert(out, e[1])
        table.insert(out, e[2])
        table.insert(out, counts[e[1]] or 1)
        left = left - 1
      else
        -- Deleted while pending: nothing left to deliver.
        redis.call('XACK', key, ARGV[1], e[1])
      end
    end
  end
end
return out
"""

# KEYS: stream. ARGV: group, consumer, min idle ms, count. Same shape as FETCH.
RECLAIM = """
local res = redis.call('XAUTOCLAIM', KEYS[1], ARGV[1], ARGV[2], ARGV[3], '0-0',
                       'COUNT', ARGV[4])
local out = {}
for _, e in ipairs(res[2]) do
  if e[2] then
    local p = redis.call('XPENDING', KEYS[1], ARGV[1], e[1], e[1], 1)
    table.insert(out, 1)
    table.insert(out, e[1])
    table.insert(out, e[2])
    table.insert(out, p[1] and p[1][4] or 1)
  else
    redis.call('XACK', KEYS[1], ARGV[1], e[1])
  end
end
return out
"""

# KEYS: stream. ARGV: group, consumer to claim for, count, then the live consumers.
# Claims the pending entries of consumers that are not live (their agent died:
# no heartbeat) at once, without waiting for the visibility timeout, and drops
# dead consumers that hold nothing. Same reply shape as FETCH.
ORPHANS = """
local live = {}
for i = 4, #ARGV do live[ARGV[i]] = true end
live[ARGV[2]] = true
local ok, consumers = pcall(redis.call, 'XINFO', 'CONSUMERS', KEYS[1], ARGV[1])
if not ok then return {} end
local out = {}
local left = tonumber(ARGV[3])
for _, c in ipairs(consumers) do
  local name, pending
  for i = 1, #c, 2 do
    if c[i] == 'name' then name = c[i + 1] end
    if c[i] == 'pending' then pending = c[i + 1] end
  end
  if name and not live[name] then
    if pending == 0 then
      redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], name)
    elseif left > 0 then
      local p = redis.call('XPENDING', KEYS[1], ARGV[1], '-', '+', left, name)
      for _, e in ipairs(p) do
        local got = redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, e[1])
        if got[1] and got[1][2] then
          table.insert(out, 1)
          table.insert(out, got[1][1])
          table.insert(out, got[1][2])
          table.insert(out, e[4] + 1)
          left = left - 1
        elseif got[1] == nil then
          -- Deleted entry: XCLAIM dropped it from the pending list.
        else
          redis.call('XACK', KEYS[1], ARGV[1], e[1])
        end
      end
    end
  end
end
return out
"""

# KEYS: stream. ARGV: group, entry id.
ACK = """
local n = redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])
redis.call('XDEL', KEYS[1], ARGV[2])
return n
"""

# KEYS: stream, delayed zset. ARGV: group, entry id, due (unix s), member.
RETRY = """
redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])
redis.call('XDEL', KEYS[1], ARGV[2])
return redis.call('ZADD', KEYS[2], ARGV[3], ARGV[4])
"""

# KEYS: stream, target stream. ARGV: group, entry id, envelope.
REQUEUE = """
redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])
redis.call('XDEL', KEYS[1], ARGV[2])
return redis.call('XADD', KEYS[2], '*', 'e', ARGV[3])
"""

# KEYS: stream, dead-letter stream. ARGV: group, entry id, envelope, error, failed_at,
# approximate cap of the dead letters.
DEAD = """
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[6], '*', 'e', ARGV[3], 'err', ARGV[4],
           'at', ARGV[5])
redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])
redis.call('XDEL', KEYS[1], ARGV[2])
return 1
"""

# KEYS: stream, rejected stream. ARGV: group, entry id, reason, max kept.
REJECT = """
local e = redis.call('XRANGE', KEYS[1], ARGV[2], ARGV[2])
local args = {KEYS[2], 'MAXLEN', '~', ARGV[4], '*', 'reason', ARGV[3], 'source', KEYS[1],
              'id', ARGV[2]}
if e[1] then
  for _, v in ipairs(e[1][2]) do table.insert(args, v) end
end
redis.call('XADD', unpack(args))
redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])
redis.call('XDEL', KEYS[1], ARGV[2])
return 1
"""

# KEYS: delayed zset. ARGV: now, limit. Members are "<stream key>\\n<envelope>"; the
# streams share the zset's hash tag, so they live in the same cluster slot.
PROMOTE = """
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, ARGV[2])
local n = 0
for _, m in ipairs(due) do
  if redis.call('ZREM', KEYS[1], m) == 1 then
    local cut = string.find(m, '\\n', 1, true)
    redis.call('XADD', string.sub(m, 1, cut - 1), '*', 'e', string.sub(m, cut + 1))
    n = n + 1
  end
end
return n
"""

# KEYS: dead-letter stream, target stream. ARGV: dead entry id, envelope.
REDRIVE = """
if redis.call('XDEL', KEYS[1], ARGV[1]) == 1 then
  return redis.call('XADD', KEYS[2], '*', 'e', ARGV[2])
end
return false
"""

# KEYS: agent stream, its role's dead-letter stream, its role's replicas hash
# (one slot: they share the role's hash tag). ARGV: agent id, the heartbeat
# last seen ("": do not touch the hash), error, failed_at, approximate cap of the
# dead letters.
# Buries a departed agent: drops its heartbeat unless it beat again since,
# moves the tasks still aimed at it to the dead letters and deletes its
# stream (with the stream's group). Returns the envelopes moved, or false
# when the agent came back.
BURY = """
if ARGV[2] ~= '' then
  local cur = redis.call('HGET', KEYS[3], ARGV[1])
  if cur and cur ~= ARGV[2] then return false end
  redis.call('HDEL', KEYS[3], ARGV[1])
end
local out = {}
if redis.call('EXISTS', KEYS[1]) == 1 then
  for _, e in ipairs(redis.call('XRANGE', KEYS[1], '-', '+')) do
    local f = e[2]
    for i = 1, #f, 2 do
      if f[i] == 'e' then
        redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[5], '*', 'e', f[i + 1],
                   'err', ARGV[3], 'at', ARGV[4])
        out[#out + 1] = f[i + 1]
      end
    end
  end
  redis.call('DEL', KEYS[1])
end
return out
"""

# KEYS: stream. ARGV: group. Trims entries older than both the oldest pending
# entry and the group's last delivered id: those were all acked.
TRIM = """
local ok, groups = pcall(redis.call, 'XINFO', 'GROUPS', KEYS[1])
if not ok then return 0 end
local last = nil
for _, g in ipairs(groups) do
  local name, lid
  for i = 1, #g, 2 do
    if g[i] == 'name' then name = g[i + 1] end
    if g[i] == 'last-delivered-id' then lid = g[i + 1] end
  end
  if name == ARGV[1] then last = lid end
end
if not last then return 0 end
local p = redis.call('XPENDING', KEYS[1], ARGV[1])
local minid = last
if p[1] > 0 then minid = p[2] end
return redis.call('XTRIM', KEYS[1], 'MINID', minid)
"""


_BAND_LO, _BAND_HI = min(PRIORITY_BANDS), max(PRIORITY_BANDS)


def band_of(priority: int) -> int:
    """Clamp a task priority to one of the stream priority bands."""
    return _BAND_LO if priority < _BAND_LO else _BAND_HI if priority > _BAND_HI else priority


@dataclass(slots=True)
class StreamEntry:
    """One entry read from a task stream.

    Attributes:
        key_index: Index of the stream in the key list the read used.
        entry_id: The stream entry id.
        fields: The entry's field/value pairs, flat (as Redis sends them: no
            dict per entry on the read path).
        deliveries: How many times the group delivered it (1 on first read).
    """

    key_index: int
    entry_id: bytes
    fields: list[bytes]
    deliveries: int

    def get(self, name: bytes) -> bytes | None:
        """The value of field ``name``, or None."""
        fields = self.fields
        for j in range(0, len(fields) - 1, 2):
            if fields[j] == name:
                return fields[j + 1]
        return None


def parse_entries(raw: list[Any]) -> list[StreamEntry]:
    """Parse the flat reply of :data:`FETCH` or :data:`RECLAIM`."""
    return [
        StreamEntry(int(raw[i]) - 1, raw[i + 1], raw[i + 2], int(raw[i + 3]))
        for i in range(0, len(raw), 4)
    ]


def stream_pairs(reply: Any) -> list[tuple[Any, list[Any]]]:
    """The (stream, entries) pairs of an ``XREAD``/``XREADGROUP`` reply, whatever its shape.

    RESP2 sends a list of pairs, RESP3 a map; redis-py's RESP3 callback (a
    Cluster client, whose replies come parsed) wraps each stream's entries in
    one more list.
    """
    if not reply:
        return []
    pairs = list(reply.items()) if isinstance(reply, dict) else reply
    for i, (key, items) in enumerate(pairs):
        if len(items) == 1 and isinstance(items[0], list):
            inner = items[0]
            # An entry is (id, fields); a wrapped list holds entries (or none).
            if not inner or isinstance(inner[0], (list, tuple)):
                pairs[i] = (key, inner)
    return pairs


def flat_fields(fields: list[bytes] | dict[bytes, bytes]) -> list[bytes]:
    """An entry's fields as Redis sends them (flat), also from redis-py's dict."""
    if isinstance(fields, dict):
        return [x for pair in fields.items() for x in pair]
    return fields


def parse_read(reply: Any, streams: list[str]) -> list[StreamEntry]:
    """Parse an ``XREADGROUP`` reply for the keys ``streams``.

    Raw (no redis-py callback) or parsed by redis-py (a Cluster client), in any
    shape :func:`stream_pairs` takes. Entries come in the order of ``streams``
    (best band first), as from :data:`FETCH`.
    """
    if not reply:
        return []
    pairs = stream_pairs(reply)
    index = {s.encode(): i for i, s in enumerate(streams)}
    out: list[StreamEntry] = []
    for key, items in pairs:
        i = index.get(key if isinstance(key, bytes) else str(key).encode(), 0)
        for entry_id, fields in items:
            if fields:
                out.append(StreamEntry(i, entry_id, flat_fields(fields), 1))
    if len(pairs) > 1:
        out.sort(key=_key_index)
    return out


def _key_index(entry: StreamEntry) -> int:
    return entry.key_index


async def ensure_group(redis: AnyRedis, stream: str, group: str) -> None:
    """Create a consumer group reading ``stream`` from its start (and the stream itself)."""
    try:
        await redis.xgroup_create(stream, group, id="0", mkstream=True)
    except ResponseError as exc:
        if "BUSYGROUP" not in str(exc):
            raise


def _consume(fut: asyncio.Future[Any]) -> None:
    if not fut.cancelled():
        fut.exception()


class ReplyWatcher(Protocol):
    """What :meth:`PipelineBatcher.watch` tells of an item whose command or round trip failed."""

    def failed(self, error: Exception) -> None:
        """The item's command, or the round trip, failed with ``error``."""

    def cancel(self) -> None:
        """The round trip was cancelled (the batcher stops)."""


class _Op:
    __slots__ = ("build", "future")

    def __init__(self, build: Callable[[Pipeline], None], future: asyncio.Future[list[Any]]):
        self.build = build
        self.future = future

    def cancel(self) -> None:
        if not self.future.done():
            self.future.cancel()


class _Group:
    __slots__ = ("build", "futures", "items", "key", "watchers")

    def __init__(self, key: Hashable, build: Callable[[Pipeline, list[Any]], None]) -> None:
        self.key = key
        self.build = build
        self.items: list[Any] = []
        # None for an item added with ``put`` or ``watch`` (no future to set).
        self.futures: list[asyncio.Future[Any] | None] = []
        # Told only of a failure: a success costs them nothing.
        self.watchers: list[ReplyWatcher] = []

    def fail(self, exc: Exception) -> None:
        # Grouped items get errors as values (see ``PipelineBatcher.add``).
        for fut in self.futures:
            if fut is not None and not fut.done():
                fut.set_result(exc)
        for watcher in self.watchers:
            watcher.failed(exc)

    def cancel(self) -> None:
        for fut in self.futures:
            if fut is not None and not fut.done():
                fut.cancel()
        for watcher in self.watchers:
            watcher.cancel()


class PipelineBatcher:
    """Coalesces the commands of concurrent callers into one pipeline round trip.

    Each caller adds its commands to the next pipeline and gets back the
    replies of just its commands (errors as exception instances, not raised).
    Items added with :meth:`add` under one key share one command instead.
    The flusher runs as a task owned by the caller's :class:`~swarm.tasks.TaskSet`.

    Args:
        redis: Client the pipelines run on.
        max_batch: Most callers served per round trip.
        max_group: Most items in one grouped command.
    """

    def __init__(self, redis: AnyRedis, *, max_batch: int = 512, max_group: int = 256) -> None:
        self._redis = redis
        # One round trip at a time: they can all use one connection.
        self._conn = PipelineConnection(redis)
        self._max_batch = max_batch
        self._max_group = max_group
        self._queue: list[_Op | _Group] = []
        self._open: dict[Hashable, _Group] = {}
        self._wake = asyncio.Event()
        # Whether a round trip is in flight (sent, reply not yet read).
        self._flushing = False
        # Callers of :meth:`written` waiting for the queued calls to be sent.
        self._sent: list[asyncio.Future[None]] = []

    def add(
        self, key: Hashable, build: Callable[[Pipeline, list[Any]], None], item: Any
    ) -> asyncio.Future[Any]:
        """Add ``item`` to the group ``key`` of the next round trip; return its reply's future.

        ``build`` (the same for every item of a key) queues exactly one command
        for all the group's items, whose reply is a list with one entry per
        item. The future gets that entry, or the error of the command or of the
        round trip as its *result* (an exception instance, never raised): a
        caller that drops the future leaves no "exception never retrieved"
        behind, without a done callback per item.

        An item joins the group opened by an earlier item, so it may run before
        calls queued after that: group only items that depend on no such call.
        """
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._group(key, build, item, fut)
        return fut

    def put(self, key: Hashable, build: Callable[[Pipeline, list[Any]], None], item: Any) -> None:
        """Like :meth:`add` for an item whose reply nobody reads: no future at all."""
        self._group(key, build, item, None)

    def watch(
        self,
        key: Hashable,
        build: Callable[[Pipeline, list[Any]], None],
        item: Any,
        watcher: ReplyWatcher,
    ) -> None:
        """Like :meth:`put`, with ``watcher`` told if the item's command or round trip fails.

        The caller need not await anything, and a success costs no call at
        all: no loop turn and no callback for a reply that only says "stored".
        So the command's reply must hold no per-item errors, only per-item
        values (or be an error as a whole).
        """
        self._group(key, build, item, None).watchers.append(watcher)

    def _group(
        self,
        key: Hashable,
        build: Callable[[Pipeline, list[Any]], None],
        item: Any,
        fut: asyncio.Future[Any] | None,
    ) -> _Group:
        group = self._open.get(key)
        if group is None or len(group.items) >= self._max_group:
            group = self._open[key] = _Group(key, build)
            self._queue.append(group)
            self._wake.set()
        group.items.append(item)
        group.futures.append(fut)
        return group

    def enqueue(self, build: Callable[[Pipeline], None]) -> asyncio.Future[list[Any]]:
        """Queue ``build``'s commands and return the future of their replies, without waiting.

        Calls run in order, so a later :meth:`call` sees this one's effects.
        """
        fut: asyncio.Future[list[Any]] = asyncio.get_running_loop().create_future()
        # Consumed even when the caller drops it (e.g. its delivery was interrupted).
        fut.add_done_callback(_consume)
        self._queue.append(_Op(build, fut))
        self._wake.set()
        return fut

    async def call(self, build: Callable[[Pipeline], None]) -> list[Any]:
        """Queue ``build``'s commands for the next round trip and return their replies.

        Raises:
            redis.exceptions.ConnectionError: The round trip failed.
        """
        fut: asyncio.Future[list[Any]] = asyncio.get_running_loop().create_future()
        self._queue.append(_Op(build, fut))
        self._wake.set()
        return await fut

    async def written(self) -> None:
        """Return once the calls queued so far are being sent (at once if there are none).

        For a reader that just handed work over and is about to issue its next
        blocking read: waiting here first puts the round trip that work queued
        (e.g. a task's settlement) on the wire before the read, rather than
        behind it. While a round trip is in flight it returns at once rather
        than wait for that round trip's reply.
        """
        if not self._queue or self._flushing:
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._sent.append(fut)
        await fut

    def _release_written(self) -> None:
        sent, self._sent = self._sent, []
        for fut in sent:
            if not fut.done():
                fut.set_result(None)

    async def run(self) -> None:
        """Flush queued calls until cancelled."""
        busy = True
        try:
            while True:
                await self._wake.wait()
                self._wake.clear()
                if busy:
                    # One more loop turn lets the callers woken by the same
                    # event (e.g. a batch of results read at once) join this
                    # round trip. Skipped while calls come one at a time (a
                    # task's own pair of items aside): it would only add latency.
                    await asyncio.sleep(0)
                busy = len(self._queue) > 1 or any(
                    isinstance(op, _Group) and len(op.items) > 2 for op in self._queue
                )
                while self._queue:
                    batch = self._queue[: self._max_batch]
                    del self._queue[: self._max_batch]
                    for op in batch:
                        # A group taken for this round trip takes no more items.
                        if isinstance(op, _Group) and self._open.get(op.key) is op:
                            del self._open[op.key]
                    # Woken callers of ``written`` run after this step, which
                    # sends the pipeline before it first suspends.
                    self._release_written()
                    self._flushing = True
                    try:
                        await self._flush(batch)
                    finally:
                        self._flushing = False
        finally:
            self._release_written()
            for op in self._queue:
                op.cancel()
            self._queue.clear()
            self._open.clear()
            await self._conn.close()

    async def _flush(self, batch: list[_Op | _Group]) -> None:
        pipe = self._conn.pipeline()
        spans: list[tuple[_Op | _Group, int, int]] = []
        for op in batch:
            # Builders only queue commands from ready arguments; they do not fail.
            start = len(pipe)
            if isinstance(op, _Group):
                op.build(pipe, op.items)
            else:
                op.build(pipe)
            spans.append((op, start, len(pipe)))
        if not spans:
            return
        try:
            replies = await pipe.execute(raise_on_error=False)
        except asyncio.CancelledError:
            for op, _, _ in spans:
                op.cancel()
            raise
        except Exception as exc:
            for op, _, _ in spans:
                if isinstance(op, _Group):
                    op.fail(exc)
                elif not op.future.done():
                    op.future.set_exception(exc)
            return
        for op, start, end in spans:
            if isinstance(op, _Group):
                reply = replies[start]
                if isinstance(reply, Exception):
                    op.fail(reply)
                    continue
                if len(op.watchers) == len(op.items):
                    continue  # all watched: nothing to hand a success to
                for i, item_fut in enumerate(op.futures):
                    if item_fut is not None and not item_fut.done():
                        item_fut.set_result(reply[i])
            elif not op.future.done():
                op.future.set_result(list(replies[start:end]))
