"""A second Queen that must lead to run a job says who leads and gives up in time."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.service.conftest import _cleanup, redis_settings_url, start_service

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.integration


async def test_second_queen_names_the_leader_and_times_out() -> None:
    url = redis_settings_url()
    leader = await start_service("redis", redis_url=url)
    try:
        await leader.wait_leading(timeout=10)
        env = {"PATH": os.environ.get("PATH", ""), "PYTHONPATH": str(ROOT)}
        proc = await __import__("asyncio").to_thread(
            subprocess.run,
            [sys.executable, "-m", "swarm.queen", "--redis", url, "--leader-timeout", "1",
             "--no-progress"],
            cwd=ROOT, env=env, capture_output=True, text=True, timeout=60,
        )
    finally:
        await leader.close()
        await _cleanup(url)
    assert proc.returncode == 1, proc.stderr
    said = proc.stderr
    assert f"waiting for leadership: Queen {leader.queen.queen_id} leads (epoch 1)" in said
    last = said.strip().splitlines()[-1]
    assert last.startswith("python -m swarm.queen: error: SwarmTimeout: did not become leader")
    assert leader.url in last and "--leader-timeout" in last and "--serve" in last
