"""Prometheus metrics: served by agent processes and computed from Redis when scraped."""

from __future__ import annotations

import asyncio
import re
import statistics
import sys
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from prometheus_client.parser import text_string_to_metric_families

from swarm import Agent, Message, handler
from swarm import constants as C
from swarm.agent.cli import parse_args
from swarm.envelopes import task_envelope
from swarm.errors import ConfigError, TaskDeadLettered
from swarm.exposition import metrics_handler, parse_address
from swarm.metrics import Histo
from tests.observe.agents import EchoAgent, HoldAgent, ObsEcho, ObsHold
from tests.redis.runtime_support import (
    cleanup,
    fast_retry,
    make_runtime,
    new_prefix,
    redis_client,
)
from tests.servers import require_redis

pytestmark = pytest.mark.integration


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of a scrape, keyed by name and labels."""
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[s.name, frozenset(s.labels.items())] = s.value
    return out


def value(
    scrape: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str
) -> float:
    return scrape.get((name, frozenset(labels.items())), 0.0)


def test_addresses() -> None:
    assert parse_address("127.0.0.1:0") == ("127.0.0.1", 0)
    for bad in ("127.0.0.1", "host:port", "h:99999", ""):
        with pytest.raises(ConfigError):
            parse_address(bad)
    assert parse_args(["m:C", "--metrics", "127.0.0.1:9100"]).metrics == "127.0.0.1:9100"


def test_histo_buckets_are_cumulative_with_le_bounds() -> None:
    h = Histo((0.1, 1.0))
    for v in (0.05, 0.1, 0.5, 3.0):
        h.observe(v)
    assert h.buckets() == [("0.1", 2), ("1.0", 3), ("+Inf", 4)]
    assert h.sum == pytest.approx(3.65)


Process = asyncio.subprocess.Process


async def _agent_process(role: str, prefix: str, *extra: str) -> tuple[Process, str]:
    """Start ``python -m swarm.agent`` with ``--metrics 127.0.0.1:0``; return it and its URL."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "swarm.agent",
        role,
        "--redis",
        require_redis(),
        "--prefix",
        prefix,
        "--metrics",
        "127.0.0.1:0",
        *extra,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    assert proc.stdout is not None
    seen = []
    async with asyncio.timeout(60):
        while True:
            line = (await proc.stdout.readline()).decode()
            if not line:
                raise AssertionError(f"agent process exited: {''.join(seen)}")
            seen.append(line)
            m = re.search(r"(http://127\.0\.0\.1:\d+/metrics)", line)
            if m:
                return proc, m.group(1)


async def _stop(proc: Process) -> None:
    if proc.returncode is None:
        proc.terminate()
    try:
        await asyncio.wait_for(proc.wait(), 30)
    except TimeoutError:
        proc.kill()
        await proc.wait()


async def test_an_agent_process_serves_its_metrics() -> None:
    redis = await redis_client()
    prefix = new_prefix()
    procs = []
    queen = make_runtime(redis, prefix)
    try:
        # Two agent processes on one host: each its own endpoint, no shared files.
        for _ in range(2):
            procs.append(await _agent_process("tests.observe.agents:EchoAgent", prefix))
        urls = [url for _, url in procs]
        assert urls[0] != urls[1]
        await queen.start()
        results = await asyncio.gather(
            *(queen.send(ObsEcho(text=f"t{i}"), sender="test", timeout=30) for i in range(20))
        )
        assert sorted(results) == sorted(f"T{i}" for i in range(20))
        async with aiohttp.ClientSession() as http:
            scrapes = []
            for url in urls:
                async with http.get(url) as resp:
                    assert resp.status == 200
                    assert resp.headers["Content-Type"].startswith("text/plain")
                    scrapes.append(samples(await resp.text()))
        role = EchoAgent.role
        done = [value(s, "swarm_tasks_finished_total", role=role, state="done") for s in scrapes]
        started = [value(s, "swarm_tasks_started_total", role=role) for s in scrapes]
        handled = [
            value(s, "swarm_task_handler_duration_seconds_count", role=role) for s in scrapes
        ]
        latency = [value(s, "swarm_task_latency_seconds_count", role=role) for s in scrapes]
        assert sum(done) == sum(started) == sum(handled) == sum(latency) == 20
        assert sum(value(s, "swarm_redis_roundtrip_duration_seconds_count") for s in scrapes) > 0
        for s in scrapes:
            assert value(s, "swarm_metrics_refresh_ok") == 1
            assert value(s, "swarm_role_healthy_replicas", role=role) == 2
            assert value(s, "swarm_queue_depth", role=role, priority="0") == 0
            agents = [k for k in s if k[0] == "swarm_agent_inflight_tasks"]
            assert len(agents) == 1  # its own agent only
    finally:
        for proc, _ in procs:
            await _stop(proc)
        await queen.stop()
        await cleanup(redis, prefix)
        await redis.aclose()


