"""Multi-process acceptance: a SIGSTOPped agent goes critical and gets no tasks;
a SIGKILLed leader is replaced in time; a paused leader's stale writes are refused.

The processes (tests/discovery/swarm_proc.py) talk to the Consul test server
running in this process, and to the real Redis for fenced writes.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from discovery import ConsulRegistry, HealthRouter, HealthView, ServiceInstance
from swarm import InProcessRuntime, Queen
from swarm.constants import fenced_key
from tests.consul_server import FakeConsul
from tests.discovery.conftest import REDIS_URL, consul_settings
from tests.discovery.test_health_routing import Job, Worker

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
CHECK_TTL = 1.0
SESSION_TTL = 1.0
LOCK_DELAY = 0.5


class Proc:
    """A swarm_proc child with its JSON events in a queue."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.events: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.log: list[dict[str, Any]] = []
        self.reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        assert self.proc.stdout is not None
        async for line in self.proc.stdout:
            event = json.loads(line)
            self.log.append(event)
            await self.events.put(event)

    async def expect(self, name: str, *, within: float) -> dict[str, Any]:
        async with asyncio.timeout(within):
            while True:
                event = await self.events.get()
                if event["event"] == name:
                    return event

    async def seen(self, name: str, *, within: float) -> None:
        """Wait until ``name`` is anywhere in the log, consumed or not."""
        async with asyncio.timeout(within):
            while not any(e["event"] == name for e in self.log):
                await self.events.get()

    def signal(self, sig: int) -> None:
        self.proc.send_signal(sig)

    async def close(self) -> None:
        if self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(signal.SIGCONT)
                self.proc.terminate()
            try:
                await asyncio.wait_for(self.proc.wait(), 10)
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()
        await asyncio.gather(self.reader, return_exceptions=True)


@contextlib.asynccontextmanager
async def spawn(*args: str) -> AsyncIterator[Proc]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tests.discovery.swarm_proc", *args, cwd=ROOT,
        stdout=asyncio.subprocess.PIPE, env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    p = Proc(proc)
    try:
        yield p
    finally:
        await p.close()


@pytest.fixture
async def server() -> AsyncIterator[FakeConsul]:
    async with FakeConsul(session_ttl_min=0.5) as fake:
        yield fake


async def test_sigstopped_agent_goes_critical_and_gets_no_tasks(server: FakeConsul) -> None:
    settings = consul_settings(server.address)
    registry = ConsulRegistry(settings=settings)
    await registry.start()
    runtime = InProcessRuntime()
    await runtime.start()
    await runtime.register(Worker(agent_id="w1"))  # its process-side heartbeat is the child's
    await runtime.register(Worker(agent_id="w2"))
    await registry.register(ServiceInstance(role="worker", id="w2"), ttl=CHECK_TTL)
    view = HealthView(registry=registry, roles=["worker"])
    await view.start()
    queen = Queen(runtime=runtime, router=HealthRouter(healthy=view.is_healthy))
    try:
        async with spawn("agent", "--consul", server.address, "--id", "w1", "--role", "worker",
                         "--prefix", settings.prefix, "--ttl", str(CHECK_TTL)) as agent:
            await agent.expect("registered", within=20)
            await view.wait_until(lambda: view.is_healthy("w1"), timeout=5)

            agent.signal(signal.SIGSTOP)
            stopped = time.monotonic()
            await view.wait_until(lambda: not view.is_healthy("w1"), timeout=CHECK_TTL + 2)
            assert time.monotonic() - stopped <= CHECK_TTL + 2
            assert server.checks["service:w1"].status == "critical"
            done = [await (await queen.submit(Job(n=i))).result(timeout=5) for i in range(10)]
            assert set(done) == {"w2"}

            agent.signal(signal.SIGCONT)
            await view.wait_until(lambda: view.is_healthy("w1"), timeout=CHECK_TTL + 2)
            handles = [await queen.submit(Job(n=i)) for i in range(20)]
            done = [await h.result(timeout=5) for h in handles]
            assert "w1" in done
    finally:
        await view.close()
        await runtime.stop()
        await registry.close()


