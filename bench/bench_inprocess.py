"""In-process throughput and latency: queenswarm's embedded runtime vs a bare asyncio loop.

20 000 no-op tasks with ~200-byte payloads from one producer, pipelined (100 in
flight) and sequential; the baseline is a bare ``asyncio.Queue`` request/reply
loop measured in the same run. Prints tasks/s and p50/p99 latency.

Run: ``python bench/bench_inprocess.py [--tasks 20000] [--window 100]``
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import statistics
import time
from collections.abc import Awaitable, Callable

from swarm import Agent, Message, RetryPolicy, Swarm, handler


class Noop(Message):
    blob: str


class NoopAgent(Agent):
    role = "noop"

    @handler
    async def noop(self, msg: Noop) -> None:
        return None


PAYLOAD = "x" * 190  # ~200 bytes encoded


async def drive(
    call: Callable[[], Awaitable[object]], tasks: int, window: int
) -> tuple[float, list[float]]:
    """Run ``tasks`` calls with ``window`` in flight; return elapsed seconds and latencies."""
    latencies: list[float] = []
    per_client = tasks // window

    async def client() -> None:
        for _ in range(per_client):
            t0 = time.perf_counter()
            await call()
            latencies.append(time.perf_counter() - t0)

    gc.collect()
    start = time.perf_counter()
    async with asyncio.TaskGroup() as tg:
        for _ in range(window):
            tg.create_task(client())
    return time.perf_counter() - start, latencies


async def bare(tasks: int, window: int) -> tuple[float, list[float]]:
    queue: asyncio.Queue[tuple[Noop, asyncio.Future[None]]] = asyncio.Queue()
    loop = asyncio.get_running_loop()

    async def server() -> None:
        while True:
            _msg, fut = await queue.get()
            fut.set_result(None)

    async def call() -> None:
        fut: asyncio.Future[None] = loop.create_future()
        queue.put_nowait((Noop(blob=PAYLOAD), fut))
        await fut

    servers = [asyncio.create_task(server()) for _ in range(window)]
    try:
        return await drive(call, tasks, window)
    finally:
        for s in servers:
            s.cancel()
        await asyncio.gather(*servers, return_exceptions=True)


async def swarm_run(tasks: int, window: int) -> tuple[float, list[float]]:
    policy = RetryPolicy(max_attempts=3)
    async with Swarm(agents=[NoopAgent(concurrency=window)], retry_policy=policy) as swarm:

        async def call() -> None:
            handle = await swarm.submit(Noop(blob=PAYLOAD), to="role:noop")
            await handle.result()

        return await drive(call, tasks, window)


def row(name: str, tasks: int, elapsed: float, lat: list[float]) -> tuple[str, float, float, float]:
    q = statistics.quantiles(lat, n=100)
    return name, tasks / elapsed, q[49] * 1e6, q[98] * 1e6


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=20_000)
    parser.add_argument("--window", type=int, default=100)
    args = parser.parse_args()
    n, w = args.tasks, args.window
    rows = []
    await swarm_run(2_000, w)  # warm-up: imports, decoder caches
    for label, fn, window in (
        ("bare asyncio, pipelined", bare, w),
        ("queenswarm, pipelined", swarm_run, w),
        ("bare asyncio, sequential", bare, 1),
        ("queenswarm, sequential", swarm_run, 1),
    ):
        elapsed, lat = await fn(n, window)
        rows.append(row(label, n, elapsed, lat))
    print(f"{'run':<28}{'tasks/s':>12}{'p50 us':>10}{'p99 us':>10}")
    for name, rate, p50, p99 in rows:
        print(f"{name:<28}{rate:>12,.0f}{p50:>10.1f}{p99:>10.1f}")
    print(f"pipelined ratio queenswarm/bare: {rows[1][1] / rows[0][1]:.2f}x")
    print(f"sequential ratio queenswarm/bare: {rows[3][1] / rows[2][1]:.2f}x")


if __name__ == "__main__":
    asyncio.run(main())
