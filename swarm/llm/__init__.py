"""Claude in the swarm: a model layer with accounting, budgets and a swarm-wide rate limiter.

See :mod:`swarm.llm.client` for the call path, :mod:`swarm.llm.limiter`,
:mod:`swarm.llm.budget`, :mod:`swarm.llm.accounting` and :mod:`swarm.llm.hygiene`.
"""

from __future__ import annotations

from swarm.llm.accounting import Accountant, Usage
from swarm.llm.budget import Budgets, LocalBudgetStore, RedisBudgetStore
from swarm.llm.client import BatchItem, Llm, LlmScope, Reply
from swarm.llm.errors import (
    BudgetExceeded,
    LlmError,
    LlmOutputInvalid,
    LlmOverloaded,
    LlmRequestRejected,
    LlmUnavailable,
    RateLimited,
)
from swarm.llm.hygiene import Tool, ToolCall, document
from swarm.llm.limiter import LocalRateLimiter, RateLimiter, Rates, RedisRateLimiter, acquire
from swarm.llm.settings import DEFAULT_PRICES, Budget, LlmSettings, Price

__all__ = [
    "DEFAULT_PRICES",
    "Accountant",
    "BatchItem",
    "Budget",
    "BudgetExceeded",
    "Budgets",
    "Llm",
    "LlmError",
    "LlmOutputInvalid",
    "LlmOverloaded",
    "LlmRequestRejected",
    "LlmScope",
    "LlmSettings",
    "LlmUnavailable",
    "LocalBudgetStore",
    "LocalRateLimiter",
    "Price",
    "RateLimited",
    "RateLimiter",
    "Rates",
    "RedisBudgetStore",
    "RedisRateLimiter",
    "Reply",
    "Tool",
    "ToolCall",
    "Usage",
    "acquire",
    "document",
]
