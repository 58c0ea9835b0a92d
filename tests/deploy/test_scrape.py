"""deploy/ against a live swarm: promtool lints real /metrics scrapes, and every
metric the dashboard and the alert rules use exists in them.

Two agent processes (``python -m swarm.agent ... --metrics 127.0.0.1:0``), a
serving Queen with agents that use memory (``python -m swarm.queen --serve
--http 127.0.0.1:0``, its HTTP API's /metrics) and a sending runtime in this
process (served with the agents' handler) run tasks over Redis: some succeed,
some fail until they are dead-lettered, one malformed stream entry is
rejected. So the task, retry, dead-letter, reject, queue, replica, memory and
Redis series have samples, not just declarations.
"""

from __future__ import annotations

import asyncio
import re
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
import yaml

from swarm import constants as C
from swarm.errors import TaskDeadLettered
from swarm.exposition import serve_metrics
from tests.deploy.agents import Doomed, DoomedAgent, MemoAgent, Note, Ping, PingAgent
from tests.deploy.promql import (
    ALERTS,
    dashboard_queries,
    exposed_series,
    grouping_labels,
    input_series,
    label_names,
    metric_names,
    render,
    rule_queries,
)
from tests.redis.runtime_support import cleanup, make_runtime, new_prefix, redis_client
from tests.servers import require_binary, require_redis

# One live swarm for the module: its fixture and tests share one event loop.
pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="module")]

#: Series Prometheus makes itself for every target, not in any /metrics.
SCRAPE_SERIES = {"up": {"job", "instance"}}
#: Labels Prometheus attaches to every scraped series.
TARGET_LABELS = {"job", "instance"}


@dataclass
class Process:
    proc: asyncio.subprocess.Process
    url: str
    output: list[str] = field(default_factory=list)
    reader: asyncio.Task[None] | None = None


async def _start(*argv: str, ready: str, url: str) -> Process:
    """Run ``python -m ARGV``; return it once a line has said ``ready``, with its URL."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", *argv,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )
    assert proc.stdout is not None
    output: list[str] = []
    found = None
    try:
        async with asyncio.timeout(60):
            while True:
                line = (await proc.stdout.readline()).decode()
                if not line:
                    raise AssertionError(f"{' '.join(argv)} exited:\n{''.join(output)}")
                output.append(line)
                m = re.search(url, line)
                found = found or (m.group(1) if m else None)
                if ready in line:
                    break
        assert found, "".join(output)
    except BaseException:
        if proc.returncode is None:
            proc.kill()
        await proc.wait()
        raise
    started = Process(proc, found, output)

    async def drain() -> None:  # keep the pipe from filling up
        assert proc.stdout is not None
        while line := await proc.stdout.readline():
            output.append(line.decode())

    started.reader = asyncio.create_task(drain())
    return started


async def _stop(p: Process) -> None:
    if p.proc.returncode is None:
        p.proc.terminate()
    try:
        await asyncio.wait_for(p.proc.wait(), 30)
    except TimeoutError:
        p.proc.kill()
        await p.proc.wait()
    if p.reader is not None:
        await p.reader


@dataclass
class Scrapes:
    """The text of each endpoint's /metrics by URL, and again once the ping agent stopped."""

    texts: dict[str, str]
    jobs: dict[str, str]
    stopped: str = ""
    after: dict[str, str] = field(default_factory=dict)

    def series(self) -> dict[str, set[str]]:
        out: dict[str, set[str]] = {}
        for text in self.texts.values():
            for name, labels in exposed_series(text).items():
                out.setdefault(name, set()).update(labels)
        return out


async def _scrape(http: aiohttp.ClientSession, url: str) -> str:
    async with http.get(url) as resp:
        assert resp.status == 200, url
        return await resp.text()


