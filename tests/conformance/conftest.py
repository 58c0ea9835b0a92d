"""The ``runtime_factory`` fixture: one parameter per Runtime implementation.

A runtime implementation joins the conformance suite by adding an entry to
``FACTORIES``: an async context manager yielding a ``make(**options)`` callable
that returns a started runtime. Options every factory must accept:
``retry_policy``, ``visibility_timeout``, ``codec``.
"""

from __future__ import annotations

import contextlib
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


FACTORIES: dict[str, Callable[[], contextlib.AbstractAsyncContextManager[Make]]] = {
    "inprocess": inprocess_factory,
}


@pytest.fixture(params=sorted(FACTORIES))
async def runtime_factory(request: pytest.FixtureRequest) -> AsyncIterator[Make]:
    async with FACTORIES[request.param]() as make:
        yield make
