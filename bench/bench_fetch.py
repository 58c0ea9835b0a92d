"""The guarded fetcher's pages/s over ten local hosts, against a bare aiohttp loop.

Ten aiohttp sites (``tests/agents/web_server.py``, one per loopback address
127.0.0.1-10) serve real excerpts as pages. In the same run, interleaved
round by round, the same pages are fetched

* by :class:`agents.fetch.Fetcher` (SSRF guard, robots.txt, per-host
  concurrency 4 and a per-host rate, 100/s by default: ``--rate``), and
* by the baseline: a bare ``aiohttp`` GET loop, one session, a per-host
  semaphore of 4 (the same concurrency), reading the body as text.

Each result is checked (status 200, an ``<article>``) on both sides. The
figure is pages per second, best of the rounds, and the fetcher's share of
the baseline.

Run: ``python bench/bench_fetch.py [--rounds 3] [--per-host 60] [--rate 100]``
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import aiohttp  # noqa: E402

from agents.fetch import Fetcher, FetchSettings, GuardSettings  # noqa: E402
from tests.agents.web_server import Site  # noqa: E402

CONCURRENCY = 4


def _check(status: int, text: str) -> None:
    if status != 200 or "<article>" not in text:
        raise SystemExit(f"bad page: status {status}")


async def fetcher_round(f: Fetcher, urls: list[str]) -> float:
    started = time.perf_counter()
    results = await asyncio.gather(*(f.fetch(u) for u in urls))
    elapsed = time.perf_counter() - started
    for r in results:
        _check(r.status, r.text)
    return len(results) / elapsed


async def baseline_round(session: aiohttp.ClientSession, urls: list[str]) -> float:
    gates: dict[str, asyncio.Semaphore] = {}

    async def get(url: str) -> None:
        host = url.split("/")[2]
        gate = gates.setdefault(host, asyncio.Semaphore(CONCURRENCY))
        async with gate, session.get(url) as resp:
            _check(resp.status, await resp.text())

    started = time.perf_counter()
    await asyncio.gather(*(get(u) for u in urls))
    return len(urls) / (time.perf_counter() - started)


async def main(rounds: int, per_host: int, rate: float) -> None:
    sites = [Site(host=f"127.0.0.{n}") for n in range(1, 11)]
    for s in sites:
        await s.start()
    settings = FetchSettings(
        guard=GuardSettings(allow=("127.0.0.0/8",)),
        per_host_concurrency=CONCURRENCY, per_host_rate=rate,
    )
    ours: list[float] = []
    base: list[float] = []
    try:
        async with Fetcher(settings) as f, aiohttp.ClientSession() as session:
            for s in sites:  # robots.txt once per host, outside the timed part
                await f.fetch(f"{s.base}/page/0")
            for r in range(rounds):
                urls = [f"{s.base}/page/{r * per_host + n}" for n in range(1, per_host + 1)
                        for s in sites]
                ours.append(await fetcher_round(f, urls))
                base.append(await baseline_round(session, urls))
    finally:
        for s in sites:
            await s.stop()
    n = per_host * len(sites)
    print(f"{n} pages from {len(sites)} hosts per round, {rounds} rounds, "
          f"per-host concurrency {CONCURRENCY}, fetcher per-host rate {rate:.0f}/s "
          f"(ceiling {rate * len(sites):.0f} pages/s)")
    print(f"Fetcher     : best {max(ours):7.0f} pages/s  (rounds: "
          + ", ".join(f"{x:.0f}" for x in ours) + ")")
    print(f"bare aiohttp: best {max(base):7.0f} pages/s  (rounds: "
          + ", ".join(f"{x:.0f}" for x in base) + ")")
    print(f"Fetcher / baseline: {max(ours) / max(base):.2f}")


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--per-host", type=int, default=60)
    p.add_argument("--rate", type=float, default=100.0,
                   help="the fetcher's per-host rate (pages/s); the baseline has none")
    a = p.parse_args()
    asyncio.run(main(a.rounds, a.per_host, a.rate))
