"""The ``runtime_factory`` fixture: one parameter per Runtime implementation.

A runtime implementation joins the conformance suite by adding an entry to
``FACTORIES``: an async context manager yielding a ``make(**options)`` callable
that returns a started runtime. Options every factory must accept:
``retry_policy``, ``visibility_timeout``, ``codec``.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from swarm import InProcessRuntime, Runtime

Make = Callable[..., Awaitable[Runtime]]


@contextlib.asynccontextmanager
async def inprocess_factory() -> AsyncIterator[Make]:
    made: list[InProcessRuntime] = []

    async def make(**options: Any) -> Runtime:
        runtime = InProcessRuntime(**options)
        await runtime.start()
        made.append(runtime)
        return runtime

    try:
        yield make
    finally:
        for runtime in made:
            await runtime.stop(drain=False)


@contextlib.asynccontextmanager
async def redis_factory() -> AsyncIterator[Make]:
    # Imported here: the in-process parameter must run without Redis installed.
    from redis.asyncio import Redis

    from swarm.redis import RedisRuntime, fastpath
    from tests.servers import require_redis

    url = require_redis()
    client = Redis.from_url(url, socket_timeout=10)
    # As the clients the runtime makes from settings: on the fast path unless
    # the suite runs with SWARM_REDIS_FASTPATH=0.
    if fastpath.select(fastpath.default()):
        fastpath.use_hiredis_packer(client)
    # One random prefix per test isolates its keys and channels on the shared server.
    prefix = f"conf-{os.urandom(6).hex()}"
    made: list[RedisRuntime] = []

    async def make(**options: Any) -> Runtime:
        options.setdefault("block_time", 0.5)
        runtime = RedisRuntime(redis=client, prefix=prefix, **options)
        await runtime.start()
        made.append(runtime)
        return runtime

    try:
        yield make
    finally:
        for runtime in made:
            await runtime.stop(drain=False)
        keys = [k async for k in client.scan_iter(match=f"{prefix}:*", count=1000)]
        if keys:
            await client.delete(*keys)
        await client.aclose()


FACTORIES: dict[str, Callable[[], contextlib.AbstractAsyncContextManager[Make]]] = {
    "inprocess": inprocess_factory,
    "redis": redis_factory,
}


@pytest.fixture(params=sorted(FACTORIES))
async def runtime_factory(request: pytest.FixtureRequest) -> AsyncIterator[Make]:
    async with FACTORIES[request.param]() as make:
        yield make
