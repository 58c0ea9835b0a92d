"""Circuit-breaker state of the API-reliability role: in process, or shared through Redis.

A breaker per key (a source id, or ``host:NAME`` for a live source's host)
counts fetch outcomes: after ``failure_threshold`` consecutive failures it
opens and refuses fetches for ``cooldown`` seconds, then lets one trial
through (half-open); the trial's success closes it, its failure opens it
again.

:class:`LocalBreakers` keeps that state in the agent; :class:`RedisBreakers`
keeps it in Redis hashes changed by Lua scripts (atomic, so concurrent
replicas never lose an update), so every replica of the role, in any process,
sees one state per host. Redis client errors become
:class:`~swarm.errors.TransportError` here.

Example:
    >>> import asyncio
    >>> from agents.breakers import LocalBreakers
    >>> b = LocalBreakers(failure_threshold=2, cooldown=60.0)
    >>> async def demo():
    ...     await b.record("h", ok=False, now=0.0, error="503")
    ...     await b.record("h", ok=False, now=1.0, error="503")
    ...     return (await b.allow("h", now=2.0)), (await b.allow("h", now=62.0))
    >>> asyncio.run(demo())
    ((<CircuitState.OPEN: 'open'>, False), (<CircuitState.HALF_OPEN: 'half_open'>, True))
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from agents.messages import CircuitState
from swarm import constants
from swarm.errors import TransportError

__all__ = ["Breaker", "BreakerStore", "LocalBreakers", "RedisBreakers"]

#: The role whose breakers these are (the hash tag of their Redis keys).
_ROLE = "api_reliability"


@dataclass(slots=True, kw_only=True)
class Breaker:
    """Circuit breaker and counters of one key."""

    failure_threshold: int
    cooldown: float
    state: CircuitState = CircuitState.CLOSED
    successes: int = 0
    failures: int = 0
    consecutive_failures: int = 0
    opened_at: float = 0.0
    last_error: str = ""

    def allow(self, *, now: float) -> bool:
        """Whether a fetch may go ahead now (moves open to half-open after the cooldown)."""
        if self.state is CircuitState.OPEN and now - self.opened_at >= self.cooldown:
            self.state = CircuitState.HALF_OPEN
        return self.state is not CircuitState.OPEN

    def record(self, ok: bool, *, now: float, error: str = "") -> None:
        """Count one fetch outcome and move the circuit accordingly."""
        if ok:
            self.successes += 1
            self.consecutive_failures = 0
            self.state = CircuitState.CLOSED
            return
        self.failures += 1
        self.consecutive_failures += 1
        self.last_error = error
        if (
            self.state is CircuitState.HALF_OPEN
            or self.consecutive_failures >= self.failure_threshold
        ):
            self.state = CircuitState.OPEN
            self.opened_at = now


class BreakerStore(Protocol):
    """Where breaker state lives."""

    async def allow(self, key: str, *, now: float) -> tuple[CircuitState, bool]:
        """State after the cooldown check, and whether a fetch may go ahead."""
        ...

    async def record(self, key: str, *, ok: bool, now: float, error: str = "") -> CircuitState:
        """Count one outcome; the state after it."""
        ...

    async def snapshot(self) -> dict[str, Breaker]:
        """Every breaker, by key."""
        ...


class LocalBreakers:
    """Breaker state in this process (one replica of the role)."""

    def __init__(self, *, failure_threshold: int = 3, cooldown: float = 30.0) -> None:
        if failure_threshold < 1:
            raise ValueError("failure_threshold must be at least 1")
        self.failure_threshold = failure_threshold
        self.cooldown = cooldown
        self.records: dict[str, Breaker] = {}

    def _get(self, key: str) -> Breaker:
        b = self.records.get(key)
        if b is None:
            b = self.records[key] = Breaker(
                failure_threshold=self.failure_threshold, cooldown=self.cooldown
            )
        return b

    async def allow(self, key: str, *, now: float) -> tuple[CircuitState, bool]:
        b = self._get(key)
        allowed = b.allow(now=now)
        return b.state, allowed

    async def record(self, key: str, *, ok: bool, now: float, error: str = "") -> CircuitState:
        b = self._get(key)
        b.record(ok, now=now, error=error)
        return b.state

    async def snapshot(self) -> dict[str, Breaker]:
        return dict(self.records)


# KEYS[1] breaker hash, KEYS[2] set of keys; ARGV: now, cooldown
_ALLOW = """
local state = redis.call('HGET', KEYS[1], 'state') or 'closed'
if state == 'open' then
  local opened = tonumber(redis.call('HGET', KEYS[1], 'opened_at') or '0')
  if tonumber(ARGV[1]) - opened >= tonumber(ARGV[2]) then
    state = 'half_open'
    redis.call('HSET', KEYS[1], 'state', state)
  end
