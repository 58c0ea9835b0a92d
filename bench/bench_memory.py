"""Benchmark of the memory coordinator; prints figures (run from the repository root).

    /work/venv/bin/python bench/bench_memory.py [--seconds 3] [--recall-size 100000]

Figures:
  * hot tier ops/s, 100 concurrent callers, for the in-process LRU and for Redis
    (without, then with the coherent near-cache in front of it): the raw tier
    (put + get) and the coordinator mix (store + get + recall);
  * warm tier durable stores/s, batched to PostgreSQL (each ``put`` awaits its commit);
  * top-10 recall latency p50/p99 over 100 000 memories.
Servers are read from ``--redis-url`` / ``--postgres-dsn`` (defaults from
``SWARM_TEST_REDIS_URL`` / ``SWARM_TEST_POSTGRES_DSN``); a section whose server
is down is reported as skipped.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import secrets
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import asyncpg  # type: ignore[import-untyped]
import redis.asyncio as aioredis

from memory import (
    HashingEmbedder,
    InMemoryWarmTier,
    Memory,
    MemoryCoordinator,
    MemorySettings,
    PostgresSettings,
    PostgresWarmTier,
    RedisHotTier,
)
from memory.embedding import vector_to_bytes
from memory.tiers import LruHotTier
from swarm.messages import new_id

WORDS = (
    "apollo zeus hermes token unlock tge vesting cliff supply airdrop validator outage bridge "
    "exploit audit lending pool yield governance proposal treasury liquidity market maker "
    "listing exchange snapshot staking reward inflation burn roadmap mainnet testnet"
).split()


def quiet() -> MemorySettings:
    """Settings without background jobs, so they do not disturb the figures."""
    return MemorySettings(
        synthesis_interval=None, tiering_interval=None, index_refresh_interval=None
    )


def sentence(rng: random.Random, n: int = 8) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(n))


async def run_callers(
    op: Callable[[random.Random], Awaitable[None]],
    *,
    callers: int,
    seconds: float,
    ops: int | None = None,
) -> float:
    """Run ``callers`` concurrent loops of ``op`` for ``seconds``; returns ops/s.

    With ``ops``, each caller instead runs ``ops // callers`` operations
    (a fixed amount of work, for instruction counts).
    """
    stop = time.perf_counter() + seconds
    counts = [0] * callers

    async def caller(i: int) -> None:
        rng = random.Random(i)
        n = 0
        if ops is not None:
            for _ in range(ops // callers):
                await op(rng)
            counts[i] = ops // callers
            return
        while True:
            # Check the clock every 64 ops: perf_counter is not free at 50k ops/s.
            for _ in range(64):
                await op(rng)
                n += 1
            if time.perf_counter() >= stop:
                break
        counts[i] = n

    started = time.perf_counter()
    async with asyncio.TaskGroup() as tg:
        for i in range(callers):
            tg.create_task(caller(i))
    return sum(counts) / (time.perf_counter() - started)


async def mix_ops(
    mem: MemoryCoordinator,
    *,
    prefill: int,
    callers: int,
    seconds: float,
    store_pct: int,
    recall_pct: int,
    ops: int | None = None,
) -> float:
    rng0 = random.Random(0)
    ids = [
        await mem.store(namespace="bench", content=sentence(rng0), tags=["b"])
        for _ in range(prefill)
    ]
    # Inputs are drawn up front so the harness's own cost stays out of the figure.
    texts = [sentence(rng0) for _ in range(4096)]
    queries = [sentence(rng0, 3) for _ in range(1024)]
    store_cut = store_pct / 100
    recall_cut = (store_pct + recall_pct) / 100

    async def op(rng: random.Random) -> None:
        r = rng.random()
        if r < store_cut:
            text = texts[int(rng.random() * 4096)]
            ids.append(await mem.store(namespace="bench", content=text, tags=["b"]))
        elif r < recall_cut:
            await mem.recall(queries[int(rng.random() * 1024)], k=10)
        else:
            await mem.get(ids[int(rng.random() * len(ids))])

    return await run_callers(op, callers=callers, seconds=seconds, ops=ops)


async def raw_hot_ops(hot: LruHotTier | RedisHotTier, *, callers: int, seconds: float) -> float:
    rng0 = random.Random(1)
    pool = [Memory(id=new_id(), namespace="bench", content=sentence(rng0)) for _ in range(2000)]
    for m in pool:
        await hot.put(m)

    async def op(rng: random.Random) -> None:
        m = pool[int(rng.random() * 2000)]
        if rng.random() < 0.25:
            await hot.put(m)
        else:
            await hot.get(m.id)

    return await run_callers(op, callers=callers, seconds=seconds)


async def bench_hot(args: argparse.Namespace) -> None:
    print(f"== hot tier: {args.callers} concurrent callers, {args.seconds:.0f}s each")
    mix = (
        f"{args.store_pct}% store / {100 - args.store_pct - args.recall_pct}% get / "
        f"{args.recall_pct}% recall"
    )
    lru = LruHotTier(capacity=100_000)
    print(
        f"in-process LRU, raw put+get (25/75):   "
        f"{await raw_hot_ops(lru, callers=args.callers, seconds=args.seconds):>10,.0f} ops/s"
    )
    async with MemoryCoordinator(settings=quiet()) as mem:
        ops = await mix_ops(
            mem,
            prefill=args.prefill,
            callers=args.callers,
            seconds=args.seconds,
            store_pct=args.store_pct,
            recall_pct=args.recall_pct,
        )
        print(f"in-process coordinator mix ({mix}, {args.prefill} prefilled): {ops:>10,.0f} ops/s")
    client = aioredis.Redis.from_url(args.redis_url, max_connections=args.callers)
    try:
        await client.ping()
    except (OSError, aioredis.RedisError) as exc:
        print(f"Redis: skipped ({exc!r})")
        await client.aclose()
        return
    prefix = f"membench-{secrets.token_hex(4)}"
    try:
        for near in (0, args.near_cache):
            if near == 0 and args.near_cache and args.near_only:
                continue
            label = f"+ near-cache ({near:,})" if near else "(no near-cache)"
            hot = RedisHotTier(redis=client, prefix=prefix, ttl=300, near_cache=near)
            raw = await raw_hot_ops(hot, callers=args.callers, seconds=args.seconds)
            await hot.close()
            print(f"Redis hot tier {label}, raw put+get (25/75): {raw:>10,.0f} ops/s")
            hot = RedisHotTier(redis=client, prefix=prefix, ttl=300, near_cache=near)
            async with MemoryCoordinator(
                settings=quiet(), hot=hot, warm=InMemoryWarmTier()
            ) as mem:
                ops = await mix_ops(
                    mem,
                    prefill=args.prefill,
                    callers=args.callers,
                    seconds=args.seconds,
                    store_pct=args.store_pct,
                    recall_pct=args.recall_pct,
                )
            hit = ""
            if hot.near is not None:
                looked = max(1, hot.near.hits + hot.near.misses)
                hit = f" (near-cache hits {hot.near.hits / looked:.0%})"
            print(f"Redis-hot {label} coordinator mix ({mix}): {ops:>10,.0f} ops/s{hit}")
            if not args.near_cache:
                break
    finally:
        keys = [k async for k in client.scan_iter(match=f"{prefix}:*", count=1000)]
        for i in range(0, len(keys), 1000):
            await client.delete(*keys[i : i + 1000])
        await client.aclose()


async def bench_warm(args: argparse.Namespace) -> None:
    print(
        f"== warm tier: {args.warm_count} durable stores to PostgreSQL, "
        f"{args.warm_callers} concurrent callers"
    )
    try:
        pool = await asyncpg.create_pool(args.postgres_dsn, min_size=2, max_size=4, timeout=3)
    except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
        print(f"PostgreSQL: skipped ({exc!r})")
        return
    schema = f"membench_{secrets.token_hex(4)}"
    try:
        settings = PostgresSettings.from_dsn(
            args.postgres_dsn, schema=schema, batch_max=1000, writers=2
        )
        tier = PostgresWarmTier(pool=pool, settings=settings)
        await tier.start()
        emb = HashingEmbedder()
        rng = random.Random(2)
        texts = [sentence(rng) for _ in range(args.warm_count)]
        vectors = emb.embed(texts)
        now = time.time()
        memories = [
            Memory(
                id=new_id(),
                namespace="bench",
                content=t,
                tags=("b",),
                created_at=now,
                score_at=now,
                vector=vector_to_bytes(v),
            )
            for t, v in zip(texts, vectors, strict=True)
        ]
        queue = iter(memories)

        async def worker() -> None:
            for m in queue:
                await tier.put(m)

        started = time.perf_counter()
        async with asyncio.TaskGroup() as tg:
            for _ in range(args.warm_callers):
                tg.create_task(worker())
        elapsed = time.perf_counter() - started
        count = await pool.fetchval(f'SELECT count(*) FROM "{schema}".memories')
        await tier.close()
        print(
            f"batched durable stores: {len(memories) / elapsed:>10,.0f} stores/s "
            f"({count} rows committed in {elapsed:.2f}s)"
        )
    finally:
        await pool.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        await pool.close()


async def bench_recall(args: argparse.Namespace) -> None:
    n = args.recall_size
    print(f"== recall: top-10 over {n:,} memories (dim {HashingEmbedder().dim})")
    mem = MemoryCoordinator(settings=quiet())
    rng = random.Random(3)
    texts = [sentence(rng) for _ in range(n)]
    started = time.perf_counter()
    vectors = mem.embedder.embed(texts)
    now = time.time()
    for t, v in zip(texts, vectors, strict=True):
        mem.index.add(Memory(id=new_id(), namespace="bench", content=t, created_at=now), v)
    print(f"indexed in {time.perf_counter() - started:.1f}s")
    lat = []
    for _ in range(args.queries):
        q = sentence(rng, 4)
        t0 = time.perf_counter()
        hits = await mem.recall(q, k=10)
        lat.append((time.perf_counter() - t0) * 1000)
        assert len(hits) == 10
    lat.sort()
    p99 = lat[min(len(lat) - 1, int(len(lat) * 0.99))]
    print(
        f"recall latency: p50 {statistics.median(lat):.2f} ms, p99 {p99:.2f} ms "
        f"({args.queries} queries)"
    )


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--callers", type=int, default=100)
    parser.add_argument("--prefill", type=int, default=2000)
    parser.add_argument("--store-pct", type=int, default=10)
    parser.add_argument("--recall-pct", type=int, default=5)
    parser.add_argument("--warm-count", type=int, default=20_000)
    parser.add_argument("--warm-callers", type=int, default=500)
    parser.add_argument("--recall-size", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument(
        "--near-cache",
        type=int,
        default=100_000,
        help="entries of the Redis tier's near-cache, measured after the tier without one "
        "(0: only without)",
    )
    parser.add_argument(
        "--near-only", action="store_true", help="skip the Redis figures without near-cache"
    )
    parser.add_argument("--only", choices=["hot", "warm", "recall"], default=None)
    parser.add_argument(
        "--redis-url", default=os.environ.get("SWARM_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
    )
    parser.add_argument(
        "--postgres-dsn",
        default=os.environ.get(
            "SWARM_TEST_POSTGRES_DSN", "postgresql://postgres@127.0.0.1:5432/test"
        ),
    )
    args = parser.parse_args()
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs (shared machine: figures vary)")
    if args.only in (None, "hot"):
        await bench_hot(args)
    if args.only in (None, "warm"):
        await bench_warm(args)
    if args.only in (None, "recall"):
        await bench_recall(args)


if __name__ == "__main__":
    asyncio.run(main())
