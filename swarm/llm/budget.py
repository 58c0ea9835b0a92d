"""Budgets per swarm, role and task, in dollars or tokens, per UTC day or per job.

A call first *reserves* its worst case (estimated input at the cache-write
price plus ``max_tokens`` of output) in every budget it falls under, in one
atomic step; if any budget would go past its limit, nothing is reserved and
the call fails with :class:`~swarm.llm.errors.BudgetExceeded` before it is
made. When the answer arrives the reservation is replaced by the real cost
(:meth:`Budgets.settle`). So spend never passes a limit, and calls stop at the
first one that could.

:class:`RedisBudgetStore` holds across processes (one Lua script per step);
:class:`LocalBudgetStore` is the embedded runtime's twin.

Example:
    >>> import asyncio
    >>> from swarm.llm.settings import Budget
    >>> b = Budgets([Budget("swarm", "usd", 0.01, "job")], LocalBudgetStore(), job="j1")
    >>> asyncio.run(b.reserve(role="r", task="t", usd=0.004, tokens=10)) is not None
    True
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from redis.asyncio import Redis
from redis.exceptions import RedisError

from swarm.constants import KEY_PREFIX, llm_budget_key
from swarm.errors import TransportError
from swarm.llm.errors import BudgetExceeded
from swarm.llm.settings import Budget

__all__ = ["BudgetStore", "Budgets", "LocalBudgetStore", "RedisBudgetStore", "Reservation"]

_DAY = 86_400
#: The job of a process that was given none: this run of it.
RUN_ID = f"run-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}-{os.getpid()}"


@dataclass(frozen=True, slots=True)
class _Line:
    key: str
    limit: float
    amount: float
    budget: Budget
    scope: str


@dataclass(frozen=True, slots=True)
class Reservation:
    """What a call reserved; handed back to :meth:`Budgets.settle`."""

    lines: tuple[_Line, ...]


class BudgetStore(Protocol):
    """Atomic check-and-add over several counters."""

    async def reserve(
        self, items: Sequence[tuple[str, float, float]], ttl: int
    ) -> tuple[int, float]:
        """Add ``amount`` to every ``(key, limit, amount)`` unless one would pass its limit.

        Returns ``(-1, 0)`` when reserved, else the index of the first item over and its spend.
        """
        ...

    async def add(self, items: Sequence[tuple[str, float]], ttl: int) -> None:
        """Add (or with a negative amount, give back) to each key."""
        ...

    async def spent(self, key: str) -> float:
        """The counter's value."""
        ...


class LocalBudgetStore:
    """In-process counters, for the embedded runtime."""

    def __init__(self) -> None:
        self._spent: dict[str, tuple[float, float]] = {}

    def _get(self, key: str) -> float:
        value, expires = self._spent.get(key, (0.0, 0.0))
        return value if expires > time.time() else 0.0

    async def reserve(
        self, items: Sequence[tuple[str, float, float]], ttl: int
    ) -> tuple[int, float]:
        for i, (key, limit, amount) in enumerate(items):
            if self._get(key) + amount > limit:
                return i, self._get(key)
        await self.add([(k, a) for k, _, a in items], ttl)
        return -1, 0.0

    async def add(self, items: Sequence[tuple[str, float]], ttl: int) -> None:
        for key, amount in items:
            self._spent[key] = (self._get(key) + amount, time.time() + ttl)

    async def spent(self, key: str) -> float:
        return self._get(key)


# KEYS: counters. ARGV: ttl, then limit and amount per key.
_RESERVE = """
for i = 1, #KEYS do
  local spent = tonumber(redis.call('GET', KEYS[i]) or '0')
  if spent + tonumber(ARGV[2 * i + 1]) > tonumber(ARGV[2 * i]) then
    return {i - 1, tostring(spent)}
  end
end
for i = 1, #KEYS do
  redis.call('INCRBYFLOAT', KEYS[i], ARGV[2 * i + 1])
  redis.call('EXPIRE', KEYS[i], ARGV[1])
end
return {-1, '0'}
"""

# KEYS: counters. ARGV: ttl, then the amount per key.
_ADD = """
for i = 1, #KEYS do
  redis.call('INCRBYFLOAT', KEYS[i], ARGV[i + 1])
  redis.call('EXPIRE', KEYS[i], ARGV[1])
end
return 1
"""