@pytest.fixture
async def held() -> AsyncIterator[asyncio.Event]:
    gate = asyncio.Event()
    HoldAgent.gate = gate
    yield gate
    gate.set()


async def _serve(runtime: object) -> tuple[web.AppRunner, str]:
    app = web.Application()
    app.router.add_get("/metrics", metrics_handler(runtime))
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    return runner, f"http://127.0.0.1:{port}/metrics"


async def test_queue_gauges_are_read_from_redis_when_scraped(held: asyncio.Event) -> None:
    redis = await redis_client()
    prefix = new_prefix()
    runtime = make_runtime(redis, prefix)
    cls = type("HoldQ", (HoldAgent,), {"role": "obs_hold_q"})
    runner = None
    try:
        agent = cls(concurrency=1)
        await runtime.register(agent)
        runner, url = await _serve(runtime)
        ids = []
        for i in range(6):
            env = task_envelope(
                runtime.codec, ObsHold(n=i), "test", 3, "role:obs_hold_q", 5 if i == 5 else 0
            )
            ids.append(await runtime.submit(env))
        async with asyncio.timeout(10):
            while agent.inflight < 1:
                await asyncio.sleep(0.01)
        await asyncio.sleep(0.2)  # let an age accrue, so "oldest age" is above zero
        async with aiohttp.ClientSession() as http, http.get(url) as resp:
            s = samples(await resp.text())
        # One task runs, five wait (in the bands they were sent to).
        assert value(s, "swarm_agent_inflight_tasks", role="obs_hold_q", agent=agent.agent_id) == 1
        band0 = value(s, "swarm_queue_depth", role="obs_hold_q", priority="0")
        band5 = value(s, "swarm_queue_depth", role="obs_hold_q", priority="5")
        assert (band0, band5) in {(5, 0), (4, 1)}
        # An empty band other than the default one is not exported.
        assert (
            "swarm_queue_depth",
            frozenset({("role", "obs_hold_q"), ("priority", "9")}),
        ) not in s
        assert value(s, "swarm_queue_oldest_age_seconds", role="obs_hold_q", priority="0") >= 0.2
        assert value(s, "swarm_role_replicas", role="obs_hold_q", state="busy") == 1
        held.set()
        for task_id in ids:
            await runtime.wait(task_id, timeout=30)
        async with aiohttp.ClientSession() as http, http.get(url) as resp:
            s = samples(await resp.text())
        assert value(s, "swarm_queue_depth", role="obs_hold_q", priority="0") == 0
        assert value(s, "swarm_queue_oldest_age_seconds", role="obs_hold_q", priority="0") == 0
    finally:
        if runner is not None:
            await runner.cleanup()
        await runtime.stop(drain=False)
        await cleanup(redis, prefix)
        await redis.aclose()


async def _undelivered(redis: Any, prefix: str) -> int:
    """Entries of the hold roles' streams not yet delivered: Redis's own "lag" of the group."""
    total = 0
    for i in range(50):
        for band in (0, 1):
            for group in await redis.xinfo_groups(C.task_stream(f"obs_hold_{i}", band, prefix)):
                total += group["lag"]
    return total


