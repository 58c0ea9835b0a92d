"""The Redis hot tier: one hash per memory, expiring after the hot TTL.

A read refreshes the TTL, so memories in use stay hot and the rest age out
(tiering by access). Concurrent operations are coalesced: the gets (and the
puts, and the deletes) gathered in one loop turn become one multi-key command
each, sent in one pipeline. Values are JSON, so a client created with
``decode_responses=True`` works as well as one without. An optional coherent
near-cache (:mod:`memory.tiers.near_cache`) serves repeated gets in-process.

Example:
    >>> from memory.tiers.redis_hot import RedisHotTier
    >>> RedisHotTier.durable
    False
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import time
from collections.abc import Awaitable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import msgspec
import redis.asyncio as aioredis
from redis.exceptions import NoScriptError, RedisError

from memory.records import Memory
from memory.settings import RedisHotSettings
from memory.tiers.base import strip_vector
from memory.tiers.near_cache import NearCache
from swarm.constants import KEY_PREFIX, memory_key
from swarm.errors import ConfigError, TransportError
from swarm.tasks import TaskSet

if TYPE_CHECKING:
    from swarm.redis.fastpath import PackedCommand, PackedSender

__all__ = ["RedisHotTier"]

# Each key is handled under pcall and answers for itself, so one bad key (say,
# a foreign value of another type) fails only its own caller, as it would with
# one command per operation. All keys share the `{memory}` hash tag, so these
# multi-key scripts are legal on Redis Cluster too.
# ARGV: ttl, then the remaining TTL below which a read refreshes it. A refresh
# is a write, and writes invalidate near-caches, so with one the refresh is
# skipped for keys refreshed recently (ARGV[2] < ARGV[1]); without, always.
_GET_MANY = """
local ttl = tonumber(ARGV[1])
local below = tonumber(ARGV[2])
local out = {}
for i, key in ipairs(KEYS) do
  local v = redis.pcall('HGET', key, 'data')
  if v and type(v) ~= 'table' and (below >= ttl or redis.call('TTL', key) < below) then
    redis.call('EXPIRE', key, ttl)
  end
  out[i] = v
end
return out
"""
# ARGV holds data, namespace, kind, ttl for each key in turn.
_PUT_MANY = """
local out = {}
for i, key in ipairs(KEYS) do
  local a = (i - 1) * 4
  local r = redis.pcall('HSET', key, 'data', ARGV[a + 1], 'namespace', ARGV[a + 2],
                        'kind', ARGV[a + 3])
  if type(r) == 'table' and r.err then
    out[i] = r
  else
    redis.call('EXPIRE', key, ARGV[a + 4])
    out[i] = 1
  end
end
return out
"""
# redis-py's per-command pack/parse cost, not Redis, is what bounds throughput:
# one command per kind and loop turn instead of one per operation.
_LUA = {"get": _GET_MANY, "put": _PUT_MANY}
_SHA = {name: hashlib.sha1(lua.encode()).hexdigest() for name, lua in _LUA.items()}
_PUT: tuple[Any, ...] = ("put",)
_DELETE: tuple[Any, ...] = ("delete",)
_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(Memory)


# One caller's operation waiting for the next flush, as a bare tuple (built
# per operation, so no class): kind ("get", "put" or "delete"); key; args
# (get: (ttl, refresh below), put: (data, namespace, kind, ttl), delete: ());
# future; group, the operations that may share one command (("get", ttl,
# below), ("put",) or ("delete",)).
_Op = tuple[str, str, tuple[Any, ...], "asyncio.Future[Any]", tuple[Any, ...]]


@dataclass(slots=True)
class _Command:
    """One multi-key command standing for several operations of one kind."""

    kind: str
    argv: list[Any]  # get: [ttl, refresh below]; put: the ops' args, flattened; delete: []
    keys: list[str] = field(default_factory=list)
    futures: list[asyncio.Future[Any]] = field(default_factory=list)


def _plan(ops: list[_Op]) -> list[_Command]:
    """Group operations into as few multi-key commands as keeps their order.

    Operations on distinct keys commute, so a batch only needs splitting when
    a key comes back under another command (a get after a put of the same key
    must still see the put). Gets with different TTLs cannot share an ARGV.
    """
    commands: list[_Command] = []
    open_: dict[tuple[Any, ...], _Command] = {}
    touched: dict[str, tuple[Any, ...]] = {}
    for kind, key, args, future, group in ops:
        # Groups are shared tuples (one per kind and tier), so identity is equality.
        if touched.setdefault(key, group) is not group:
            open_.clear()
            touched.clear()
            touched[key] = group
        command = open_.get(group)
        if command is None:
            command = _Command(kind, list(args) if kind == "get" else [])
            open_[group] = command
            commands.append(command)
        command.keys.append(key)
        if kind == "put":
            command.argv.extend(args)
        command.futures.append(future)
    return commands


def _wire(command: _Command) -> PackedCommand:
    """A command as the fast path packs it; a get's keys may share one header."""
    if command.kind == "delete":
        return (("DEL",), command.keys, (), False)
    head = ("EVALSHA", _SHA[command.kind], len(command.keys))
    return (head, command.keys, command.argv, command.kind == "get")