class RedisBudgetStore:
    """Counters in Redis, shared by every process of the swarm."""

    def __init__(self, redis: Redis) -> None:
        self._redis = redis
        self._reserve = redis.register_script(_RESERVE)
        self._add = redis.register_script(_ADD)

    async def _run(self, script: Any, keys: list[str], args: list[Any]) -> Any:
        try:
            return await script(keys=keys, args=args)
        except (RedisError, OSError) as exc:
            raise TransportError(f"LLM budget: Redis failed: {exc}") from exc

    async def reserve(
        self, items: Sequence[tuple[str, float, float]], ttl: int
    ) -> tuple[int, float]:
        if not items:
            return -1, 0.0
        args: list[Any] = [ttl]
        for _, limit, amount in items:
            args += [repr(limit), repr(amount)]
        index, spent = await self._run(self._reserve, [k for k, _, _ in items], args)
        return int(index), float(spent)

    async def add(self, items: Sequence[tuple[str, float]], ttl: int) -> None:
        if items:
            await self._run(self._add, [k for k, _ in items], [ttl, *(repr(a) for _, a in items)])

    async def spent(self, key: str) -> float:
        try:
            value = await self._redis.get(key)
        except (RedisError, OSError) as exc:
            raise TransportError(f"LLM budget: Redis failed: {exc}") from exc
        return float(value or 0.0)


class Budgets:
    """The budgets of a swarm over one store.

    Args:
        budgets: The limits (from settings).
        store: Where spend is counted.
        job: Id of the current job (``per="job"`` budgets); default: this process run.
        prefix: Redis key prefix.
    """

    def __init__(
        self, budgets: Sequence[Budget], store: BudgetStore, *, job: str | None = None,
        prefix: str = KEY_PREFIX,
    ) -> None:
        self.budgets = tuple(budgets)
        self.store = store
        self.job = job or RUN_ID
        self.prefix = prefix

    def _lines(self, role: str, task: str, usd: float, tokens: float) -> list[_Line]:
        lines = []
        day = time.strftime("%Y-%m-%d", time.gmtime())
        for b in self.budgets:
            if b.scope == "swarm":
                scope = "swarm"
            elif b.scope == "role":
                scope = f"role:{role}"
            elif b.scope.startswith("role:"):
                if b.scope != f"role:{role}":
                    continue
                scope = b.scope
            else:  # task
                if not task:
                    continue
                scope = f"task:{task}"
            period = f"day-{day}" if b.per == "day" else f"job-{self.job}"
            amount = usd if b.unit == "usd" else tokens
            key = llm_budget_key(scope, period, b.unit, self.prefix)
            lines.append(_Line(key, b.limit, amount, b, scope))
        return lines

    async def reserve(self, *, role: str, task: str, usd: float, tokens: float) -> Reservation:
        """Reserve a call's worst case in every budget it falls under.

        Raises:
            BudgetExceeded: One budget would pass its limit; nothing was reserved.
        """
        lines = self._lines(role, task, usd, tokens)
        index, spent = await self.store.reserve(
            [(line.key, line.limit, line.amount) for line in lines], 2 * _DAY
        )
        if index >= 0:
            line = lines[index]
            raise BudgetExceeded(line.scope, line.budget.unit, line.limit, spent, line.amount)
        return Reservation(tuple(lines))

    async def settle(self, reservation: Reservation, *, usd: float, tokens: float) -> None:
        """Replace a reservation with what the call really cost (0 when it failed)."""
        items = [
            (line.key, (usd if line.budget.unit == "usd" else tokens) - line.amount)
            for line in reservation.lines
        ]
        await self.store.add([(k, a) for k, a in items if a], 2 * _DAY)

    async def spent(self, scope: str = "swarm", unit: str = "usd", per: str = "job") -> float:
        """What ``scope`` spent in the current day or job."""
        day = time.strftime("%Y-%m-%d", time.gmtime())
        period = f"day-{day}" if per == "day" else f"job-{self.job}"
        return await self.store.spent(llm_budget_key(scope, period, unit, self.prefix))
