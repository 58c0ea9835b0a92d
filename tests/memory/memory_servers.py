"""Where the memory tests find their servers, and what to do when one is down.

Addresses come from ``SWARM_TEST_REDIS_URL`` / ``SWARM_TEST_POSTGRES_DSN``.
"""

from __future__ import annotations

import os

import pytest

REDIS_URL = os.environ.get("SWARM_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
POSTGRES_DSN = os.environ.get("SWARM_TEST_POSTGRES_DSN", "postgresql://postgres@127.0.0.1:5432/test")


def unavailable(what: str, exc: BaseException) -> None:
    """Skip, or fail when CI=true: an integration test must not silently not run on CI."""
    reason = f"{what} unreachable: {exc!r}"
    if os.environ.get("CI") == "true":
        pytest.fail(reason)
    pytest.skip(reason)
