"""Helpers shared by the discovery tests."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable


async def eventually(
    check: Callable[[], Awaitable[bool]], *, within: float, what: str = "condition"
) -> float:
    """Poll a condition until it holds; return the seconds it took.

    Used only where no event exists to wait on (a TTL running out on a server).

    Raises:
        AssertionError: It did not hold within ``within`` seconds.
    """
    started = time.monotonic()
    while not await check():
        if time.monotonic() - started > within:
            raise AssertionError(f"{what} not met within {within}s")
        await asyncio.sleep(0.02)
    return time.monotonic() - started
