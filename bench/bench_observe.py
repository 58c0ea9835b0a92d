"""Benchmark: what observability costs the Redis runtime, interleaved in one run.

One submitting process (this script) and one agent process per round
(``bench/observe_agent.py``) over a private loopback ``redis-server``; each
round runs ``--tasks`` pipelined tasks (100 in flight) of the work unit (a
~200-byte dict payload in, a dict result out, checked) in one of three
variants, and the variants take turns:

* ``off``: per-task metrics off in both processes (the baseline);
* ``metrics``: the default (per-task metrics on, tracing off);
* ``tracing``: metrics on and tracing on in both processes, every span
  sampled, into a no-op exporter behind the SDK's batch processor.

Run::

    .venv/bin/python bench/bench_observe.py [--tasks 10000] [--rounds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(Path(__file__).resolve().parent)]

from bench_redis import cpu_seconds, start_server, wait_ready  # noqa: E402
from observe_agent import apply  # noqa: E402

from swarm import Agent, Message, handler  # noqa: E402
from swarm.redis import RedisRuntime, RedisSettings  # noqa: E402

IN_FLIGHT = 100
AGENT = str(Path(__file__).resolve().parent / "observe_agent.py")
VARIANTS = ("off", "metrics", "tracing")


class Work(Message):
    """The work unit: ~200 bytes of fields."""

    source: str
    title: str
    body: str
    tags: list[str]
    n: int


class WorkAgent(Agent):
    role = "bench_observe"

    @handler
    async def work(self, msg: Work) -> dict[str, Any]:
        return {"source": msg.source, "words": len(msg.body.split()), "n": msg.n + 1}


def _unit(i: int) -> Work:
    return Work(
        source="https://example.org/news/item",
        title="Project announces token generation event",
        body="The foundation said the TGE is planned for the second quarter after audits.",
        tags=["tge", "launch", "token"],
        n=i,
    )


async def _wait_for_agent(queen: RedisRuntime) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        info = (await queen.directory()).get(WorkAgent.role)
        if info is not None and any(r.state in ("ready", "busy") for r in info.replicas):
            return
        await asyncio.sleep(0.05)
    raise SystemExit("the agent process did not register")


async def _round(queen: RedisRuntime, n: int) -> float:
    sem = asyncio.Semaphore(IN_FLIGHT)

    async def one(i: int) -> None:
        async with sem:
            result = await queen.send(_unit(i), to=f"role:{WorkAgent.role}", sender="bench")
            if result != {"source": "https://example.org/news/item", "words": 13, "n": i + 1}:
                raise SystemExit(f"wrong result {result!r}")

    t0 = time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(n)))
    return n / (time.perf_counter() - t0)


async def bench(
    args: argparse.Namespace,
) -> tuple[dict[str, list[float]], dict[str, list[tuple[float, float]]]]:
    server, url, directory = start_server()
    await wait_ready(url)
    rates: dict[str, list[float]] = {v: [] for v in VARIANTS}
    cpu: dict[str, list[tuple[float, float]]] = {v: [] for v in VARIANTS}
    env = dict(os.environ, PYTHONPATH=f"{ROOT}:{Path(AGENT).parent}")
    try:
        for r in range(args.rounds):
            order = VARIANTS if r % 2 == 0 else tuple(reversed(VARIANTS))
            for variant in order:
                provider = apply(variant)
                prefix = f"bench-obs-{os.urandom(4).hex()}"
                queen = RedisRuntime(settings=RedisSettings.from_dsn(url), prefix=prefix)
                await queen.start()
                agent = await asyncio.create_subprocess_exec(
                    sys.executable, AGENT, variant, "bench_observe:WorkAgent", "--redis", url,
                    "--prefix", prefix, "--concurrency", str(IN_FLIGHT), "--log-level", "warning",
                    cwd=ROOT, env=env, stdout=asyncio.subprocess.DEVNULL,
                    stderr=asyncio.subprocess.DEVNULL,
                )
                try:
                    await _wait_for_agent(queen)
                    await _round(queen, 1000)  # warm-up
                    # CPU time per task of both processes: what the variant costs,
                    # much less moved by other load on the host than the rate.
                    cpu0 = cpu_seconds(agent.pid), time.process_time()
                    rate = await _round(queen, args.tasks)
                    cpu1 = cpu_seconds(agent.pid), time.process_time()
                finally:
                    agent.terminate()
                    await agent.wait()
                    await queen.stop()
                    if provider is not None:
                        provider.shutdown()
                rates[variant].append(rate)
                agent_us = (cpu1[0] - cpu0[0]) / args.tasks * 1e6
                queen_us = (cpu1[1] - cpu0[1]) / args.tasks * 1e6
                cpu[variant].append((agent_us, queen_us))
                print(f"round {r + 1} {variant:<8} {rate:>9.0f} tasks/s, CPU per task: "
                      f"agent {agent_us:.1f} us, submitter {queen_us:.1f} us", flush=True)
    finally:
        apply("metrics")
        server.terminate()
        server.wait()
        shutil.rmtree(directory, ignore_errors=True)
    return rates, cpu


def report(rates: dict[str, list[float]], cpu: dict[str, list[tuple[float, float]]]) -> str:
    base = statistics.median(rates["off"])
    base_cpu = statistics.median(a + q for a, q in cpu["off"])
    lines = ["| variant | median tasks/s | best tasks/s | vs off (median) | CPU us/task "
             "(agent + submitter, median) | vs off |",
             "| --- | ---: | ---: | ---: | ---: | ---: |"]
    for v in VARIANTS:
        med = statistics.median(rates[v])
        c = statistics.median(a + q for a, q in cpu[v])
        lines.append(
            f"| {v} | {med:,.0f} | {max(rates[v]):,.0f} | {100 * (med / base - 1):+.1f} % "
            f"| {c:.1f} | {100 * (c / base_cpu - 1):+.1f} % |"
        )
    # Paired: each round's variants ran back to back, so load moves them together.
    for v in ("metrics", "tracing"):
        ratios = [a / b for a, b in zip(rates[v], rates["off"], strict=True)]
        lines.append(f"\n{v} / off per round: " + ", ".join(f"{x:.3f}" for x in ratios)
                     + f" (median {statistics.median(ratios):.3f})")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--tasks", type=int, default=10_000, help="pipelined tasks per round")
    p.add_argument("--rounds", type=int, default=5, help="rounds of the three variants")
    args = p.parse_args()
    print(report(*asyncio.run(bench(args))))


if __name__ == "__main__":
    main()
