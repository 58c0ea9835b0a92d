"""Fixtures of the memory tests: real servers, isolated per test.

Skipped when a server is down, failed instead when ``CI=true``.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator

import asyncpg  # type: ignore[import-untyped]
import pytest
import redis.asyncio as aioredis

from tests.memory.memory_servers import POSTGRES_DSN, REDIS_URL, unavailable


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