def queen_args(server: FakeConsul, prefix: str, qid: str) -> list[str]:
    return ["queen", "--consul", server.address, "--redis", REDIS_URL, "--id", qid,
            "--prefix", prefix, "--ttl", str(CHECK_TTL), "--session-ttl", str(SESSION_TTL),
            "--lock-delay", str(LOCK_DELAY)]


@pytest.fixture
async def redis_prefix(redis_env: tuple[Any, str]) -> AsyncIterator[tuple[Any, str]]:
    yield redis_env


async def dispatched(client: Any, prefix: str) -> dict[str, str]:
    raw = await client.hgetall(fenced_key("queen", "dispatched", prefix))
    return {k.decode(): v.decode() for k, v in raw.items()}


async def test_sigkilled_leader_is_replaced_in_time(
    server: FakeConsul, redis_env: tuple[Any, str]
) -> None:
    client, prefix = redis_env
    async with spawn(*queen_args(server, prefix, "q1")) as q1:
        first = await q1.expect("elected", within=20)
        async with spawn(*queen_args(server, prefix, "q2")) as q2:
            await q2.expect("started", within=20)
            await q1.expect("dispatched", within=5)
            q1.signal(signal.SIGKILL)
            killed = time.monotonic()
            second = await q2.expect("elected", within=SESSION_TTL + LOCK_DELAY + 5)
            took = time.monotonic() - killed
            assert took <= SESSION_TTL + LOCK_DELAY + 5, took
            assert second["epoch"] > first["epoch"]
            for _ in range(3):
                await q2.expect("dispatched", within=5)
    log = q1.log + q2.log
    assert not [e for e in log if e["event"] in ("duplicate", "refused")]
    tasks = await dispatched(client, prefix)
    assert sorted(tasks, key=lambda t: int(t[1:])) == [f"t{i}" for i in range(len(tasks))]
    by_event = {e["task"]: f"{e['id']}:{e['epoch']}" for e in log if e["event"] == "dispatched"}
    for task, holder in by_event.items():
        assert tasks[task] == holder  # each task dispatched once, by the one who says so


async def test_paused_leader_writes_are_refused(
    server: FakeConsul, redis_env: tuple[Any, str]
) -> None:
    client, prefix = redis_env
    async with spawn(*queen_args(server, prefix, "q1")) as q1:
        first = await q1.expect("elected", within=20)
        async with spawn(*queen_args(server, prefix, "q2")) as q2:
            await q2.expect("started", within=20)
            await q1.expect("dispatched", within=5)
            await q1.expect("dispatching", within=5)
            q1.signal(signal.SIGSTOP)  # mid-dispatch, for longer than its TTLs
            second = await q2.expect("elected", within=2 * SESSION_TTL + LOCK_DELAY + 5)
            assert second["epoch"] > first["epoch"]
            await q2.expect("dispatched", within=5)
            q1.signal(signal.SIGCONT)
            refused = await q1.expect("refused", within=5)
            assert refused["epoch"] == first["epoch"] and refused["count"] >= 1
            # It stepped down too (its "lost" may precede the refusal in the log).
            await q1.seen("lost", within=5)
            await q2.expect("dispatched", within=5)
    log = q1.log + q2.log
    assert not [e for e in log if e["event"] == "duplicate"]
    tasks = await dispatched(client, prefix)
    # Nothing landed with q1's old epoch after q2 took over (q1 may lead again
    # later, with a new epoch, once q2 has stopped).
    stale = [t for t, h in tasks.items() if h == f"q1:{first['epoch']}" and
             int(t[1:]) >= min(int(e["task"][1:]) for e in q2.log if e["event"] == "dispatched")]
    assert stale == []
