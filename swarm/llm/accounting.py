"""Token and cost accounting of model calls, per task, agent, role and swarm.

Every call's usage becomes a :class:`Usage` (input, output, cache-write and
cache-read tokens, and the dollars they cost at the settings' prices). The
:class:`Accountant` sums them per scope and feeds ``/metrics``.

Example:
    >>> from swarm.llm.settings import DEFAULT_PRICES
    >>> u = Usage.of(DEFAULT_PRICES["claude-sonnet-4-5"], input_tokens=1000, output_tokens=100,
    ...              cache_read_tokens=10000)
    >>> u.cost_usd, u.tokens
    (0.0075, 11100)
    >>> acc = Accountant(max_tasks=1)
    >>> acc.record(u, model="m", role="r", task="t1"); acc.record(u, model="m", role="r", task="t2")
    >>> sorted(acc.snapshot("task:")), acc.get("role:r").calls
    (['task:t2'], 2)
"""

from __future__ import annotations

from collections import OrderedDict, defaultdict
from typing import Any

import msgspec

from swarm import metrics
from swarm.llm.settings import Price

__all__ = ["Accountant", "Usage"]

_M = 1_000_000


class Usage(msgspec.Struct, kw_only=True, omit_defaults=True):
    """Tokens and cost of one or more model calls.

    Attributes:
        calls: Calls answered by the model.
        input_tokens: Uncached input tokens.
        output_tokens: Output tokens.
        cache_write_tokens: Input tokens written to the prompt cache.
        cache_read_tokens: Input tokens read from the prompt cache.
        cost_usd: What they cost.
        refused_tool_calls: Tool calls outside the allow-list, refused.
        fallbacks: Times a call site ran its deterministic path instead.
        budget_exceeded: Calls refused by a budget.
    """

    calls: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cache_write_tokens: int = 0
    cache_read_tokens: int = 0
    cost_usd: float = 0.0
    refused_tool_calls: int = 0
    fallbacks: int = 0
    budget_exceeded: int = 0

    @classmethod
    def of(
        cls,
        price: Price,
        *,
        input_tokens: int = 0,
        output_tokens: int = 0,
        cache_write_tokens: int = 0,
        cache_read_tokens: int = 0,
        batch: bool = False,
    ) -> Usage:
        """The usage of one answered call, priced."""
        cost = (
            input_tokens * price.input
            + output_tokens * price.output
            + cache_write_tokens * price.cache_write
            + cache_read_tokens * price.cache_read
        ) / _M
        return cls(
            calls=1, input_tokens=input_tokens, output_tokens=output_tokens,
            cache_write_tokens=cache_write_tokens, cache_read_tokens=cache_read_tokens,
            cost_usd=round(cost * (price.batch if batch else 1.0), 9),
        )

    @classmethod
    def from_api(cls, price: Price, usage: Any, *, batch: bool = False) -> Usage:
        """From an ``anthropic.types.Usage`` (cache fields may be ``None``)."""
        return cls.of(
            price,
            input_tokens=usage.input_tokens or 0,
            output_tokens=usage.output_tokens or 0,
            cache_write_tokens=getattr(usage, "cache_creation_input_tokens", None) or 0,
            cache_read_tokens=getattr(usage, "cache_read_input_tokens", None) or 0,
            batch=batch,
        )

    @property
    def tokens(self) -> int:
        """Every token billed, cached or not."""
        return (
            self.input_tokens + self.output_tokens + self.cache_write_tokens
            + self.cache_read_tokens
        )

    def __add__(self, other: Usage) -> Usage:
        return Usage(**{
            f: getattr(self, f) + getattr(other, f) for f in self.__struct_fields__
        })


class Accountant:
    """Sums usage per scope (``swarm``, ``role:<r>``, ``agent:<a>``, ``task:<t>``) in a process.

    Cross-process totals live in the budget store; this is what one process saw,
    for its metrics, job reports and the API. Task scopes are kept for the
    ``max_tasks`` most recent tasks only: a long-running swarm must not grow.
    """

    def __init__(self, *, max_tasks: int = 10_000) -> None:
        self._totals: dict[str, Usage] = defaultdict(Usage)
        self._tasks: OrderedDict[str, None] = OrderedDict()
        self.max_tasks = max_tasks

    def record(
        self, usage: Usage, *, model: str, role: str, agent: str = "", task: str = ""
    ) -> None:
        """Add one call's usage to every scope it belongs to, and to the metrics."""
        for scope in self._scopes(role, agent, task):
            self._totals[scope] = self._totals[scope] + usage
        if task:
            self._tasks[task] = None
            self._tasks.move_to_end(task)
            while len(self._tasks) > self.max_tasks:
                old, _ = self._tasks.popitem(last=False)
                self._totals.pop(f"task:{old}", None)
        if usage.calls:
            for kind in ("input", "output", "cache_write", "cache_read"):
                amount = getattr(usage, f"{kind}_tokens")
                if amount:
                    metrics.LLM_TOKENS.labels(kind=kind, model=model, role=role).inc(amount)
            metrics.LLM_COST.labels(model=model, role=role).inc(usage.cost_usd)

    def note(self, *, role: str, agent: str = "", task: str = "", **counts: int) -> None:
        """Count events (``fallbacks=1``, ``budget_exceeded=1``, ...) in every scope."""
        self.record(Usage(**counts), model="", role=role, agent=agent, task=task)

    @staticmethod
    def _scopes(role: str, agent: str, task: str) -> list[str]:
        out = ["swarm", f"role:{role}"]
        if agent:
            out.append(f"agent:{agent}")
        if task:
            out.append(f"task:{task}")
        return out

    def get(self, scope: str = "swarm") -> Usage:
        """The totals of one scope (zero when nothing was recorded)."""
        return self._totals.get(scope) or Usage()

    def snapshot(self, prefix: str = "") -> dict[str, Usage]:
        """Every scope starting with ``prefix`` and its totals."""
        return {k: v for k, v in sorted(self._totals.items()) if k.startswith(prefix)}

    def forget(self, scope: str) -> None:
        """Drop one scope (a finished task's, once reported)."""
        self._totals.pop(scope, None)
        if scope.startswith("task:"):
            self._tasks.pop(scope[5:], None)