end
redis.call('SADD', KEYS[2], KEYS[1])
return state
"""

# KEYS[1] breaker hash, KEYS[2] set of keys; ARGV: ok (1/0), now, threshold, error
_RECORD = """
redis.call('SADD', KEYS[2], KEYS[1])
local state = redis.call('HGET', KEYS[1], 'state') or 'closed'
if ARGV[1] == '1' then
  redis.call('HINCRBY', KEYS[1], 'successes', 1)
  redis.call('HSET', KEYS[1], 'consecutive_failures', 0, 'state', 'closed')
  return 'closed'
end
redis.call('HINCRBY', KEYS[1], 'failures', 1)
local run = redis.call('HINCRBY', KEYS[1], 'consecutive_failures', 1)
redis.call('HSET', KEYS[1], 'last_error', ARGV[4])
if state == 'half_open' or run >= tonumber(ARGV[3]) then
  redis.call('HSET', KEYS[1], 'state', 'open', 'opened_at', ARGV[2])
  return 'open'
end
return state
"""


class RedisBreakers:
    """Breaker state in Redis, shared by every replica of the role.

    Args:
        redis: A redis.asyncio client (``decode_responses`` either way).
        prefix: Key prefix of the swarm (:data:`swarm.constants.KEY_PREFIX`).
        failure_threshold: Consecutive failures that open a circuit.
        cooldown: Seconds an open circuit refuses fetches (use wall-clock ``now``:
            replicas in other processes compare it).
    """

    def __init__(
        self, redis: Any, *, prefix: str = constants.KEY_PREFIX, failure_threshold: int = 3,
        cooldown: float = 30.0,
    ) -> None:
        if failure_threshold < 1:
            raise ValueError("failure_threshold must be at least 1")
        self.redis = redis
        self.prefix = prefix
        self.failure_threshold = failure_threshold
        self.cooldown = cooldown
        self._index = constants.breakers_key(_ROLE, prefix)

    async def _eval(self, script: str, key: str, *args: Any) -> str:
        from redis.exceptions import RedisError

        try:
            got = await self.redis.eval(
                script, 2, constants.breaker_key(_ROLE, key, self.prefix), self._index, *args
            )
        except RedisError as exc:
            raise TransportError(f"circuit-breaker store unavailable: {exc}") from exc
        return got.decode() if isinstance(got, bytes) else str(got)

    async def allow(self, key: str, *, now: float) -> tuple[CircuitState, bool]:
        state = CircuitState(await self._eval(_ALLOW, key, now, self.cooldown))
        return state, state is not CircuitState.OPEN

    async def record(self, key: str, *, ok: bool, now: float, error: str = "") -> CircuitState:
        got = await self._eval(
            _RECORD, key, "1" if ok else "0", now, self.failure_threshold, error[:500]
        )
        return CircuitState(got)

    async def snapshot(self) -> dict[str, Breaker]:
        from redis.exceptions import RedisError

        head = constants.breaker_key(_ROLE, "", self.prefix)
        try:
            keys = sorted(await self.redis.smembers(self._index))
            out: dict[str, Breaker] = {}
            for raw_key in keys:
                k = raw_key.decode() if isinstance(raw_key, bytes) else raw_key
                h = {
                    (f.decode() if isinstance(f, bytes) else f):
                    (v.decode() if isinstance(v, bytes) else v)
                    for f, v in (await self.redis.hgetall(k)).items()
                }
                out[k[len(head):]] = Breaker(
                    failure_threshold=self.failure_threshold, cooldown=self.cooldown,
                    state=CircuitState(h.get("state", "closed")),
                    successes=int(h.get("successes", 0)), failures=int(h.get("failures", 0)),
                    consecutive_failures=int(h.get("consecutive_failures", 0)),
                    opened_at=float(h.get("opened_at", 0.0)), last_error=h.get("last_error", ""),
                )
        except RedisError as exc:
            raise TransportError(f"circuit-breaker store unavailable: {exc}") from exc
        return out
