"""``python -m swarm.queen --consul URL``: registers, leads, runs the job, deregisters."""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import signal
import socket
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from agents.corpus import load_corpus
from tests.consul_server import FakeConsul
from tests.servers import require_redis

ROOT = Path(__file__).resolve().parents[2]


async def run_queen(*args: str) -> tuple[int, str, str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("CONSUL_HTTP_TOKEN", None)
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "swarm.queen",
        *args,
        cwd=ROOT,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_queen_registers_leads_and_runs_the_job_through_consul() -> None:
    async with FakeConsul() as consul:
        code, out, err = await run_queen("--consul", consul.url, "--json", "--no-progress")
        assert code == 0, err
        assert "leading with epoch 1" in err
        report = json.loads(out)
        assert report["ok"] is True and report["announcements"]
        # The bundled job runs on the labelled real excerpts and scores itself against them.
        assert report["evaluation"]["labelled"] == len(load_corpus().labels)
        registered = [p for m, p in consul.requests if p == "/v1/agent/service/register"]
        deregistered = [
            p for m, p in consul.requests if p.startswith("/v1/agent/service/deregister/")
        ]
        assert len(registered) >= 5  # the five stock specialists, plus the Queen itself
        assert len(deregistered) == len(registered)
        assert consul.services == {}


async def test_unreachable_consul_is_a_clear_error_naming_the_address() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    code, _, err = await run_queen("--consul", f"http://127.0.0.1:{port}", "--no-progress")
    assert code != 0
    assert f"127.0.0.1:{port}" in err
    assert "Traceback" not in err


async def _until(predicate: Callable[[], bool], timeout: float = 30.0) -> None:
    """Poll the test server's state: it has no event to wait on from another process."""
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.05)


@pytest.mark.integration
async def test_agent_process_registers_with_consul_and_deregisters_on_sigterm() -> None:
    url = require_redis()
    prefix = f"agentcli{secrets.token_hex(4)}"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("CONSUL_HTTP_TOKEN", None)
    async with FakeConsul() as consul:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "swarm.agent",
            "keyword_precision",
            "--replicas",
            "2",
            "--redis",
            url,
            "--prefix",
            prefix,
            "--consul",
            consul.url,
            "--check-ttl",
            "5",
            cwd=ROOT,
            env=env,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            await _until(lambda: len(consul.services) == 2)
            assert {s.name for s in consul.services.values()} == {"keyword_precision"}
            proc.send_signal(signal.SIGTERM)
            code = await asyncio.wait_for(proc.wait(), 60)
            assert code == 0
            assert consul.services == {}
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
    client = aioredis.from_url(url)
    async for key in client.scan_iter(match=f"{prefix}:*"):
        await client.delete(key)
    await client.aclose()
