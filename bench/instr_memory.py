"""Instruction-count harness for the memory coordinator mix (run under callgrind).

Runs the coordinator mix of ``bench_memory.py`` (10% store / 85% get / 5%
recall, 100 callers, 2 000 prefilled) for a fixed number of operations on the
in-process hot tier (or on Redis with ``--redis``), so that the difference of
two callgrind totals (e.g. 20 000 and 2 000 ops) divided by the op difference
is the machine-independent cost of one mix operation.

Run::

    PYTHONHASHSEED=0 valgrind --tool=callgrind --callgrind-out-file=/tmp/cg.20000 \\
        python bench/instr_memory.py --ops 20000
    PYTHONHASHSEED=0 valgrind --tool=callgrind --callgrind-out-file=/tmp/cg.2000 \\
        python bench/instr_memory.py --ops 2000
    # (total(20000) - total(2000)) / 18000 = instructions per op

The recall index grows with the stores, so a recall costs a little more in
the longer run; the figure is the mean over that range.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import redis.asyncio as aioredis
from bench_memory import mix_ops, quiet

from memory import InMemoryWarmTier, MemoryCoordinator, RedisHotTier


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ops", type=int, default=20_000)
    parser.add_argument("--callers", type=int, default=100)
    parser.add_argument("--prefill", type=int, default=2000)
    parser.add_argument("--store-pct", type=int, default=10)
    parser.add_argument("--recall-pct", type=int, default=5)
    parser.add_argument("--redis", action="store_true", help="the Redis hot tier")
    parser.add_argument("--near-cache", type=int, default=0)
    parser.add_argument(
        "--redis-url", default=os.environ.get("SWARM_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
    )
    args = parser.parse_args()
    client = None
    if args.redis:
        client = aioredis.Redis.from_url(args.redis_url, max_connections=args.callers)
        prefix = f"meminstr-{secrets.token_hex(4)}"
        hot = RedisHotTier(redis=client, prefix=prefix, ttl=300, near_cache=args.near_cache)
        mem = MemoryCoordinator(settings=quiet(), hot=hot, warm=InMemoryWarmTier())
    else:
        mem = MemoryCoordinator(settings=quiet())
    cpu = time.process_time()
    async with mem:
        await mix_ops(
            mem, prefill=args.prefill, callers=args.callers, seconds=0.0,
            store_pct=args.store_pct, recall_pct=args.recall_pct, ops=args.ops,
        )
    print(f"{args.ops} ops + prefill, cpu {time.process_time() - cpu:.3f}s")
    if client is not None:
        keys = [k async for k in client.scan_iter(match=f"{prefix}:*", count=1000)]
        for i in range(0, len(keys), 1000):
            await client.delete(*keys[i : i + 1000])
        await client.aclose()


if __name__ == "__main__":
    asyncio.run(main())
