"""The swarm-wide rate limiter: requests, input tokens and output tokens per model.

A GCRA (generic cell rate algorithm) per model and kind: each kind keeps a
theoretical arrival time ``tat``; a call of cost ``c`` is let through when
``tat - now <= tolerance`` for every kind at once, and then moves each
``tat`` by ``c * period / limit``. A call larger than the tolerance is let
through when the model is idle and leaves a debt the next calls wait out, so
no call is starved. Input tokens are estimated before the call and corrected
with the usage the API reports (:meth:`RateLimiter.settle`).

When the API says wait (``429`` with ``retry-after``, or an
``anthropic-ratelimit-*-remaining`` of 0), :meth:`RateLimiter.pause` makes the
whole swarm wait for that model, not one caller.

:class:`RedisRateLimiter` keeps the state in Redis (one Lua script per
operation, Redis's clock) and is shared by every process;
:class:`LocalRateLimiter` is the embedded runtime's in-process twin. Both run
the same arithmetic (:class:`Rates`).

Example:
    >>> import asyncio
    >>> lim = LocalRateLimiter(Rates(rpm=2, itpm=None, otpm=None, period=60.0, tolerance=0.0))
    >>> asyncio.run(lim.try_acquire("m", 10, 10)), asyncio.run(lim.try_acquire("m", 10, 10)) > 29
    (0.0, True)
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any, Protocol

from redis.asyncio import Redis
from redis.exceptions import RedisError

from swarm.constants import KEY_PREFIX, llm_limit_key
from swarm.errors import TransportError
from swarm.llm.settings import LlmSettings

__all__ = ["LocalRateLimiter", "RateLimiter", "Rates", "RedisRateLimiter", "acquire"]

_KINDS = ("requests", "input", "output")


@dataclass(frozen=True, slots=True)
class Rates:
    """Limits per period of one model (the same for every model of a swarm)."""

    rpm: int | None
    itpm: int | None
    otpm: int | None
    period: float = 60.0
    tolerance: float = 0.02

    @classmethod
    def of(cls, s: LlmSettings) -> Rates:
        return cls(s.rpm, s.itpm, s.otpm, s.period, s.tolerance)

    def intervals(self) -> tuple[float, float, float]:
        """Seconds each unit of requests, input tokens and output tokens occupies (0: no limit)."""
        return tuple(  # type: ignore[return-value]
            (self.period / limit) if limit else 0.0 for limit in (self.rpm, self.itpm, self.otpm)
        )

    @property
    def tau(self) -> float:
        return self.tolerance * self.period


class RateLimiter(Protocol):
    """What the model layer needs of a limiter."""

    async def try_acquire(self, model: str, input_tokens: int, output_tokens: int) -> float:
        """Take the capacity of one call, or return the seconds to wait before trying again."""
        ...

    async def settle(self, model: str, input_delta: int, output_delta: int) -> None:
        """Correct an estimate: give back (negative) or take more (positive) tokens."""
        ...

    async def pause(self, model: str, seconds: float) -> None:
        """Make every caller of ``model`` wait ``seconds`` from now."""
        ...


async def acquire(limiter: RateLimiter, model: str, input_tokens: int, output_tokens: int) -> None:
    """Wait until ``limiter`` lets one call of this size through."""
    while True:
        wait = await limiter.try_acquire(model, input_tokens, output_tokens)
        if wait <= 0:
            return
        # GCRA says exactly when capacity frees; the retry re-checks atomically, so
        # several waiters waking together cannot overshoot.
        await asyncio.sleep(wait)


class LocalRateLimiter:
    """In-process GCRA, for the embedded runtime."""

    def __init__(self, rates: Rates) -> None:
        self.rates = rates
        self._tat: dict[tuple[str, str], float] = {}
        self._pause: dict[str, float] = {}

    async def try_acquire(self, model: str, input_tokens: int, output_tokens: int) -> float:
        now = time.monotonic()
        until = self._pause.get(model, 0.0)
        if until > now:
            return until - now
        costs = (1, input_tokens, output_tokens)
        wait = 0.0
        moves: list[tuple[tuple[str, str], float]] = []
        for kind, interval, cost in zip(_KINDS, self.rates.intervals(), costs, strict=True):
            if not interval or cost <= 0:
                continue
            tat = max(self._tat.get((model, kind), now), now)
            wait = max(wait, tat - now - self.rates.tau)
            moves.append(((model, kind), tat + cost * interval))
        if wait > 0:
            return wait
        for key, tat in moves:
            self._tat[key] = tat
        return 0.0

    async def settle(self, model: str, input_delta: int, output_delta: int) -> None:
        now = time.monotonic()
        _, i_in, i_out = self.rates.intervals()
        moves = (("input", i_in, input_delta), ("output", i_out, output_delta))
        for kind, interval, delta in moves:
            if interval and delta:
                key = (model, kind)
                self._tat[key] = max(self._tat.get(key, now) + delta * interval, now)

    async def pause(self, model: str, seconds: float) -> None:
        self._pause[model] = max(self._pause.get(model, 0.0), time.monotonic() + seconds)


# KEYS: pause, requests, input, output. ARGV: three intervals, tau, input cost,
# output cost, key TTL (ms). Returns "0" (taken) or the seconds to wait, as text
# (a Lua number would be truncated to an integer reply).
_ACQUIRE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local pause = tonumber(redis.call('GET', KEYS[1]) or '0')
if pause > now then return tostring(pause - now) end
local tau = tonumber(ARGV[4])
local costs = {1, tonumber(ARGV[5]), tonumber(ARGV[6])}
local wait = 0
local moves = {}
for i = 1, 3 do
  local interval = tonumber(ARGV[i])
  if interval > 0 and costs[i] > 0 then
    local tat = tonumber(redis.call('GET', KEYS[i + 1]) or '0')
    if tat < now then tat = now end
    if tat - now - tau > wait then wait = tat - now - tau end
    moves[i + 1] = tat + costs[i] * interval
  end
end
if wait > 0 then return tostring(wait) end
for k, v in pairs(moves) do redis.call('SET', KEYS[k], tostring(v), 'PX', ARGV[7]) end
return '0'
"""

