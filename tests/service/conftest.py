"""A served swarm per runtime (in-process and Redis), reached over real HTTP."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest
import structlog

from swarm.retry import RetryPolicy
from swarm.service import SwarmService
from swarm.service.auth import hash_token
from swarm.settings import SwarmSettings
from tests.servers import require_redis
from tests.service.agents import BoomAgent, HoldAgent, make_agents

TOKENS = {"viewer": "viewer-token-0123456789", "operator": "operator-token-0123456789",
          "admin": "admin-token-0123456789"}


def redis_settings_url() -> str:
    """The test Redis with a prefix of this test's own."""
    base = require_redis()
    return f"{base}{'&' if '?' in base else '?'}prefix=svc-{os.urandom(5).hex()}"


@dataclass
class Served:
    """A running service and an HTTP session to it."""

    service: SwarmService
    url: str
    http: aiohttp.ClientSession
    runtime: str

    async def call(
        self, method: str, path: str, *, token: str | None = None, **kwargs: Any
    ) -> tuple[int, Any, Any]:
        headers = dict(kwargs.pop("headers", {}))
        if token is not None:
            headers["Authorization"] = f"Bearer {TOKENS.get(token, token)}"
        async with self.http.request(method, self.url + path, headers=headers, **kwargs) as r:
            body = await r.json(content_type=None) if r.content_length != 0 else None
            return r.status, body, r.headers


async def start_service(
    runtime: str, *, tokens: bool = False, redis_url: str | None = None, **kwargs: Any
) -> SwarmService:
    settings = SwarmSettings(
        http="127.0.0.1:0",
        redis_url=(redis_url or redis_settings_url()) if runtime == "redis" else None,
        tokens=tuple(f"{role}:{secret}" for role, secret in TOKENS.items()) if tokens else (),
        lease_ttl=2.0, drain_timeout=5.0,
    )
    agents = kwargs.pop("agents", None)
    service = SwarmService(settings, agents=make_agents() if agents is None else agents, **kwargs)
    await service.start()
    return service


@pytest.fixture(autouse=True)
def _quiet_and_reset() -> None:
    structlog.configure(
        wrapper_class=structlog.make_filtering_bound_logger(40),  # errors only
    )
    HoldAgent.gates.clear()
    HoldAgent.started.clear()
    BoomAgent.failing = True


@pytest.fixture(params=["inprocess", "redis"])
def runtime(request: pytest.FixtureRequest) -> str:
    if request.param == "redis":
        request.applymarker(pytest.mark.integration)
    return str(request.param)


ServeFactory = Callable[..., Any]


@pytest.fixture
async def serve(runtime: str) -> AsyncIterator[ServeFactory]:
    """``await serve(tokens=False, **service_kwargs)``: a Served on this test's runtime."""
    started: list[Served] = []
    async with aiohttp.ClientSession() as http:

        async def make(**kwargs: Any) -> Served:
            service = await start_service(runtime, **kwargs)
            served = Served(service=service, url=service.url, http=http, runtime=runtime)
            started.append(served)
            await service.wait_leading(timeout=10)
            return served

        try:
            yield make
        finally:
            for gate in HoldAgent.gates.values():
                gate.set()
            for served in reversed(started):
                await served.service.close()
                if served.runtime == "redis":
                    await _cleanup(served.service.settings.redis_url or "")


async def _cleanup(url: str) -> None:
    from redis.asyncio import Redis

    from swarm.redis import RedisSettings

    prefix = RedisSettings.from_dsn(url).key_prefix
    client = Redis.from_url(url.split("?")[0])
    try:
        keys = [k async for k in client.scan_iter(match=f"{prefix}:*", count=1000)]
        for i in range(0, len(keys), 500):
            await client.delete(*keys[i : i + 500])
    finally:
        await client.aclose()


def fast_retry() -> RetryPolicy:
    return RetryPolicy(max_attempts=2, base_delay=0.01, max_delay=0.02, jitter=0.0)


__all__ = ["TOKENS", "Served", "hash_token", "start_service"]
