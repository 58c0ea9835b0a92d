"""Both CLIs and the service reach Redis through a ``unix://`` socket URL."""

from __future__ import annotations

import tempfile
from pathlib import Path

import aiohttp
import pytest

from swarm.errors import ConfigError
from swarm.redis import RedisSettings
from swarm.settings import SwarmSettings
from tests.redis_server import RedisServer
from tests.service.conftest import Served, start_service

pytestmark = pytest.mark.integration


def test_unix_urls_parse_round_trip_and_reject_what_does_not_apply() -> None:
    s = RedisSettings.from_dsn("unix://bee:pw@/run/redis/redis.sock?db=2&prefix=p1")
    assert (s.unix_socket_path, s.db, s.key_prefix, s.password) == (
        "/run/redis/redis.sock", 2, "p1", "pw")
    assert RedisSettings.from_dsn(s.to_dsn()) == s
    assert "pw" not in s.redacted_dsn()
    assert SwarmSettings(redis_url="unix:///run/redis/redis.sock").redis_url
    for bad in ("unix://relative.sock", "unix:///s.sock?cluster=true"):
        with pytest.raises(ConfigError):
            RedisSettings.from_dsn(bad)


async def test_service_over_a_unix_socket() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        sock = str(Path(tmp) / "redis.sock")
        with RedisServer.launch(extra_args=("--unixsocket", sock, "--unixsocketperm", "700")):
            service = await start_service("redis", redis_url=f"unix://{sock}?db=0&prefix=ux")
            try:
                await service.wait_leading(timeout=10)
                async with aiohttp.ClientSession() as http:
                    served = Served(service=service, url=service.url, http=http, runtime="redis")
                    status, body, _ = await served.call(
                        "POST", "/v1/tasks", headers={"Prefer": "wait=10"},
                        json={"type": "Echo", "payload": {"text": "via socket"}},
                    )
                assert status == 200 and body["task"]["result"]["text"] == "via socket"
            finally:
                await service.close()
