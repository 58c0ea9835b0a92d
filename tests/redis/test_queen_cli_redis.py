"""``python -m swarm.queen --redis URL`` runs the bundled job on the Redis runtime."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest
import redis

from agents.corpus import load_corpus
from tests.servers import require_redis

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.integration
def test_queen_runs_the_job_on_redis() -> None:
    url = require_redis()
    prefix = f"clitest{secrets.token_hex(4)}"
    sep = "&" if "?" in url else "?"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("SWARM_REDIS_URL", None)
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "swarm.queen",
            "--redis",
            f"{url}{sep}prefix={prefix}",
            "--json",
            "--no-progress",
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=120,
    )
    client = redis.Redis.from_url(url)
    try:
        assert proc.returncode == 0, proc.stderr
        report = json.loads(proc.stdout)
        assert report["ok"] is True and report["announcements"]
        # The bundled job runs on the labelled real excerpts and scores itself against them.
        assert report["evaluation"]["labelled"] == len(load_corpus().labels)
        tasks = report["tasks"]
        assert tasks["done"] > len(load_corpus().sources) and tasks["done"] == sum(tasks.values())
        assert "RedisRuntime" in proc.stderr
        keys = list(client.scan_iter(match=f"{prefix}:*"))
        assert keys, "the job left no trace in Redis: it did not run there"
    finally:
        for key in client.scan_iter(match=f"{prefix}:*"):
            client.delete(key)
        client.close()
