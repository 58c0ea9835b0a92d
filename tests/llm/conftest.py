"""Fixtures of the model-layer tests: the Messages API stub and a model layer over it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
import redis.asyncio as aioredis
import structlog

from swarm.llm import Llm, LlmSettings
from tests.anthropic_stub import AnthropicStub
from tests.servers import require_redis


@pytest.fixture(autouse=True)
def _fresh_logging() -> None:
    # Another test may have configured structlog onto a stream pytest has since closed.
    structlog.reset_defaults()


@pytest.fixture
async def stub() -> AsyncIterator[AnthropicStub]:
    async with AnthropicStub(min_cache_tokens=256) as server:
        yield server


@pytest.fixture
async def make_llm(stub: AnthropicStub) -> AsyncIterator[Callable[..., Llm]]:
    made: list[Llm] = []

    def make(**changes: Any) -> Llm:
        settings = LlmSettings(api_key=stub.api_key, base_url=stub.url, max_retries=2,
                               rpm=None, itpm=None, otpm=None)
        llm = Llm(settings.replace(**changes))
        made.append(llm)
        return llm

    yield make
    for llm in made:
        await llm.close()


@pytest.fixture
async def redis_client() -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(require_redis())
    await client.flushdb()
    yield client
    await client.flushdb()
    await client.aclose()
