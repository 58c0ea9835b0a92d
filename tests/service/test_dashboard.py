"""The live dashboard at / of the HTTP API: its routes, its token, and a real browser."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest

from swarm.dashboard import percentile, render_page
from tests.servers import in_ci
from tests.service.conftest import TOKENS, ServeFactory

ECHO = {"type": "Echo", "payload": {"text": "dash", "n": 1}, "to": "echo"}
BOOM = {"type": "Boom", "payload": {}, "max_attempts": 1}
ROOT = Path(__file__).resolve().parents[2]


def test_percentiles_and_escaping() -> None:
    assert percentile([], 0.5) == 0.0
    assert percentile([3.0, 1.0, 2.0], 0.5) == 2.0
    page = render_page(
        {"roles": [{"role": "<script>x</script>"}], "leader": "q1", "delivered": 3},
        needs_token=False,
    )
    assert "<script>x</script>" not in page.split("<script>\n")[0]
    assert "&lt;script&gt;" in page
    locked = render_page(None, needs_token=True)
    assert "const needsToken = true" in locked and "const initial = null" in locked


async def _first_event(served: Any, token: str | None) -> tuple[int, dict[str, Any] | None]:
    headers = {"Authorization": f"Bearer {TOKENS[token]}"} if token else {}
    async with served.http.get(served.url + "/dashboard/events", headers=headers) as resp:
        if resp.status != 200:
            return resp.status, None
        assert resp.headers["Content-Type"].startswith("text/event-stream")
        event = ""
        async for raw in resp.content:
            line = raw.decode().rstrip("\r\n")
            if line.startswith("event:"):
                event = line[6:].strip()
            elif line.startswith("data:") and event == "snapshot":
                return resp.status, json.loads(line[5:])
    return 0, None


async def test_routes_and_token(serve: ServeFactory) -> None:
    served = await serve(tokens=True)
    # The page is served to anyone but holds no data without a token.
    async with served.http.get(served.url + "/") as resp:
        assert resp.status == 200 and resp.content_type == "text/html"
        page = await resp.text()
    assert "const needsToken = true" in page and "const initial = null" in page
    status, _, _ = await served.call("GET", "/dashboard/state")
    assert status == 401
    assert (await _first_event(served, None))[0] == 401
    status, body, _ = await served.call(
        "POST", "/v1/tasks", json=ECHO, token="operator", headers={"Prefer": "wait=10"}
    )
    assert status == 200, body
    status, snap = await _first_event(served, "viewer")
    assert status == 200 and snap is not None
    assert {r["role"] for r in snap["roles"]} >= {"echo", "hold", "boom"}
    assert snap["leading"] is True and snap["leader"]
    assert all(a["healthy"] for a in snap["agents"])
    assert "index" in snap["memory"]


async def test_open_api_renders_the_page_with_data(serve: ServeFactory) -> None:
    served = await serve()
    await served.call("POST", "/v1/tasks", json=BOOM, headers={"Prefer": "wait=10"})
    async with served.http.get(served.url + "/") as resp:
        page = await resp.text()
    assert "const needsToken = false" in page
    assert "<td>echo</td>" in page  # the roles table, rendered by the server
    status, snap, _ = await served.call("GET", "/dashboard/state")
    assert status == 200
    # The failed task shows among recent failures (and, on Redis, as a dead letter).
    assert [f["type"] for f in snap["failures"]] == ["Boom"]


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.parametrize("runtime", ["redis"], indirect=True)
async def test_in_a_real_browser(serve: ServeFactory, runtime: str) -> None:
    executable = _chromium()
    if executable is None:
        if in_ci():
            pytest.fail("chromium is not installed (.ci/run installs Debian's chromium)")
        pytest.skip("chromium is not installed")
    from playwright.async_api import async_playwright

    served = await serve(tokens=True)
    profile = ROOT / ".pytest_cache" / f"chromium-{os.getpid()}"
    shutil.rmtree(profile, ignore_errors=True)
    async with async_playwright() as pw:
        browser = await pw.chromium.launch_persistent_context(
            str(profile),
            executable_path=executable,
            headless=True,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
            ],
            viewport={"width": 1100, "height": 1000},
        )
        try:
            page = browser.pages[0] if browser.pages else await browser.new_page()
            await page.goto(served.url + "/")
            await page.wait_for_selector("#login", state="visible")
            await page.fill("#token", TOKENS["operator"])
            await page.click("#login button")
            await page.wait_for_function("document.getElementById('status').textContent === 'live'")
            await page.wait_for_function("window.snapshots >= 1")
            before = int(await page.text_content("#delivered") or "0")
            events = await page.evaluate("window.snapshots")
            # A task submitted now shows in the open page through the event stream.
            status, body, _ = await served.call(
                "POST", "/v1/tasks", json=ECHO, token="operator", headers={"Prefer": "wait=10"}
            )
            assert status == 200, body
            await page.wait_for_function(
                f"+document.getElementById('delivered').textContent > {before}", timeout=20_000
            )
            assert await page.evaluate("window.snapshots") > events
            assert "echo" in (await page.text_content("#roles") or "")
            # A failing task ends as a dead letter; the page redrives it with the token.
            status, body, _ = await served.call(
                "POST", "/v1/tasks", json=BOOM, token="operator", headers={"Prefer": "wait=10"}
            )
            await page.wait_for_selector("#dead button[data-id]", timeout=20_000)
            await page.wait_for_selector("#failures td:has-text('Boom')", timeout=20_000)
            shot = ROOT / "docs" / "dashboard.png"
            shot.parent.mkdir(exist_ok=True)
            await page.screenshot(path=str(shot), full_page=True)
            await page.click("#dead button[data-id]")
            await page.wait_for_selector("#dead button:has-text('redriven')", timeout=10_000)
        finally:
            await browser.close()
            shutil.rmtree(profile, ignore_errors=True)
    await asyncio.sleep(0)


async def test_the_api_serves_metrics_with_the_swarm_gauges(serve: ServeFactory) -> None:
    served = await serve(tokens=True)
    status, _, _ = await served.call("GET", "/metrics")
    assert status == 401
    await served.call(
        "POST", "/v1/tasks", json=ECHO, token="operator", headers={"Prefer": "wait=10"}
    )
    headers = {"Authorization": f"Bearer {TOKENS['viewer']}"}
    async with served.http.get(served.url + "/metrics", headers=headers) as resp:
        assert resp.status == 200
        text = await resp.text()
    assert 'swarm_role_healthy_replicas{role="echo"} 1.0' in text
    assert "swarm_metrics_refresh_ok 1.0" in text
    if served.runtime == "redis":
        assert 'swarm_queue_depth{priority="0",role="echo"} 0.0' in text


async def test_the_sampler_outlives_a_failed_read() -> None:
    import time

    from swarm.dashboard import _Sampler

    calls = 0

    class Flaky:
        async def snapshot(self) -> dict[str, Any]:
            nonlocal calls
            calls += 1
            if calls == 1:
                raise RuntimeError("redis went away")
            return {"at": time.time(), "delivered": calls}

    sampler = _Sampler(Flaky(), 0.01)
    sampler.start()
    try:
        snap = await asyncio.wait_for(sampler.next(), 10)
        snap = await asyncio.wait_for(sampler.next(), 10)  # two in a row: a rate
    finally:
        await sampler.stop()
    assert sampler.failures == 1 and snap["delivered"] >= 3
    assert snap["throughput"] and snap["throughput"][-1][1] > 0