async def test_a_scrape_with_50_roles_and_200_agents_reports_every_series() -> None:
    # The < 50 ms target is a speed figure: printed here (run with -s) and recorded in
    # bench/RESULTS.md, not asserted, so host load cannot fail the suite.
    # The agents run in a process of their own (as they would); this process
    # submits and serves /metrics, as the HTTP API does.
    redis = await redis_client()
    prefix = new_prefix()
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.observe.many_agents",
        require_redis(),
        prefix,
        "50",
        "4",
        stdout=asyncio.subprocess.PIPE,
    )
    runtime = make_runtime(redis, prefix)
    runner = None
    try:
        assert proc.stdout is not None
        line = await asyncio.wait_for(proc.stdout.readline(), 120)
        assert line == b"ready\n"
        await runtime.start()
        # Every agent busy, and work waiting in two bands of every role.
        for i in range(50):
            for n in range(6):
                env = task_envelope(
                    runtime.codec, ObsHold(n=n), "test", 3, f"role:obs_hold_{i}", n % 2
                )
                await runtime.submit(env)
        runner, url = await _serve(runtime)
        async with aiohttp.ClientSession() as http:

            async def scrape() -> str:
                async with http.get(url) as resp:
                    return await resp.text()

            async with asyncio.timeout(60):
                while True:
                    s = samples(await scrape())
                    busy = [
                        v
                        for k, v in s.items()
                        if k == ("swarm_role_replicas", k[1]) and ("state", "busy") in k[1]
                    ]
                    depth = sum(v for k, v in s.items() if k[0] == "swarm_queue_depth")
                    if sum(busy) == 200 and depth == await _undelivered(redis, prefix):
                        break
                    await asyncio.sleep(0.1)
            took = []
            for _ in range(15):
                t0 = time.perf_counter()
                text = await scrape()
                took.append(time.perf_counter() - t0)
        s = samples(text)
        # What waits (about two tasks per role) as Redis itself counts it.
        depth = sum(v for k, v in s.items() if k[0] == "swarm_queue_depth")
        assert depth == await _undelivered(redis, prefix) > 0
        assert sum(v for k, v in s.items() if k[0] == "swarm_role_healthy_replicas") == 200
        assert len([k for k in s if k[0] == "swarm_role_healthy_replicas"]) == 50
        median = statistics.median(took)
        print(
            f"scrape with 50 roles, 200 agents: median {median * 1000:.1f} ms, "
            f"best {min(took) * 1000:.1f} ms, {len(text)} bytes"
        )
    finally:
        await _stop(proc)
        if runner is not None:
            await runner.cleanup()
        await runtime.stop(drain=False)
        await cleanup(redis, prefix)
        await redis.aclose()


async def test_the_in_process_runtime_counts_tasks_by_role() -> None:
    from swarm import InProcessRuntime
    from swarm.metrics import role_meters

    class Flaky(Message):
        fail: bool

    class FlakyAgent(Agent):
        role = "obs_inproc"

        @handler(Flaky)
        async def run(self, msg: Flaky) -> str:
            if msg.fail:
                raise RuntimeError("no")
            return "ok"

    m = role_meters("obs_inproc")
    before = (m.started, m.done, m.finished.get("dead", 0), m.latency.counts[:], m.handler.sum)
    runtime = InProcessRuntime(retry_policy=fast_retry(1))
    await runtime.start()
    try:
        await runtime.register(FlakyAgent())
        assert await runtime.send(Flaky(fail=False), sender="t") == "ok"
        with pytest.raises(TaskDeadLettered):
            await runtime.send(Flaky(fail=True), sender="t")
    finally:
        await runtime.stop()
    assert m.started - before[0] == 2
    assert m.done - before[1] == 1
    assert m.finished.get("dead", 0) - before[2] == 1
    assert sum(m.latency.counts) - sum(before[3]) == 2
