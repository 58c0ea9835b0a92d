"""Acceptance: four agent processes share one rate limit through Redis.

The issue's limits (60 requests and 20 000 input tokens per minute, over two
minutes) with the minute scaled down to 6 s, so the test takes ~15 s;
``bench/bench_llm_ratelimit.py`` runs the full two minutes.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from swarm.llm import LocalRateLimiter, Rates, RedisRateLimiter
from tests.llm.ratelimit_run import run
from tests.servers import require_redis

pytestmark = pytest.mark.integration


def _redis_url() -> str:
    return require_redis()


@pytest.mark.timeout(240)
async def test_four_processes_share_the_limit_and_429s_pause_the_swarm() -> None:
    out = await run(redis_url=_redis_url(), processes=4, period=6.0, rpm=60, itpm=20_000,
                    duration=12.0, fail_every=25, retry_after=1.0)
    print(out.line())
    assert all(w == {"ok": w["ok"]} for w in out.workers), out.workers
    assert out.requests_over <= 0.05 and out.tokens_over <= 0.05, out.line()
    # Demand exceeds the limit, so the busiest window sits at it (the limiter did pace).
    assert out.max_requests >= 0.7 * out.rpm or out.max_input_tokens >= 0.7 * out.itpm
    assert out.injected >= 2 and out.too_many == out.retried_once_after_wait, out.bad_retries
    assert out.during_pause == 0, out.line()


async def test_gcra_spacing_debt_and_pause_local_and_redis(redis_client: object) -> None:
    rates = Rates(rpm=10, itpm=1000, otpm=None, period=1.0, tolerance=0.0)
    for limiter in (LocalRateLimiter(rates), RedisRateLimiter(redis_client, rates)):  # type: ignore[arg-type]
        assert await limiter.try_acquire("m", 10, 0) == 0.0
        wait = await limiter.try_acquire("m", 10, 0)
        assert 0.09 <= wait <= 0.1  # one request per 100 ms
        await asyncio.sleep(wait)
        # A call larger than the tolerance goes through when idle and leaves a debt.
        assert await limiter.try_acquire("m", 900, 0) == 0.0
        assert 0.85 <= await limiter.try_acquire("m", 10, 0) <= 0.91
        await limiter.settle("m", -800, 0)  # the estimate was 800 tokens too high
        assert await limiter.try_acquire("m", 10, 0) <= 0.11
        await limiter.pause("other", 0.3)
        started = time.monotonic()
        assert 0.25 <= await limiter.try_acquire("other", 1, 0) <= 0.3
        assert time.monotonic() - started < 0.1
