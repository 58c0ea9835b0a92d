"""Suite-wide test configuration.

Under ``CI=true`` a skipped integration test is turned into a failure: a test of
Redis or PostgreSQL code that did not talk to the server proved nothing.

``SWARM_REDIS_FASTPATH=0`` runs the suite on redis-py's public API (the
default of every Redis settings object built without an explicit ``fastpath``),
as a CLI would; CI runs the Redis and conformance suites that way too.
"""

from __future__ import annotations

import os
from collections.abc import Generator
from typing import Any

import pytest

from swarm.redis import fastpath

fastpath.configure_from(os.environ)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[Any]
) -> Generator[Any, Any, None]:
    outcome = yield
    report = outcome.get_result()
    if (
        report.skipped
        and os.environ.get("CI", "").lower() == "true"
        and item.get_closest_marker("integration") is not None
    ):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else report.longrepr
        report.outcome = "failed"
        report.longrepr = f"integration test skipped under CI=true: {reason}"


def pytest_report_header() -> str:
    state = "on" if fastpath.select(fastpath.default()) else "off (redis-py's public API)"
    return f"redis-py fast path: {state}"
