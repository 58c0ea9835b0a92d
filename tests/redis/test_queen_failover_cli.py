"""Two ``python -m swarm.queen --serve --redis`` processes: one leads, the other takes over."""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
import sys
import time
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from tests.servers import require_redis

ROOT = Path(__file__).resolve().parents[2]
TTL = 2.0

pytestmark = pytest.mark.integration


class Queen:
    """A Queen process whose standard error is collected line by line as it arrives."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.lines: list[str] = []
        self.changed = asyncio.Condition()
        self.reader = asyncio.create_task(self._read())

    @classmethod
    async def start(cls, url: str) -> Queen:
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "swarm.queen",
            "--serve",
            "--redis",
            url,
            "--lease-ttl",
            str(TTL),
            "--no-progress",
            cwd=ROOT,
            env=env,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
        return cls(proc)

    async def _read(self) -> None:
        assert self.proc.stderr is not None
        async for raw in self.proc.stderr:
            async with self.changed:
                self.lines.append(raw.decode())
                self.changed.notify_all()

    async def said(self, text: str, timeout: float) -> None:
        async with asyncio.timeout(timeout), self.changed:
            await self.changed.wait_for(lambda: any(text in line for line in self.lines))

    async def stop(self) -> None:
        if self.proc.returncode is None:
            self.proc.kill()
        await self.proc.wait()
        await self.reader


async def test_sigkilled_leader_is_replaced_by_the_standby() -> None:
    base = require_redis()
    prefix = f"failover{secrets.token_hex(4)}"
    url = f"{base}{'&' if '?' in base else '?'}prefix={prefix}"
    a = await Queen.start(url)
    b: Queen | None = None
    try:
        await a.said("leading with epoch 1", timeout=60)
        b = await Queen.start(url)
        await b.said("waiting for leadership", timeout=60)
        assert not any("leading with" in line for line in b.lines)
        a.proc.send_signal(signal.SIGKILL)
        killed = time.monotonic()
        await b.said("leading with epoch 2", timeout=TTL + 5)
        assert time.monotonic() - killed <= TTL + 5
        b.proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(b.proc.wait(), 60) == 0
    finally:
        await a.stop()
        if b is not None:
            await b.stop()
        client = aioredis.from_url(base)
        async for key in client.scan_iter(match=f"{prefix}:*"):
            await client.delete(key)
        await client.aclose()
