"""The HTTP API under load: submit no-op tasks and await their results over keep-alive HTTP.

A server process serves the API (``SwarmService`` with ``http``) on the
in-process runtime or on Redis, with one agent whose handler returns a dict;
the baseline server is a bare aiohttp handler that parses the same body and
answers 202. This process is the client: ``--concurrency`` workers on
keep-alive connections each POST ``/v1/tasks`` with a ~200-byte dict payload
and ``Prefer: wait=10`` (the answer carries the task's final record), check
the dict result, and time each submit → result. Servers are measured in
turn, interleaved over ``--rounds``, in the same run.

Run: ``python bench/bench_api.py [--requests 6000] [--concurrency 32] [--rounds 3]``
(``SWARM_TEST_REDIS_URL`` for Redis, default ``redis://127.0.0.1:6379/0``; a
private key prefix is used and deleted).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
import msgspec

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from swarm import Agent, Message, handler  # noqa: E402


class Noop(Message):
    """The work unit: ~200 bytes of JSON."""

    id: int
    source: str
    text: str
    tags: list[str]


class NoopAgent(Agent):
    role = "noop"

    @handler
    async def noop(self, msg: Noop) -> dict[str, Any]:
        return {"id": msg.id, "ok": True, "chars": len(msg.text)}


def _payload(i: int) -> dict[str, Any]:
    return {
        "id": i,
        "source": "https://example.org/announcements/feed.xml",
        "text": "Project Bee announces its token generation event on 1 December; "
        "claim opens at 14:00 UTC for early contributors.",
        "tags": ["tge", "bee", "airdrop"],
    }


# -- servers (child processes) ---------------------------------------------------
async def _serve_swarm(kind: str) -> None:
    from swarm.logging import configure_logging
    from swarm.service import SwarmService
    from swarm.settings import SwarmSettings

    configure_logging(level="error")

    redis_url = None
    if kind == "redis":
        base = os.environ.get("SWARM_TEST_REDIS_URL") or "redis://127.0.0.1:6379/0"
        redis_url = f"{base}{'&' if '?' in base else '?'}prefix=bench-api-{os.getpid()}"
    settings = SwarmSettings(http="127.0.0.1:0", redis_url=redis_url, lease_ttl=5.0)
    service = SwarmService(settings, agents=[NoopAgent(concurrency=256)],
                           max_outstanding=1_000_000)
    async with service:
        await service.wait_leading(timeout=30)
        gc.collect()
        gc.freeze()
        print(service.url, flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
        if redis_url is not None:
            await _cleanup(redis_url)


async def _cleanup(url: str) -> None:
    from redis.asyncio import Redis

    prefix = url.rsplit("prefix=", 1)[1]
    client = Redis.from_url(url.split("?")[0])
    keys = [k async for k in client.scan_iter(match=f"{prefix}:*", count=1000)]
    for i in range(0, len(keys), 500):
        await client.delete(*keys[i : i + 500])
    await client.aclose()


async def _serve_bare() -> None:
    from aiohttp import web

    async def submit(request: web.Request) -> web.Response:
        body = msgspec.json.decode(await request.read())
        return web.json_response({"task_id": str(body["payload"]["id"]), "state": "queued"},
                                 status=202)

    app = web.Application()
    app.router.add_post("/v1/tasks", submit)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    gc.collect()
    gc.freeze()
    print(f"http://127.0.0.1:{port}", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    await runner.cleanup()


# -- the client ---------------------------------------------------------------------
async def _drive(url: str, requests: int, concurrency: int, *, bare: bool) -> dict[str, float]:
    latencies: list[float] = []
    counter = iter(range(requests))
    encode = msgspec.json.encode
    headers = {"Content-Type": "application/json", "Prefer": "wait=10"}
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as http:

        async def worker() -> None:
            for i in counter:
                body = encode({"type": "Noop", "payload": _payload(i)})
                t0 = time.perf_counter()
                async with http.post(url + "/v1/tasks", data=body, headers=headers) as resp:
                    data = await resp.read()
                    status = resp.status
                latencies.append(time.perf_counter() - t0)
                answer = msgspec.json.decode(data)
                if bare:
                    assert status == 202 and answer["task_id"] == str(i), (status, answer)
                else:
                    result = answer["task"]["result"] if status == 200 else None
                    assert result == {"id": i, "ok": True, "chars": 112}, (status, answer)

        # Warm the connections and both ends' caches first.
        warm = iter(range(concurrency * 4))
        saved, counter = counter, warm
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        counter = saved
        latencies.clear()
        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    latencies.sort()
    return {
        "rate": requests / elapsed,
        "p50": latencies[len(latencies) // 2] * 1000,
        "p99": latencies[int(len(latencies) * 0.99) - 1] * 1000,
    }


def _start(kind: str) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [sys.executable, __file__, "--server", kind], stdin=subprocess.PIPE,
        stdout=subprocess.PIPE, text=True, cwd=ROOT,
    )
    assert proc.stdout is not None
    url = proc.stdout.readline().strip()
    if not url.startswith("http"):
        proc.kill()
        raise SystemExit(f"{kind} server did not start")
    return proc, url


def _stop(proc: subprocess.Popen[str]) -> None:
    assert proc.stdin is not None
    proc.stdin.close()
    try:
        proc.wait(60)
    except subprocess.TimeoutExpired:
        proc.kill()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--requests", type=int, default=6000)
    p.add_argument("--concurrency", type=int, default=32)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--kinds", default="bare,inprocess,redis")
    p.add_argument("--server", choices=("bare", "inprocess", "redis"), help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.server == "bare":
        asyncio.run(_serve_bare())
        return
    if args.server:
        if os.environ.get("BENCH_API_PROFILE"):
            import cProfile

            cProfile.runctx("asyncio.run(_serve_swarm(args.server))", globals(), locals(),
                            os.environ["BENCH_API_PROFILE"])
        else:
            asyncio.run(_serve_swarm(args.server))
        return
    kinds = args.kinds.split(",")
    results: dict[str, list[dict[str, float]]] = {k: [] for k in kinds}
    servers = {k: _start(k) for k in kinds}
    try:
        for r in range(args.rounds):
            for kind in kinds:
                res = asyncio.run(
                    _drive(servers[kind][1], args.requests, args.concurrency, bare=kind == "bare")
                )
                results[kind].append(res)
                print(f"round {r + 1} {kind:>9}: {res['rate']:8.0f} req/s  "
                      f"p50 {res['p50']:6.2f} ms  p99 {res['p99']:6.2f} ms", flush=True)
    finally:
        for proc, _ in servers.values():
            _stop(proc)
    print(f"\n{args.requests} requests x {args.rounds} rounds, concurrency {args.concurrency}, "
          f"load {os.getloadavg()[0]:.1f}")
    print("| server | best req/s | median req/s | median p50 | median p99 | vs bare (median) |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    bare = statistics.median(r["rate"] for r in results.get("bare", [{"rate": 0.0}]))
    for kind in kinds:
        rates = [r["rate"] for r in results[kind]]
        med = statistics.median(rates)
        ratio = f"{med / bare:.2f}x" if bare else "-"
        print(f"| {kind} | {max(rates):,.0f} | {med:,.0f} | "
              f"{statistics.median(r['p50'] for r in results[kind]):.2f} ms | "
              f"{statistics.median(r['p99'] for r in results[kind]):.2f} ms | {ratio} |")


if __name__ == "__main__":
    main()
