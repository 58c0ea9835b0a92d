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


async def test_sigterm_mid_job_drains_and_withdraws_the_agents() -> None:
    import asyncio
    import signal

    from redis.asyncio import Redis

    from agents import STOCK_AGENTS
    from swarm.constants import replicas_key
    from swarm.redis import RedisSettings

    url = redis_settings_url()
    env = {"PATH": os.environ.get("PATH", ""), "PYTHONPATH": str(ROOT)}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "swarm.queen", "--redis", url, cwd=ROOT, env=env,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
    )
    assert proc.stderr is not None
    prefix = RedisSettings.from_dsn(url).key_prefix
    client = Redis.from_url(url.split("?")[0])
    try:
        lines: list[str] = []
        async with asyncio.timeout(60):
            while not any(line.startswith("[scrape") for line in lines):
                line = (await proc.stderr.readline()).decode()
                assert line, "".join(lines)
                lines.append(line)
        live = [await client.hlen(replicas_key(role, prefix)) for role in STOCK_AGENTS]
        assert sum(live) == len(STOCK_AGENTS)  # the job is running: every role is there
        proc.send_signal(signal.SIGTERM)
        async with asyncio.timeout(60):
            rest = (await proc.stderr.read()).decode()
            rc = await proc.wait()
        assert rc == 1, rest  # ended by the CLI, not killed by the signal (143)
        assert "SIGTERM: job stopped; draining" in rest and "unfinished tasks left over" in rest
        left = [await client.hlen(replicas_key(role, prefix)) for role in STOCK_AGENTS]
        assert sum(left) == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        await client.aclose()
        await _cleanup(url)
