"""GET /v1/tasks over real HTTP: live tasks from the ledger, finished ones from the task history."""

from __future__ import annotations

import asyncio
import json
import os
import time
from typing import Any

import aiohttp
import pytest

from swarm.client import SwarmClient
from swarm.client.errors import ApiRequestError
from swarm.service import SwarmService
from swarm.settings import SwarmSettings
from tests.discovery.util import eventually
from tests.servers import require_postgres
from tests.service.agents import HoldAgent, make_agents
from tests.service.conftest import Served, ServeFactory, _cleanup, redis_settings_url


async def _echo(served: Served, n: int) -> dict[str, Any]:
    status, body, _ = await served.call(
        "POST", "/v1/tasks", json={"type": "Echo", "payload": {"text": "t", "n": n}},
        headers={"Prefer": "wait=10"})
    assert status == 200 and body["task"]["state"] == "done", body
    return dict(body["task"])


async def _pages(served: Served, path: str) -> tuple[list[dict[str, Any]], int]:
    """Every task from ``path`` on, following the ``next`` links; and the number of pages."""
    out: list[dict[str, Any]] = []
    pages = 0
    next_path: str | None = path
    while next_path is not None:
        status, body, headers = await served.call("GET", next_path)
        assert status == 200, body
        pages += 1
        out += body["tasks"]
        next_path = body["next"]
        if next_path is not None:
            assert headers["Link"] == f'<{next_path}>; rel="next"'
            assert body["cursor"] in next_path
        assert pages < 50, "the cursor does not advance"
    return out, pages


async def test_lists_live_and_finished_tasks_by_state_type_and_time(serve: ServeFactory) -> None:
    served = await serve()
    t0 = time.time()
    finished = [await _echo(served, n) for n in range(5)]
    status, boom, _ = await served.call(
        "POST", "/v1/tasks", json={"type": "Boom", "payload": {"refuse": True}},
        headers={"Prefer": "wait=10"})
    assert status == 200 and boom["task"]["state"] in ("failed", "dead"), boom
    boom_state = boom["task"]["state"]
    status, held, _ = await served.call(
        "POST", "/v1/tasks", json={"type": "Hold", "payload": {"gate": "listing"}})
    assert status == 202
    await asyncio.wait_for(HoldAgent.started_event("listing").wait(), 10)

    # Live tasks come from the ledger ...
    status, body, _ = await served.call("GET", "/v1/tasks?state=running")
    assert status == 200 and [t["task_id"] for t in body["tasks"]] == [held["task_id"]]
    assert body["cursor"] is None and body["next"] is None
    status, body, _ = await served.call("GET", "/v1/tasks?state=queued")
    assert status == 200 and body["tasks"] == []

    # ... finished ones from the history, newest finished first, paged by a keyset cursor.
    echo_ids = [t["task_id"] for t in reversed(finished)]
    listed, pages = await _pages(served, "/v1/tasks?state=done&type=Echo&limit=2")
    assert [t["task_id"] for t in listed] == echo_ids and pages == 3
    assert all(t["result"]["n"] == n + 1 for t, n in zip(listed, range(4, -1, -1), strict=True))
    status, body, _ = await served.call("GET", f"/v1/tasks?state={boom_state}")
    assert [t["task_id"] for t in body["tasks"]] == [boom["task_id"]]
    status, body, _ = await served.call("GET", "/v1/tasks?type=Boom&state=done")
    assert status == 200 and body["tasks"] == []

    # No state: the live tasks first, then the finished ones; pages of one cross over.
    everything, pages = await _pages(served, "/v1/tasks?limit=1")
    ids = [t["task_id"] for t in everything]
    assert ids == [held["task_id"], boom["task_id"], *echo_ids] and pages == 7
    status, body, _ = await served.call("GET", "/v1/tasks")
    assert [t["task_id"] for t in body["tasks"]] == ids and body["cursor"] is None

    # Time windows apply to the finish time.
    cut = finished[2]["finished_at"]
    status, body, _ = await served.call("GET", f"/v1/tasks?state=done&since={cut!r}")
    assert [t["task_id"] for t in body["tasks"]] == echo_ids[:3]
    status, body, _ = await served.call(
        "GET", f"/v1/tasks?state=done&since={t0!r}&until={cut!r}")
    assert [t["task_id"] for t in body["tasks"]] == echo_ids[3:]
    status, body, _ = await served.call("GET", f"/v1/tasks?since={time.time() + 60:.3f}")
    assert status == 200 and body["tasks"] == []

    # The client and its pages agree with the HTTP answers.
    async with SwarmClient(served.url) as client:
        page = await client.tasks(state="done", limit=3)
        assert [t.task_id for t in page.tasks] == echo_ids[:3] and page.cursor is not None
        rest = await client.tasks(state="done", limit=3, cursor=page.cursor)
        assert [t.task_id for t in rest.tasks] == echo_ids[3:] and rest.cursor is None
        assert [t.task_id async for t in client.iter_tasks(page=2)] == ids
        with pytest.raises(ApiRequestError, match="cursor"):
            await client.tasks(cursor="not-a-cursor")
    HoldAgent.gate("listing").set()


