"""tests/servers.py: a missing server skips locally and fails in CI."""

from __future__ import annotations

import pytest

from tests import servers
from tests.redis_server import free_port


def test_missing_server_skips_outside_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match=r"Redis at .* is not available"):
        servers.require_redis(f"redis://127.0.0.1:{free_port()}/0")


def test_missing_server_fails_in_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI=true"):
        servers.require_postgres(f"postgresql://postgres@127.0.0.1:{free_port()}/test")


def test_addresses_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SWARM_TEST_REDIS_URL", "redis://10.1.2.3:7000/5")
    monkeypatch.delenv("SWARM_TEST_POSTGRES_DSN", raising=False)
    assert servers.redis_url() == "redis://10.1.2.3:7000/5"
    assert servers.postgres_dsn() == servers.DEFAULT_POSTGRES_DSN


def test_available_server_passes() -> None:
    servers.require_server("something", True)
