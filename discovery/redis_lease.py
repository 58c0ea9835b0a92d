"""Leader election on a Redis lease, and writes fenced by its epoch.

Used where Consul is not configured but Redis is. Acquisition is one Lua
script: ``SET lease token NX PX ttl`` and, only if that succeeded, ``INCR``
of the epoch counter, so no two holders ever share an epoch. Renew and
release compare the stored token first (compare-and-set), so a deposed
holder cannot extend or delete its successor's lease.

:class:`FencedWriter` lands writes through a script that compares the
writer's epoch with the highest epoch the counter has seen: a stale epoch is
refused, counted in ``swarm_fenced_writes_refused_total`` and raised as
:class:`~swarm.errors.FencingError`.

Example:
    >>> from discovery.redis_lease import RedisLease
    >>> RedisLease.__name__
    'RedisLease'
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from typing import Any

from discovery.registry import Leadership
from swarm.constants import KEY_PREFIX, leader_epoch_key, leader_lease_key
from swarm.errors import FencingError, LeadershipLost
from swarm.metrics import FENCED_REFUSED

__all__ = ["FENCED_REFUSED", "FencedWriter", "RedisLease"]


_ACQUIRE = """
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  return redis.call('INCR', KEYS[2])
end
return 0
"""
_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""
# KEYS[1] epoch counter, KEYS[2] target key; ARGV[1] epoch, ARGV[2] command, ARGV[3..] its args.
# Returns {1, result} when written, {0, current epoch} when refused.
_FENCED = """
local current = tonumber(redis.call('GET', KEYS[1]) or '0')
local epoch = tonumber(ARGV[1])
if epoch < current then
  return {0, current}
end
if epoch > current then
  redis.call('SET', KEYS[1], ARGV[1])
end
return {1, redis.call(ARGV[2], KEYS[2], unpack(ARGV, 3))}
"""
# KEYS[1] epoch counter; ARGV[1] epoch: raise the fence without writing.
_ADVANCE = """
local current = tonumber(redis.call('GET', KEYS[1]) or '0')
if tonumber(ARGV[1]) > current then
  redis.call('SET', KEYS[1], ARGV[1])
  return tonumber(ARGV[1])
end
return current
"""


class RedisLease:
    """:class:`~discovery.registry.Election` on Redis.

    Args:
        redis: A ``redis.asyncio.Redis`` client.
        prefix: Key prefix (isolates swarms and tests).
    """

    def __init__(self, *, redis: Any, prefix: str = KEY_PREFIX) -> None:
        self.redis = redis
        self.prefix = prefix
        self._acquire = redis.register_script(_ACQUIRE)
        self._renew = redis.register_script(_RENEW)
        self._release = redis.register_script(_RELEASE)

    def _keys(self, name: str) -> list[str]:
        return [leader_lease_key(name, self.prefix), leader_epoch_key(name, self.prefix)]

    async def acquire(self, name: str, holder: str, *, ttl: float) -> Leadership | None:
        """Take the lease if free; the epoch is incremented atomically with it."""
        token = f"{holder}:{secrets.token_hex(8)}"
        epoch = int(await self._acquire(keys=self._keys(name), args=[token, int(ttl * 1000)]))
        if epoch == 0:
            return None
        return Leadership(name=name, holder=holder, epoch=epoch, token=token, ttl=ttl)

    async def renew(self, lease: Leadership) -> Leadership:
        """Extend the lease if it is still ours."""
        ok = await self._renew(
            keys=self._keys(lease.name)[:1], args=[lease.token, int(lease.ttl * 1000)]
        )
        if not ok:
            raise LeadershipLost(f"leadership {lease.name!r} of {lease.holder!r} was lost")
        return lease

    async def release(self, lease: Leadership) -> None:
        """Delete the lease if it is still ours."""
        await self._release(keys=self._keys(lease.name)[:1], args=[lease.token])

    async def current_epoch(self, name: str) -> int:
        """The newest epoch of ``name``."""
        value = await self.redis.get(leader_epoch_key(name, self.prefix))
        return int(value or 0)


class FencedWriter:
    """Writes to Redis that only the current leader's epoch may make.

    The fence is the election's epoch counter (:func:`swarm.constants.leader_epoch_key`):
    a :class:`RedisLease` advances it on acquisition; leaders elected elsewhere
    (Consul) raise it with :meth:`advance` when they take over. Target keys
    should carry the leadership's hash tag (:func:`swarm.constants.fenced_key`)
    on Redis Cluster, so the script touches one slot.

    Args:
        redis: A ``redis.asyncio.Redis`` client.
        name: The election's name.
        prefix: Key prefix.
    """

    #: Single-key write commands :meth:`execute` accepts.
    COMMANDS = frozenset({
        "DEL", "EXPIRE", "HDEL", "HINCRBY", "HSET", "HSETNX", "INCR", "LPUSH", "PEXPIRE",
        "RPUSH", "SADD", "SET", "SREM", "XADD", "ZADD", "ZREM",
    })

    def __init__(self, *, redis: Any, name: str, prefix: str = KEY_PREFIX) -> None:
        self.redis = redis
        self.name = name
        self.fence = leader_epoch_key(name, prefix)
        self._fenced = redis.register_script(_FENCED)
        self._advance = redis.register_script(_ADVANCE)

    async def current(self) -> int:
        """The epoch the fence stands at (0 when never raised, or flushed)."""
        value = await self.redis.get(self.fence)
        return int(value or 0)

    async def advance(self, epoch: int) -> int:
        """Raise the fence to ``epoch`` (a new leader's first act); returns the fence."""
        return int(await self._advance(keys=[self.fence], args=[epoch]))

    async def execute(self, command: str, key: str, *args: Any, epoch: int) -> Any:
        """Run one write command on ``key`` unless ``epoch`` is older than the fence.

        Args:
            command: One of :attr:`COMMANDS` (single-key writes).
            key: The key written.
            args: The command's further arguments.
            epoch: The writer's leadership epoch.

        Returns:
            The command's reply.

        Raises:
            FencingError: ``epoch`` is stale; nothing was written.
            ValueError: ``command`` is not an allowed write.
        """
        command = command.upper()
        if command not in self.COMMANDS:
            raise ValueError(f"{command} is not a fenced write command")
        ok, value = await self._fenced(keys=[self.fence, key], args=[epoch, command, *args])
        if not ok:
            FENCED_REFUSED.labels(name=self.name).inc()
            raise FencingError(
                f"{command} {key!r} with epoch {epoch} refused: leadership {self.name!r} "
                f"is at epoch {value}"
            )
        return value

    async def hset(self, key: str, mapping: Mapping[str, str | bytes | int | float], *,
                   epoch: int) -> None:
        """``HSET key mapping`` unless ``epoch`` is older than the fence.

        Raises:
            FencingError: ``epoch`` is stale; nothing was written.
        """
        if not mapping:
            raise ValueError("mapping must not be empty")
        args: list[Any] = []
        for k, v in mapping.items():
            args += [k, v]
        await self.execute("HSET", key, *args, epoch=epoch)
