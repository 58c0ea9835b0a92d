"""Where the integration tests find their servers, and how they skip (or fail in CI).

Addresses come from the environment (read here, in test code, never in the
library): ``SWARM_TEST_REDIS_URL`` and ``SWARM_TEST_POSTGRES_DSN``. A test that
needs an unreachable server is skipped with a clear reason, except when
``CI=true``: there a missing server is a broken build, so the test fails.

Example:
    >>> redis_url().startswith("redis")
    True
"""

from __future__ import annotations

import os
import shutil
import socket
from urllib.parse import urlsplit

import pytest

__all__ = [
    "DEFAULT_POSTGRES_DSN",
    "DEFAULT_REDIS_URL",
    "in_ci",
    "postgres_dsn",
    "redis_url",
    "require_binary",
    "require_postgres",
    "require_redis",
    "require_server",
    "tcp_reachable",
]

DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
DEFAULT_POSTGRES_DSN = "postgresql://postgres@127.0.0.1:5432/test"


def redis_url() -> str:
    """The Redis server of the integration tests."""
    return os.environ.get("SWARM_TEST_REDIS_URL") or DEFAULT_REDIS_URL


def postgres_dsn() -> str:
    """The PostgreSQL server of the integration tests."""
    return os.environ.get("SWARM_TEST_POSTGRES_DSN") or DEFAULT_POSTGRES_DSN


def in_ci() -> bool:
    """Whether a missing server must fail the test rather than skip it."""
    return os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


def tcp_reachable(host: str, port: int, timeout: float = 1.0) -> bool:
    """Whether a TCP connection to ``host:port`` can be opened."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def require_server(what: str, available: bool, detail: str = "") -> None:
    """Skip the calling test when ``available`` is false (fail instead when ``CI=true``).

    Args:
        what: The server or tool, for the message (e.g. ``"Redis at redis://..."``).
        available: Whether it can be used.
        detail: How to provide it, appended to the message.
    """
    if available:
        return
    message = f"{what} is not available" + (f": {detail}" if detail else "")
    if in_ci():
        pytest.fail(f"{message} (CI=true: integration servers are required)", pytrace=False)
    pytest.skip(message)


def _host_port(url: str, default_port: int) -> tuple[str, int]:
    parts = urlsplit(url)
    netloc = parts.netloc.rsplit("@", 1)[-1].split(",")[0]
    host, _, port = netloc.rpartition(":") if ":" in netloc else (netloc, "", "")
    return (host.strip("[]") or "127.0.0.1"), int(port or default_port)


def require_redis(url: str | None = None) -> str:
    """Return the test Redis URL, skipping (or failing in CI) when it is unreachable."""
    url = url or redis_url()
    host, port = _host_port(url, 6379)
    require_server(f"Redis at {host}:{port}", tcp_reachable(host, port), "set SWARM_TEST_REDIS_URL")
    return url


def require_postgres(dsn: str | None = None) -> str:
    """Return the test PostgreSQL DSN, skipping (or failing in CI) when it is unreachable."""
    dsn = dsn or postgres_dsn()
    host, port = _host_port(dsn, 5432)
    require_server(
        f"PostgreSQL at {host}:{port}", tcp_reachable(host, port), "set SWARM_TEST_POSTGRES_DSN"
    )
    return dsn


def require_binary(name: str) -> str:
    """Return the path of an executable, skipping (or failing in CI) when it is missing."""
    path = shutil.which(name)
    require_server(f"the {name!r} executable", path is not None, "install it or put it on PATH")
    assert path is not None
    return path
