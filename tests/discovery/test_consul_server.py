"""The Consul test server itself behaves as the Consul API documents (raw HTTP)."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from tests.consul_server import FakeConsul, parse_duration

pytestmark = pytest.mark.integration


@pytest.fixture
async def http(fake_consul: FakeConsul) -> AsyncIterator[tuple[aiohttp.ClientSession, str]]:
    async with aiohttp.ClientSession() as session:
        yield session, fake_consul.url


async def put(http: tuple[aiohttp.ClientSession, str], path: str, body: Any = None,
              **params: str) -> Any:
    session, url = http
    data = body if isinstance(body, bytes | None) else json.dumps(body)
    async with session.put(url + path, data=data, params=params) as r:
        text = await r.text()
        assert r.status == 200, text
        return json.loads(text) if text else None


def test_parse_duration() -> None:
    assert parse_duration("1m30s") == 90
    assert parse_duration("250ms") == 0.25
    assert parse_duration(2_000_000_000) == 2
    with pytest.raises(ValueError):
        parse_duration("10 seconds")


async def test_camelcase_and_lowercase_registration(http: Any, fake_consul: FakeConsul) -> None:
    await put(http, "/v1/agent/service/register",
              {"Name": "web", "ID": "w1", "Check": {"TTL": "10s", "Status": "passing"}})
    await put(http, "/v1/agent/service/register",
              {"name": "web", "id": "w2", "checks": [{"ttl": "10s"}]})
    session, url = http
    async with session.get(url + "/v1/health/service/web", params={"passing": "1"}) as r:
        body = await r.json()
        assert int(r.headers["X-Consul-Index"]) >= 1
    # w2's TTL check starts critical (Consul's default initial status).
    assert [e["Service"]["ID"] for e in body] == ["w1"]
    assert fake_consul.checks["service:w2"].status == "critical"


async def test_kv_cas_base64_recurse_keys(http: Any) -> None:
    session, url = http
    assert await put(http, "/v1/kv/app/a", b"\x00bin", cas="0") is True
    assert await put(http, "/v1/kv/app/a", b"other", cas="0") is False
    async with session.get(url + "/v1/kv/app/a") as r:
        [item] = await r.json()
    assert base64.b64decode(item["Value"]) == b"\x00bin"
    assert await put(http, "/v1/kv/app/a", b"x", cas=str(item["ModifyIndex"] + 1)) is False
    assert await put(http, "/v1/kv/app/a", b"v2", cas=str(item["ModifyIndex"])) is True
    await put(http, "/v1/kv/app/sub/b", b"1")
    async with session.get(url + "/v1/kv/app/", params={"recurse": "1"}) as r:
        assert [i["Key"] for i in await r.json()] == ["app/a", "app/sub/b"]
    async with session.get(url + "/v1/kv/app/", params={"keys": "1", "separator": "/"}) as r:
        assert await r.json() == ["app/a", "app/sub/"]
    async with session.get(url + "/v1/kv/missing") as r:
        assert r.status == 404 and "X-Consul-Index" in r.headers


async def test_blocking_kv_read_waits_for_change(http: Any) -> None:
    session, url = http
    await put(http, "/v1/kv/k", b"1")
    async with session.get(url + "/v1/kv/k") as r:
        index = r.headers["X-Consul-Index"]
    started = time.monotonic()
    async with session.get(url + "/v1/kv/k", params={"index": index, "wait": "300ms"}) as r:
        assert r.headers["X-Consul-Index"] == index
    assert time.monotonic() - started >= 0.3

    async def write_soon() -> None:
        await asyncio.sleep(0.1)
        await put(http, "/v1/kv/k", b"2")

    writer = asyncio.create_task(write_soon())
    async with session.get(url + "/v1/kv/k", params={"index": index, "wait": "10s"}) as r:
        [item] = await r.json()
    await writer
    assert base64.b64decode(item["Value"]) == b"2"
    assert int(r.headers["X-Consul-Index"]) > int(index)


async def test_session_ttl_invalidation_releases_lock_with_lock_delay(
    http: Any, fake_consul: FakeConsul
) -> None:
    session, url = http
    async with session.put(url + "/v1/session/create", data=json.dumps({"TTL": "0.1s"})) as r:
        assert r.status == 500 and "Invalid Session TTL" in await r.text()
    a = (await put(http, "/v1/session/create", {"TTL": "0.2s", "LockDelay": "300ms"}))["ID"]
    b = (await put(http, "/v1/session/create", {"TTL": "30s", "LockDelay": "0s"}))["ID"]
    assert await put(http, "/v1/kv/lock", b"a", acquire=a) is True
    assert await put(http, "/v1/kv/lock", b"b", acquire=b) is False
    # Invalidation happens after (up to) 2x TTL; then lock-delay blocks takeover.
    started = time.monotonic()
    while a in fake_consul.sessions:
        assert time.monotonic() - started < 3
        await asyncio.sleep(0.02)
    assert time.monotonic() - started >= 0.2
    async with session.get(url + "/v1/kv/lock") as r:
        [item] = await r.json()
    assert "Session" not in item and item["LockIndex"] == 1
    assert await put(http, "/v1/kv/lock", b"b", acquire=b) is False  # lock-delay
    while not await put(http, "/v1/kv/lock", b"b", acquire=b):
        assert time.monotonic() - started < 3
        await asyncio.sleep(0.02)
    async with session.get(url + "/v1/kv/lock") as r:
        [item] = await r.json()
    assert item["Session"] == b and item["LockIndex"] == 2
    async with session.put(url + f"/v1/session/renew/{a}") as r:
        assert r.status == 404
    assert await put(http, "/v1/kv/lock", b"", release=b) is True


async def test_session_bound_to_check_dies_with_it(http: Any, fake_consul: FakeConsul) -> None:
    await put(http, "/v1/agent/service/register",
              {"Name": "q", "ID": "q1", "Check": {"TTL": "10s", "Status": "passing"}})
    sid = (await put(http, "/v1/session/create", {"Checks": ["serfHealth", "service:q1"]}))["ID"]
    assert await put(http, "/v1/kv/lead", b"q1", acquire=sid) is True
    await put(http, "/v1/agent/check/fail/service:q1")
    assert sid not in fake_consul.sessions
    session, url = http
    async with session.get(url + "/v1/session/info/" + sid) as r:
        assert await r.json() == []


async def test_acl_denies_bad_token() -> None:
    async with FakeConsul(acl_tokens={"good"}) as server, aiohttp.ClientSession() as s:
        async with s.get(server.url + "/v1/kv/x", headers={"X-Consul-Token": "bad"}) as r:
            assert r.status == 403 and await r.text() == "Permission denied"
        async with s.get(server.url + "/v1/kv/x", headers={"X-Consul-Token": "good"}) as r:
            assert r.status == 404


async def test_health_index_moves_forward_on_deregistration(http: Any) -> None:
    session, url = http
    for sid in ("w1", "w2"):
        await put(http, "/v1/agent/service/register",
                  {"Name": "web", "ID": sid, "Check": {"TTL": "30s", "Status": "passing"}})
    async with session.get(url + "/v1/health/service/web") as r:
        index = int(r.headers["X-Consul-Index"])

    async def deregister_soon() -> None:
        await asyncio.sleep(0.05)
        await put(http, "/v1/agent/service/deregister/w2")

    task = asyncio.create_task(deregister_soon())
    started = time.monotonic()
    async with session.get(url + "/v1/health/service/web",
                           params={"index": str(index), "wait": "5s"}) as r:
        body = await r.json()
        assert int(r.headers["X-Consul-Index"]) > index
    await task
    assert time.monotonic() - started < 2
    assert [e["Service"]["ID"] for e in body] == ["w1"]