@pytest.mark.parametrize(("query", "field"), [
    ("state=sleeping", "state"),
    ("limit=0", "limit"),
    ("limit=1001", "limit"),
    ("limit=ten", "limit"),
    ("since=yesterday", "since"),
    ("since=-1", "since"),
    ("until=nan", "until"),
    ("since=200&until=100", "until"),
    ("type=", "type"),
    ("cursor=bm90IGEgY3Vyc29y", "cursor"),
    ("cursor=%%%", "cursor"),
    ("cursor=" + "x" * 401, "cursor"),
])
async def test_bad_filters_are_400_naming_the_field(
    serve: ServeFactory, query: str, field: str
) -> None:
    served = await serve()
    status, problem, _ = await served.call("GET", f"/v1/tasks?{query}")
    assert status == 400, problem
    assert problem["code"] == "invalid-request"
    assert [e["field"] for e in problem["errors"]] == [field]


async def test_a_cursor_of_one_listing_does_not_page_another(serve: ServeFactory) -> None:
    served = await serve()
    for n in range(2):
        await _echo(served, n)
    status, body, _ = await served.call("GET", "/v1/tasks?state=done&limit=1")
    assert status == 200 and body["cursor"] is not None
    status, problem, _ = await served.call(
        "GET", f"/v1/tasks?state=running&cursor={body['cursor']}")
    assert status == 400 and problem["errors"][0]["field"] == "cursor"


async def test_the_embedded_history_is_bounded_by_its_ledger() -> None:
    # --keep 3: the embedded runtime keeps three finished records; the listing says so.
    settings = SwarmSettings(http="127.0.0.1:0", history_keep=3, lease_ttl=2.0)
    service = SwarmService(settings, agents=make_agents())
    await service.start()
    try:
        await service.wait_leading(timeout=10)
        async with aiohttp.ClientSession() as http:
            served = Served(service=service, url=service.url, http=http, runtime="inprocess")
            ids = [(await _echo(served, n))["task_id"] for n in range(6)]
            listed, _ = await _pages(served, "/v1/tasks?state=done&limit=2")
            kept = [t["task_id"] for t in listed]
            assert 3 <= len(kept) < 6 and kept == ids[::-1][: len(kept)]
            status, _, _ = await served.call("GET", f"/v1/tasks/{ids[0]}")
            assert status == 404
    finally:
        await service.close()


@pytest.mark.integration
async def test_on_redis_with_postgres_a_task_that_left_redis_is_listed_and_fetched() -> None:
    dsn = require_postgres()
    url = redis_settings_url()
    settings = SwarmSettings(
        http="127.0.0.1:0", redis_url=url, postgres_url=dsn, retention=1.0, lease_ttl=2.0,
        drain_timeout=5.0,
    )
    service = SwarmService(settings, agents=make_agents())
    await service.start()
    t0 = time.time()
    try:
        await service.wait_leading(timeout=10)
        runtime: Any = service.runtime
        async with aiohttp.ClientSession() as http:
            served = Served(service=service, url=service.url, http=http, runtime="redis")
            marker = os.urandom(4).hex()
            done = []
            for n in range(3):
                status, body, _ = await served.call(
                    "POST", "/v1/tasks", json={"type": "Echo", "payload": {"text": marker, "n": n}},
                    headers={"Prefer": "wait=10"})
                assert status == 200 and body["task"]["state"] == "done", body
                done.append(body["task"]["task_id"])
            assert await runtime.flush_history(timeout=10)
            redis = runtime.ledger.redis

            async def gone() -> bool:
                return not await redis.exists(*[runtime.ledger.key(t) for t in done])

            await eventually(
                gone, within=20,
                what="the finished records to leave Redis (retention 1 s)",
            )
            listed, _ = await _pages(served, f"/v1/tasks?state=done&type=Echo&since={t0!r}"
                                              "&limit=2")
            assert [t["task_id"] for t in listed] == done[::-1]
            assert [t["result"]["text"] for t in listed] == [marker] * 3
            status, record, _ = await served.call("GET", f"/v1/tasks/{done[0]}")
            assert status == 200 and record["state"] == "done" and record["result"]["n"] == 1
            status, record, _ = await served.call("GET", f"/v1/tasks/{done[1]}/result?wait=0")
            assert status == 200 and record["result"]["n"] == 2
    finally:
        await service.close()
        await _cleanup(url)


@pytest.mark.parametrize("runtime", ["inprocess"], indirect=True)
async def test_queenswarm_tasks_command_pages_and_filters(serve: ServeFactory) -> None:
    from tests.service.test_client import cli

    served = await serve()
    ids = [(await _echo(served, n))["task_id"] for n in range(3)]
    env = {"SWARM_URL": served.url}
    rc, out, err = await cli("tasks", "--state", "done", "--type", "Echo", "--since", "10m",
                             "--limit", "2", **env)
    assert rc == 0, err
    lines = out.splitlines()
    assert lines[0].split()[:5] == ["TASK", "TYPE", "STATE", "ATTEMPTS", "FINISHED"]
    assert [line.split()[0] for line in lines[1:3]] == ids[:0:-1]
    assert lines[3].startswith("more: --cursor ")
    cursor = lines[3].split()[-1]
    rc, out, err = await cli("--json", "tasks", "--state", "done", "--cursor", cursor, **env)
    page = json.loads(out)
    assert rc == 0 and [t["task_id"] for t in page["tasks"]] == ids[:1] and page["cursor"] is None
    rc, out, err = await cli("--json", "tasks", "--all", "--limit", "1", **env)
    assert rc == 0 and [t["task_id"] for t in json.loads(out)] == ids[::-1]
    rc, out, err = await cli("tasks", "--since", "in-a-while", **env)
    assert rc == 2 and "--since" in err
    rc, out, err = await cli("tasks", "--until", "1", "--since", "2", **env)
    assert rc == 1 and "400 invalid-request [until]" in err