def _value(text: str, pattern: str) -> float:
    """Sum of the samples whose line matches ``pattern`` (a regex on name and labels)."""
    total = 0.0
    for line in text.splitlines():
        if line and not line.startswith("#") and re.match(pattern, line):
            total += float(line.rsplit(" ", 1)[1])
    return total


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def scrapes() -> AsyncIterator[Scrapes]:
    redis = await redis_client()
    prefix = new_prefix()
    queen = make_runtime(redis, prefix)
    procs: list[Process] = []
    runner = None
    try:
        redis_url = require_redis()
        agent = ("swarm.agent", "--redis", redis_url, "--prefix", prefix, "--metrics")
        agent += ("127.0.0.1:0",)
        served = r"(http://127\.0\.0\.1:\d+/metrics)"
        sep = "&" if "?" in redis_url else "?"
        started = await asyncio.gather(
            _start(*agent, "tests.deploy.agents:PingAgent", ready="agents running", url=served),
            _start(*agent, "tests.deploy.agents:DoomedAgent", ready="agents running", url=served),
            _start(
                "swarm.queen", "--serve", "--http", "127.0.0.1:0",
                "--redis", f"{redis_url}{sep}prefix={prefix}",
                "--agents", "tests.deploy.agents:bundle",
                ready="ready: serving", url=r"HTTP API on (http://127\.0\.0\.1:\d+)",
            ),
            return_exceptions=True,
        )
        procs = [p for p in started if isinstance(p, Process)]
        for failure in started:
            if isinstance(failure, BaseException):
                raise failure
        procs[2].url += "/metrics"
        await queen.start()
        runner, queen_url = await serve_metrics(queen, "127.0.0.1:0")
        pings = [queen.send(Ping(text=f"ping {i}"), sender="test", timeout=60) for i in range(20)]
        assert await asyncio.gather(*pings) == [f"ping {i}"[::-1] for i in range(20)]
        doomed = [
            queen.send(Doomed(n=i), sender="test", timeout=60, max_attempts=2) for i in range(3)
        ]
        for outcome in await asyncio.gather(*doomed, return_exceptions=True):
            assert isinstance(outcome, TaskDeadLettered), outcome
        notes = [queen.send(Note(text=f"note {i}"), sender="test", timeout=60) for i in range(5)]
        assert await asyncio.gather(*notes) == [f"note {i}" for i in range(5)]
        # A stream entry that is not a task: the agent moves it aside, counted by reason.
        await redis.xadd(C.task_stream(PingAgent.role, 0, prefix), {"e": b"\xc1 not a task"})
        urls = [queen_url, *(p.url for p in procs)]
        async with aiohttp.ClientSession() as http:
            async with asyncio.timeout(30):
                while True:
                    text = await _scrape(http, procs[0].url)
                    if _value(text, r'swarm_messages_rejected_total\{reason="malformed"\}') >= 1:
                        break
                    await asyncio.sleep(0.05)  # polling the condition itself, bounded above
            texts = {url: await _scrape(http, url) for url in urls}
            jobs = {url: "queenswarm-queen" for url in urls}
            jobs.update({p.url: "queenswarm-agents" for p in procs[:2]})
            scrapes = Scrapes(texts, jobs)
            # The ping role's only agent drains and leaves (its heartbeat goes with it).
            await _stop(procs[0])
            scrapes.stopped = procs[0].url
            healthy = rf'swarm_role_healthy_replicas\{{role="{PingAgent.role}"\}} 0'
            async with asyncio.timeout(30):
                while not re.search(healthy, await _scrape(http, procs[1].url)):
                    await asyncio.sleep(0.05)  # polling the condition itself, bounded above
            scrapes.after = {url: await _scrape(http, url) for url in urls if url != procs[0].url}
        yield scrapes
    finally:
        for proc in procs:
            await _stop(proc)
        if runner is not None:
            await runner.cleanup()
        await queen.stop()
        await cleanup(redis, prefix)
        await redis.aclose()


async def test_the_scrapes_show_the_swarm_at_work(scrapes: Scrapes) -> None:
    queen_text, ping_text, doomed_text, service_text = scrapes.texts.values()
    ping, doomed = PingAgent.role, DoomedAgent.role
    assert _value(queen_text, rf'swarm_tasks_submitted_total\{{role="{ping}"\}}') == 20
    assert _value(queen_text, rf'swarm_tasks_submitted_total\{{role="{doomed}"\}}') == 3
    assert _value(ping_text, rf'swarm_tasks_finished_total\{{role="{ping}",state="done"\}}') == 20
    assert _value(ping_text, rf'swarm_task_handler_duration_seconds_count\{{role="{ping}"\}}') == 20
    dead = rf'swarm_tasks_finished_total\{{role="{doomed}",state="dead"\}}'
    assert _value(doomed_text, dead) == 3
    assert _value(doomed_text, r"swarm_task_retries_total ") == 3
    assert _value(doomed_text, r"swarm_tasks_dead_lettered_total ") == 3
    memo = MemoAgent.role
    assert _value(service_text, rf'swarm_tasks_finished_total\{{role="{memo}",state="done"\}}') == 5
    assert _value(service_text, r'swarm_memory_operation_duration_seconds_count\{op="store",') == 5
    for text in scrapes.texts.values():
        # Every process reads the queues and replicas from Redis when scraped.
        assert _value(text, rf'swarm_dead_letters\{{role="{doomed}"\}}') == 3
        assert _value(text, rf'swarm_role_healthy_replicas\{{role="{ping}"\}}') == 1
        assert _value(text, r"swarm_redis_roundtrip_duration_seconds_count ") > 0


