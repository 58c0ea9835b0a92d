"""``python -m swarm.queen --consul URL``: registers, leads, runs the job, deregisters."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import sys
from pathlib import Path

from tests.consul_server import FakeConsul

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
        assert report["ok"] is True and len(report["announcements"]) == 9
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