# KEYS: input, output. ARGV: two intervals, two deltas, TTL (ms).
_SETTLE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
for i = 1, 2 do
  local interval = tonumber(ARGV[i])
  local delta = tonumber(ARGV[i + 2])
  if interval > 0 and delta ~= 0 then
    local tat = tonumber(redis.call('GET', KEYS[i]) or '0')
    if tat < now then tat = now end
    tat = tat + delta * interval
    if tat < now then tat = now end
    redis.call('SET', KEYS[i], tostring(tat), 'PX', ARGV[5])
  end
end
return 1
"""

# KEYS: pause. ARGV: seconds. The pause only ever grows.
_PAUSE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local until_ = now + tonumber(ARGV[1])
local current = tonumber(redis.call('GET', KEYS[1]) or '0')
if until_ > current then
  redis.call('SET', KEYS[1], tostring(until_), 'PX', math.ceil(tonumber(ARGV[1]) * 1000) + 1000)
end
return 1
"""


class RedisRateLimiter:
    """GCRA in Redis, shared by every process of the swarm.

    Args:
        redis: A ``redis.asyncio`` client.
        rates: The limits.
        prefix: Key prefix (:data:`swarm.constants.KEY_PREFIX`).
    """

    def __init__(self, redis: Redis, rates: Rates, *, prefix: str = KEY_PREFIX) -> None:
        self.rates = rates
        self.prefix = prefix
        self._acquire = redis.register_script(_ACQUIRE)
        self._settle = redis.register_script(_SETTLE)
        self._pause = redis.register_script(_PAUSE)
        # State outlives its use by one period plus the longest debt it may carry.
        self._ttl_ms = int(self.rates.period * 3 * 1000)

    def _keys(self, model: str, *kinds: str) -> list[str]:
        return [llm_limit_key(model, k, self.prefix) for k in kinds]

    async def _run(self, script: Any, keys: list[str], args: list[Any]) -> Any:
        try:
            return await script(keys=keys, args=args)
        except (RedisError, OSError) as exc:
            raise TransportError(f"rate limiter: Redis failed: {exc}") from exc

    async def try_acquire(self, model: str, input_tokens: int, output_tokens: int) -> float:
        r, i, o = self.rates.intervals()
        reply = await self._run(
            self._acquire, self._keys(model, "pause", *_KINDS),
            [repr(r), repr(i), repr(o), repr(self.rates.tau), input_tokens, output_tokens,
             self._ttl_ms],
        )
        return float(reply)

    async def settle(self, model: str, input_delta: int, output_delta: int) -> None:
        if not (input_delta or output_delta):
            return
        _, i, o = self.rates.intervals()
        await self._run(
            self._settle, self._keys(model, "input", "output"),
            [repr(i), repr(o), input_delta, output_delta, self._ttl_ms],
        )

    async def pause(self, model: str, seconds: float) -> None:
        if seconds > 0:
            await self._run(self._pause, self._keys(model, "pause"), [repr(seconds)])
