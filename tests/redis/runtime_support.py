"""Shared helpers of the RedisRuntime tests: a client, a random key prefix, and cleanup."""

from __future__ import annotations

import os
from typing import Any

from redis.asyncio import Redis

from swarm.redis import fastpath
from swarm.redis.runtime import RedisRuntime
from swarm.retry import RetryPolicy
from tests.servers import require_redis

__all__ = ["cleanup", "fast_retry", "make_runtime", "new_prefix", "redis_client"]


def new_prefix() -> str:
    """A key prefix no other test (or helper session) uses."""
    return f"t-{os.urandom(6).hex()}"


def fast_retry(max_attempts: int = 3) -> RetryPolicy:
    """A retry policy with short backoff, so retry tests stay fast."""
    return RetryPolicy(max_attempts=max_attempts, base_delay=0.01, max_delay=0.05, jitter=0.0)


async def redis_client() -> Redis:
    """A client of the test server (skips, or fails in CI, when it is unreachable).

    On the fast path unless the suite runs with ``SWARM_REDIS_FASTPATH=0``, as
    the clients the runtime makes from its settings.
    """
    client = Redis.from_url(require_redis(), socket_timeout=10)
    if fastpath.select(fastpath.default()):
        fastpath.use_hiredis_packer(client)
    return client


async def cleanup(redis: Redis, prefix: str) -> None:
    """Delete every key under ``prefix``."""
    keys = [k async for k in redis.scan_iter(match=f"{prefix}:*", count=1000)]
    for i in range(0, len(keys), 500):
        await redis.delete(*keys[i : i + 500])


def make_runtime(redis: Redis, prefix: str, **kwargs: Any) -> RedisRuntime:
    """A runtime on ``redis`` under ``prefix`` with test-friendly timings."""
    kwargs.setdefault("retry_policy", fast_retry())
    kwargs.setdefault("visibility_timeout", 2.0)
    kwargs.setdefault("block_time", 0.5)
    return RedisRuntime(redis=redis, prefix=prefix, **kwargs)
