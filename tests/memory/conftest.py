"""Fixtures of the memory tests: real servers, isolated per test.

Skipped when a server is down, failed instead when ``CI=true``.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import AsyncIterator

import asyncpg  # type: ignore[import-untyped]
import pytest
import redis.asyncio as aioredis

REDIS_URL = os.environ.get("SWARM_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
POSTGRES_DSN = os.environ.get("SWARM_TEST_POSTGRES_DSN", "postgresql://postgres@127.0.0.1:5432/test")


def unavailable(what: str, exc: BaseException) -> None:
    """Skip, or fail when CI=true: an integration test must not silently not run on CI."""
    reason = f"{what} unreachable: {exc!r}"
    if os.environ.get("CI") == "true":
        pytest.fail(reason)
    pytest.skip(reason)


@pytest.fixture
async def pg_pool() -> AsyncIterator[asyncpg.Pool]:
    try:
        pool = await asyncpg.create_pool(POSTGRES_DSN, min_size=1, max_size=6, timeout=3)
    except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
        unavailable("PostgreSQL", exc)
    try:
        yield pool
    finally:
        await pool.close()


@pytest.fixture
async def pg_schema(pg_pool: asyncpg.Pool) -> AsyncIterator[str]:
    """A unique schema name, dropped after the test."""
    schema = f"memtest_{secrets.token_hex(6)}"
    try:
        yield schema
    finally:
        await pg_pool.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


@pytest.fixture
async def redis_client() -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(REDIS_URL)
    try:
        await client.ping()
    except (OSError, aioredis.RedisError) as exc:
        await client.aclose()
        unavailable("Redis", exc)
    try:
        yield client
    finally:
        await client.aclose()


@pytest.fixture
async def redis_prefix(redis_client: aioredis.Redis) -> AsyncIterator[str]:
    """A unique key prefix; its keys are deleted after the test."""
    prefix = f"memtest-{secrets.token_hex(6)}"
    try:
        yield prefix
    finally:
        keys = [k async for k in redis_client.scan_iter(match=f"{prefix}:*", count=500)]
        if keys:
            await redis_client.delete(*keys)