async def _check_metrics(promtool: str, text: str) -> tuple[int, str]:
    """``promtool check metrics`` on ``text``: its exit code and what it printed."""
    proc = await asyncio.create_subprocess_exec(
        promtool, "check", "metrics",
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    async with asyncio.timeout(60):
        out, _ = await proc.communicate(text.encode())
    assert proc.returncode is not None
    return proc.returncode, out.decode()


async def test_promtool_check_metrics_passes_on_each_real_scrape(scrapes: Scrapes) -> None:
    promtool = require_binary("promtool")
    for url, text in scrapes.texts.items():
        assert "swarm_tasks_finished_total" in text
        code, said = await _check_metrics(promtool, text)
        assert code == 0 and not said.strip(), f"{url}: promtool check metrics:\n{said}"


async def test_promtool_check_metrics_finds_lint_problems() -> None:
    """The check above can fail: promtool flags a counter without ``_total``."""
    promtool = require_binary("promtool")
    bad = "# HELP jobs Jobs.\n# TYPE jobs counter\njobs 1\n"
    code, said = await _check_metrics(promtool, bad)
    assert code != 0 and "_total" in said


@pytest.mark.parametrize(
    "source", ["dashboard", "alerts"], ids=["grafana dashboard", "alert rules"]
)
async def test_every_metric_queried_exists_in_a_real_scrape(
    scrapes: Scrapes, source: str
) -> None:
    queries = dashboard_queries() if source == "dashboard" else rule_queries()
    series = {**scrapes.series(), **SCRAPE_SERIES}
    problems = []
    for where, expr in queries:
        names = metric_names(expr)
        for name in sorted(names - series.keys()):
            problems.append(f"{where}: {name} is in no scrape")
        # Labels can only be checked on series that have samples.
        for name, labels in label_names(expr).items():
            seen = series.get(name)
            if seen and labels - seen - TARGET_LABELS:
                missing = sorted(labels - seen - TARGET_LABELS)
                problems.append(f"{where}: {name} has no label {missing}")
        sampled = [series[n] for n in names if series.get(n)]
        if sampled and len(sampled) == len(names):
            known = set().union(*sampled) | TARGET_LABELS
            if grouping_labels(expr) - known:
                problems.append(f"{where}: grouped by {sorted(grouping_labels(expr) - known)}")
    assert not problems, "\n".join(problems)


# -- the alert rules evaluated over the real scrapes -----------------------------------


def _instance(url: str) -> str:
    return url.split("//", 1)[1].split("/", 1)[0]


async def _evaluate(
    series: list[dict[str, str]], expected: dict[str, list[dict[str, str]]], tmp: Any
) -> str:
    """Run every alert of alerts.yml over ``series`` held for 15 minutes, as promtool does.

    ``expected`` maps alert names to the label sets that must fire at the end
    (others: none); annotations are rendered from the rule's templates.
    """
    rules = {
        r["alert"]: r for g in yaml.safe_load(ALERTS.read_text())["groups"] for r in g["rules"]
    }
    checks = []
    for name, rule in rules.items():
        alerts = []
        for labels in expected.get(name, []):
            full = {**labels, **rule["labels"]}
            alerts.append({
                "exp_labels": full,
                "exp_annotations": {k: render(v, full) for k, v in rule["annotations"].items()},
            })
        checks.append({"eval_time": "14m", "alertname": name, "exp_alerts": alerts})
    doc = {
        "rule_files": [str(ALERTS)],
        "evaluation_interval": "1m",
        "tests": [{"interval": "1m", "input_series": series, "alert_rule_test": checks}],
    }
    path = tmp / "live_test.yml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    proc = await asyncio.create_subprocess_exec(
        require_binary("promtool"), "test", "rules", str(path),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )
    async with asyncio.timeout(120):
        out, _ = await proc.communicate()
    assert proc.returncode == 0, out.decode()
    return out.decode()


async def test_no_alert_fires_on_a_healthy_swarm(scrapes: Scrapes, tmp_path: Any) -> None:
    """Three dead letters long ago, every role served: the rules stay quiet."""
    up = {_instance(u): (scrapes.jobs[u], text) for u, text in scrapes.texts.items()}
    await _evaluate(input_series(up), {}, tmp_path)


async def test_alerts_fire_when_a_roles_only_agent_is_gone(
    scrapes: Scrapes, tmp_path: Any
) -> None:
    """The ping agent stopped: its target is down and its role has no healthy replica."""
    up = {_instance(u): (scrapes.jobs[u], text) for u, text in scrapes.after.items()}
    gone = _instance(scrapes.stopped)
    series = input_series(up, {gone: scrapes.jobs[scrapes.stopped]})
    expected = {
        "SwarmAgentDown": [{"job": scrapes.jobs[scrapes.stopped], "instance": gone}],
        "SwarmRoleNoHealthyReplica": [{"role": PingAgent.role}],
    }
    await _evaluate(series, expected, tmp_path)
    # Without the stop, the same evaluation expecting those alerts fails.
    before = {_instance(u): (scrapes.jobs[u], text) for u, text in scrapes.texts.items()}
    with pytest.raises(AssertionError, match="SwarmRoleNoHealthyReplica"):
        await _evaluate(input_series(before), expected, tmp_path)