def _settle(future: asyncio.Future[Any], reply: Any) -> None:
    if future.done():  # its caller was cancelled
        return
    if isinstance(reply, Exception):
        future.set_exception(TransportError(f"redis hot tier: {reply}"))
    else:
        future.set_result(reply)


class RedisHotTier:
    """Memories cached in Redis hashes with a TTL.

    With ``near_cache`` > 0, gets are served from a coherent in-process
    :class:`~memory.tiers.near_cache.NearCache` of that many entries when it
    has the memory; Redis then tells every tier sharing the prefix which keys
    changed. A read reaching Redis refreshes the TTL only if it was not
    refreshed in the last ``near_max_age`` seconds (a refresh invalidates
    near-caches), so a memory in use lives at least ``ttl - 2 * near_max_age``
    seconds after its last read. Not available on Redis Cluster.

    Args:
        redis: An existing ``redis.asyncio`` client (not closed by the tier).
        settings: Used to create a client when ``redis`` is not given.
        prefix: Key prefix (default from ``settings`` or ``swarm``).
        ttl: Seconds a cached memory lives without being read.
        near_cache: Entries of the near-cache; 0 turns it off (default from ``settings``).
        near_max_age: Seconds a near-cached memory is served without asking Redis.
        fast: Use the fast path (:mod:`swarm.redis.fastpath`) when verified
            (default from ``settings``, else the process default).

    Raises:
        ConfigError: ``near_cache`` with a Redis Cluster client, or a
            ``near_max_age`` not below half the ``ttl``.
    """

    durable = False

    def __init__(
        self,
        *,
        redis: Any = None,
        settings: RedisHotSettings | None = None,
        prefix: str | None = None,
        ttl: int | None = None,
        near_cache: int | None = None,
        near_max_age: float | None = None,
        fast: bool | None = None,
    ) -> None:
        if redis is None and settings is None:
            raise ValueError("pass redis= or settings=")
        self._own = redis is None
        self._redis: Any = redis if redis is not None else aioredis.Redis.from_url(
            settings.url if settings is not None else ""
        )
        self.prefix = prefix or (settings.prefix if settings else KEY_PREFIX)
        self.ttl = ttl or (settings.ttl if settings else 3600)
        self._pending: list[_Op] = []
        self._wake = asyncio.Event()
        self._tasks = TaskSet("memory.redis-hot")
        self._flusher_task: asyncio.Task[None] | None = None
        self._key_head = memory_key("", self.prefix)
        # On the fast path a plain client's batches go out packed in one buffer
        # on a pooled connection; a cluster client, or the public path, through
        # redis-py's pipeline.
        # Imported here: swarm.redis imports the task history, which imports memory.
        from swarm.redis import fastpath

        if fast is None and settings is not None:
            fast = settings.fastpath
        if fast is None:
            fast = fastpath.default()
        self._packed: PackedSender | None = None
        if isinstance(self._redis, aioredis.Redis) and fastpath.select(fast):
            self._packed = fastpath.PackedSender(self._redis)
        size = near_cache if near_cache is not None else (settings.near_cache if settings else 0)
        # An explicit age is checked; the default one is cut to fit a short ttl.
        age = near_max_age or min(settings.near_max_age if settings else 30.0, self.ttl / 2)
        self.near: NearCache | None = None
        # Remaining TTL below which a read refreshes it (>= ttl: every read).
        self._refresh_below = self.ttl
        if size:
            if isinstance(self._redis, aioredis.RedisCluster):
                raise ConfigError("the memory near-cache does not support Redis Cluster")
            if not 0 < age <= self.ttl / 2:
                raise ConfigError(f"near_max_age {age} must be in (0, ttl / 2]")
            self.near = NearCache(
                redis=self._redis, prefix=memory_key("", self.prefix), capacity=size, max_age=age
            )
            self._refresh_below = math.ceil(self.ttl - age)
        self._get_args = (self.ttl, self._refresh_below)
        self._get_group: tuple[Any, ...] = ("get", *self._get_args)

    def key(self, memory_id: str) -> str:
        """Redis key of one memory."""
        return self._key_head + memory_id

    def _submit(
        self, kind: str, key: str, args: tuple[Any, ...], group: tuple[Any, ...]
    ) -> asyncio.Future[Any]:
        """Queue one operation for the next flush; its future gets its own reply.

        Concurrent callers share one round trip: while a batch is in flight
        the next one accumulates (redis-py costs tens of microseconds of CPU
        per command, so one command per caller cannot reach tens of thousands
        of operations per second). A plain function, not a coroutine: the
        caller awaits the future itself, one coroutine frame less per operation.
        """
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        pending = self._pending
        if not pending:
            # The flusher swaps in an empty list as it clears the event, so the
            # first operation of a batch is the one that has to wake it.
            self._wake.set()
        pending.append((kind, key, args, future, group))
        if self._flusher_task is None or self._flusher_task.done():
            self._flusher_task = self._tasks.spawn(self._flusher(), name="redis-hot-flusher")
        return future

    async def _flusher(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            batch, self._pending = self._pending, []
            if not batch:
                continue
            commands = _plan(batch)
            try:
                replies = await self._execute(commands)
            except asyncio.CancelledError:
                for op in batch:
                    op[3].cancel()
                raise
            except Exception as exc:
                # Whatever went wrong, every caller of the batch hears about it:
                # a flusher that died silently would leave them waiting forever.
                error = TransportError(f"redis hot tier: {exc!r}")
                for op in batch:
                    if not op[3].done():
                        op[3].set_exception(error)
                continue
            for command, reply in zip(commands, replies, strict=True):
                if command.kind == "delete" or isinstance(reply, Exception):
                    # DEL answers a count for all its keys; an error reply
                    # means the whole command failed.
                    for future in command.futures:
                        _settle(future, reply if isinstance(reply, Exception) else None)
                elif not isinstance(reply, list) or len(reply) != len(command.futures):
                    odd = RedisError(f"unexpected reply to {command.kind}: {reply!r}")
                    for future in command.futures:
                        _settle(future, odd)
                elif command.kind == "get":
                    # Decoded here, so a caller awaits the future itself (no
                    # coroutine of the tier's own per get); _decode inlined.
                    decode = _decoder.decode
                    for future, one in zip(command.futures, reply, strict=True):
                        if future.done():  # its caller was cancelled
                            continue
                        if one is None:
                            future.set_result(None)
                        elif isinstance(one, Exception):
                            _settle(future, one)
                        else:
                            try:
                                future.set_result(decode(one))
                            except msgspec.DecodeError:
                                # A foreign or corrupt value is a cache miss, not an outage.
                                future.set_result(None)
                else:
                    for future, one in zip(command.futures, reply, strict=True):
                        if isinstance(one, Exception):
                            _settle(future, one)
                        elif not future.done():
                            future.set_result(None)

    async def _execute(self, commands: list[_Command]) -> list[Any]:
        """Run commands in one round trip; reload the scripts once if Redis lost them."""
        for attempt in range(2):
            if self._packed is not None:
                replies = await self._packed.send([_wire(command) for command in commands])
            elif isinstance(self._redis, aioredis.RedisCluster):
                # redis-py refuses EVALSHA in a cluster pipeline; the keys share
                # one slot, so each command is one routed call, run together.
                replies = await asyncio.gather(
                    *(self._cluster_call(command) for command in commands),
                    return_exceptions=True,
                )
            else:
                async with self._redis.pipeline(transaction=False) as pipe:
                    for command in commands:
                        if command.kind == "delete":
                            pipe.delete(*command.keys)
                        else:
                            pipe.evalsha(
                                _SHA[command.kind], len(command.keys), *command.keys,
                                *command.argv,
                            )
                    replies = await pipe.execute(raise_on_error=False)
            if len(replies) != len(commands):
                raise RedisError(f"{len(replies)} replies to {len(commands)} commands")
            if attempt == 0 and any(isinstance(r, NoScriptError) for r in replies):
                # First use, or Redis restarted and flushed its script cache.
                for lua in _LUA.values():
                    await self._redis.script_load(lua)
                continue
            return replies
        raise RedisError("scripts missing after reload")

    async def _cluster_call(self, command: _Command) -> Any:
        if command.kind == "delete":
            return await self._redis.delete(*command.keys)
        return await self._redis.evalsha(
            _SHA[command.kind], len(command.keys), *command.keys, *command.argv
        )

    def get(self, memory_id: str) -> Awaitable[Memory | None]:
        """The cached memory or None; a hit refreshes its TTL.

        A plain function returning what to await (the batch's future, or with
        the near-cache a coroutine): one coroutine frame less per get.
        """
        key = self._key_head + memory_id
        if self.near is None:
            future: asyncio.Future[Memory | None] = self._submit(
                "get", key, self._get_args, self._get_group
            )
            return future
        return self._get_near(self.near, key)

    async def _get_near(self, near: NearCache, key: str) -> Memory | None:
        memory = near.lookup(key)
        if memory is not None:
            return memory
        near.ensure_started()
        token = near.begin(key)
        future: asyncio.Future[Memory | None] = self._submit(
            "get", key, self._get_args, self._get_group
        )
        try:
            memory = await future
        finally:
            if memory is None:
                near.abandon(key, token)
        if memory is not None:
            near.fill(key, token, memory)
        return memory

    def put(self, memory: Memory) -> Awaitable[None]:
        """Cache a memory (without its vector) for ``ttl`` seconds (a plain function, as ``get``).

        Returns:
            What to await for the write to be done.
        """
        data = _encoder.encode(strip_vector(memory))
        ttl = self.ttl
        if memory.expires_at is not None:
            # Never cache a memory beyond its own lifetime.
            ttl = max(1, min(ttl, math.ceil(memory.expires_at - time.time())))
        args = (data, memory.namespace, memory.kind.value, ttl)
        key = self.key(memory.id)
        if self.near is not None:
            # Read-your-writes here; other near-caches hear it from Redis.
            self.near.discard(key)
        future: asyncio.Future[None] = self._submit("put", key, args, _PUT)
        return future

    def delete(self, memory_id: str) -> Awaitable[None]:
        """Drop a cached memory (a plain function, as ``get``: queued in call order)."""
        key = self.key(memory_id)
        if self.near is not None:
            self.near.discard(key)
        future: asyncio.Future[None] = self._submit("delete", key, (), _DELETE)
        return future

    async def close(self) -> None:
        """Stop the flusher; close the client if the tier created it."""
        await self._tasks.close()
        if self.near is not None:
            await self.near.close()
        if self._own:
            await self._redis.aclose()
