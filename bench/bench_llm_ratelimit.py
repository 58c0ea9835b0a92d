"""The shared rate limit at full scale: 4 agent processes, 60 requests and 20 000 input
tokens per minute, two minutes, against the Messages API stub (real SDK).

Usage: ``SWARM_TEST_REDIS_URL=redis://127.0.0.1:6379/7 python -m bench.bench_llm_ratelimit``

The baseline in the same run is the limit itself: the stub's busiest one-minute
window is compared with it (at most 5 % over), and every 429 (one injected in
every 25 first attempts, ``retry-after: 5``) must be retried exactly once, after
its ``retry-after``, with nothing else started while the swarm waits.
"""

from __future__ import annotations

import asyncio

from tests.llm.ratelimit_run import run
from tests.servers import redis_url


async def main() -> None:
    url = redis_url()
    out = await run(redis_url=url, processes=4, period=60.0, rpm=60, itpm=20_000,
                    duration=120.0, fail_every=25, retry_after=5.0)
    print(out.line())
    ok = (out.requests_over <= 0.05 and out.tokens_over <= 0.05
          and out.too_many == out.retried_once_after_wait and out.during_pause == 0)
    print("PASS" if ok else f"FAIL {out.bad_retries}")


if __name__ == "__main__":
    asyncio.run(main())
