"""Runs N agent processes against the stub with a shared limit and checks what the stub saw.

Shared by ``tests/llm/test_llm_ratelimit.py`` (scaled down) and
``bench/bench_llm_ratelimit.py`` (the full two minutes).
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import redis.asyncio as aioredis

from swarm.constants import llm_limit_key
from swarm.llm import LlmSettings
from tests.anthropic_stub import AnthropicStub, Limits, Seen


@dataclass
class Outcome:
    """What the stub saw, measured against the limits."""

    period: float
    rpm: int
    itpm: int
    ok: int = 0
    max_requests: int = 0
    max_input_tokens: int = 0
    too_many: int = 0
    injected: int = 0
    retried_once_after_wait: int = 0
    bad_retries: list[str] = field(default_factory=list)
    during_pause: int = 0
    workers: list[dict[str, int]] = field(default_factory=list)

    @property
    def requests_over(self) -> float:
        return self.max_requests / self.rpm - 1

    @property
    def tokens_over(self) -> float:
        return self.max_input_tokens / self.itpm - 1

    def line(self) -> str:
        return (f"{len(self.workers)} processes, period {self.period:g} s, limits {self.rpm} "
                f"req and {self.itpm} input tokens per period: {self.ok} calls answered; "
                f"busiest window "
                f"{self.max_requests} req ({self.requests_over:+.1%}) and {self.max_input_tokens} "
                f"input tokens ({self.tokens_over:+.1%}); 429s: {self.too_many} "
                f"({self.injected} injected), each retried once after its retry-after: "
                f"{self.retried_once_after_wait}; requests started during a pause: "
                f"{self.during_pause}")


def _sliding_max(points: list[tuple[float, int]], width: float) -> int:
    points.sort()
    best = total = lo = 0
    for hi in range(len(points)):
        total += points[hi][1]
        while points[hi][0] - points[lo][0] >= width:
            total -= points[lo][1]
            lo += 1
        best = max(best, total)
    return best


def measure(stub: AnthropicStub, period: float, rpm: int, itpm: int) -> Outcome:
    seen = [s for s in stub.seen if s.path == "/v1/messages"]
    ok = [s for s in seen if s.status == 200]
    out = Outcome(period=period, rpm=rpm, itpm=itpm, ok=len(ok))
    out.max_requests = _sliding_max([(s.at, 1) for s in ok], period)
    out.max_input_tokens = _sliding_max(
        [(s.at, s.input_tokens + s.cache_creation_input_tokens) for s in ok], period)
    by_call: dict[str, list[Seen]] = defaultdict(list)
    for s in seen:
        by_call[s.call_id].append(s)
    for s in seen:
        if s.status != 429:
            continue
        out.too_many += 1
        out.injected += s.injected
        attempts = by_call[s.call_id]
        after = attempts[attempts.index(s) + 1:]
        if (len(after) == 1 and after[0].status == 200 and after[0].retry_count == s.retry_count + 1
                and after[0].at >= s.answered_at + s.retry_after - 0.01):
            out.retried_once_after_wait += 1
        else:
            gaps = [(a.status, round(a.at - s.answered_at, 3)) for a in after]
            out.bad_retries.append(f"{s.call_id}: {gaps}")
        # The whole swarm waits: nothing new starts while the API's pause runs
        # (50 ms of grace for requests already past the limiter when the 429 came).
        out.during_pause += sum(
            1 for o in seen
            if o.call_id != s.call_id and o.retry_count == 0
            and s.answered_at + 0.05 < o.at < s.answered_at + s.retry_after - 0.05
        )
    return out


async def run(
    *, redis_url: str, processes: int, period: float, rpm: int, itpm: int, duration: float,
    fail_every: int, retry_after: float,
) -> Outcome:
    """Start the stub and ``processes`` workers, let them run ``duration`` seconds, measure."""
    stub = AnthropicStub(limits=Limits(requests=rpm, input_tokens=itpm, period=period))
    stub.fail_every = (fail_every, 429, retry_after)
    await stub.start()
    redis = aioredis.Redis.from_url(redis_url)
    go = "test:llm:ratelimit:go"
    await redis.delete(go)
    # A run starts from an idle model (an earlier run's debt or pause may still be in Redis).
    model = LlmSettings().model
    await redis.delete(*(llm_limit_key(model, k) for k in ("requests", "input", "output",
                                                              "pause")))
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    procs = [
        await asyncio.create_subprocess_exec(
            sys.executable, "-m", "tests.llm.ratelimit_worker", "--stub", stub.url,
            "--redis", redis_url, "--go", go, "--period", str(period), "--duration",
            str(duration), "--rpm", str(rpm), "--itpm", str(itpm), "--seed", str(i),
            stdout=asyncio.subprocess.PIPE, env=env)
        for i in range(processes)
    ]
    try:
        for proc in procs:
            assert proc.stdout is not None
            line = await asyncio.wait_for(proc.stdout.readline(), 120)
            assert line.strip() == b"ready", line
        await redis.rpush(go, *["go"] * processes)
        workers: list[Any] = []
        for proc in procs:
            assert proc.stdout is not None
            data = await asyncio.wait_for(proc.stdout.read(), duration + 120)
            assert await proc.wait() == 0
            workers.append(json.loads(data.splitlines()[-1]))
    finally:
        for proc in procs:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
        await redis.delete(go)
        await redis.aclose()
        await stub.stop()
    out = measure(stub, period, rpm, itpm)
    out.workers = workers
    return out
