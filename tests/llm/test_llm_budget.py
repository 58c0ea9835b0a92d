"""Budgets hold across processes (Redis), per scope and unit; metrics carry the accounting."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest
import redis.asyncio as aioredis
from prometheus_client import REGISTRY

from swarm.llm import (
    Budget,
    BudgetExceeded,
    Budgets,
    Llm,
    LocalBudgetStore,
    RedisBudgetStore,
)
from tests.anthropic_stub import AnthropicStub
from tests.servers import require_redis


@pytest.mark.integration
async def test_two_processes_never_pass_a_shared_budget(redis_client: aioredis.Redis) -> None:
    # Two "processes": separate clients and Budgets objects over one Redis.
    other = aioredis.Redis.from_url(require_redis())
    spec = [Budget("swarm", "usd", 1.0, "job"), Budget("role", "tokens", 5000, "day")]
    a = Budgets(spec, RedisBudgetStore(redis_client), job="j")
    b = Budgets(spec, RedisBudgetStore(other), job="j")
    results = await asyncio.gather(
        *(x.reserve(role="r", task="t", usd=0.07, tokens=10) for x in [a, b] * 10),
        return_exceptions=True)
    made = [r for r in results if not isinstance(r, BaseException)]
    refused = [r for r in results if isinstance(r, BudgetExceeded)]
    assert len(made) == 14 and len(refused) == 6  # 14 * 0.07 = 0.98 <= 1.0 < 15 * 0.07
    assert refused[0].scope == "swarm" and refused[0].unit == "usd"
    assert await a.spent("swarm", "usd", "job") == pytest.approx(0.98)
    # Settling gives back the unused part of each worst case, for everyone.
    for reservation in made:
        await a.settle(reservation, usd=0.01, tokens=5)
    assert await b.spent("swarm", "usd", "job") == pytest.approx(0.14)
    await b.reserve(role="r", task="t", usd=0.8, tokens=10)
    # The token budget is per role: another role has its own.
    with pytest.raises(BudgetExceeded) as caught:
        await a.reserve(role="r", task="t", usd=0.0, tokens=5000)
    assert caught.value.scope == "role:r" and caught.value.unit == "tokens"
    await a.reserve(role="other", task="t", usd=0.0, tokens=4000)
    await other.aclose()


async def test_local_store_task_budgets_are_per_task() -> None:
    budgets = Budgets([Budget("task", "tokens", 100, "job")], LocalBudgetStore())
    await budgets.reserve(role="r", task="t1", usd=0, tokens=100)
    with pytest.raises(BudgetExceeded, match="task:t1"):
        await budgets.reserve(role="r", task="t1", usd=0, tokens=1)
    await budgets.reserve(role="r", task="t2", usd=0, tokens=100)


async def test_usage_reaches_the_metrics(
    stub: AnthropicStub, make_llm: Callable[..., Llm]
) -> None:
    def value(name: str, **labels: str) -> float:
        return REGISTRY.get_sample_value(name, labels) or 0.0

    role = "metrics_probe"
    before = value("swarm_llm_cost_usd_total", model="claude-sonnet-4-5", role=role)
    scope = make_llm().scope(role=role)
    reply = await scope.create([{"role": "user", "content": "hello there"}], system="Be brief.")
    kinds = {k: value("swarm_llm_tokens_total", kind=k, model="claude-sonnet-4-5", role=role)
             for k in ("input", "output")}
    assert kinds == {"input": reply.usage.input_tokens, "output": reply.usage.output_tokens}
    assert value("swarm_llm_cost_usd_total", model="claude-sonnet-4-5", role=role) - before == \
        pytest.approx(reply.usage.cost_usd)
    assert value("swarm_llm_calls_total", model="claude-sonnet-4-5", role=role,
                 outcome="ok") == 1
