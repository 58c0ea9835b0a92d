"""The Redis directory cache: a snapshot past its half second routes while it is refreshed."""

from __future__ import annotations

import pytest

from tests.fakes import Board, Work, Worker
from tests.redis.runtime_support import cleanup, make_runtime, new_prefix, redis_client

pytestmark = pytest.mark.integration


async def test_a_stale_snapshot_routes_while_one_read_refreshes_it() -> None:
    redis = await redis_client()
    prefix = new_prefix()
    runtime = make_runtime(redis, prefix)
    try:
        await runtime.start()
        await runtime.register(Worker(Board()))
        assert await runtime.send(Work(n=1), to="role:worker", sender="t") == 2
        directory = runtime._directory
        snap = directory.cached()
        assert snap is not None and directory._refreshing is None
        directory._at -= 0.6  # past the half second
        assert directory.cached() is snap  # still routes...
        refresh = directory._refreshing
        assert refresh is not None
        assert directory.cached() is snap and directory._refreshing is refresh  # one read
        await refresh  # ...while one read replaces it
        fresh = directory.cached()
        assert fresh is not None and fresh is not snap and "worker" in fresh
        directory._at -= 3.0  # too old to route on: the submitter reads it itself
        assert directory.cached() is None
        assert await runtime.send(Work(n=2), to="role:worker", sender="t") == 4
    finally:
        await runtime.stop(drain=False)
        await cleanup(redis, prefix)
        await redis.aclose()
