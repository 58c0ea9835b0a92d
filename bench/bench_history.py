"""Benchmark: the PostgreSQL task history, and Redis memory per finished task after the retention.

1. History writes: ``--records`` finished task records (the work unit's: a
   ~200-byte dict payload's task, a dict result) handed to a
   :class:`~swarm.history.HistoryWriter` as a settling agent hands them over,
   written in batches (one binary ``COPY`` each) until flushed;
   baseline in the same run: the same records written with asyncpg's
   ``executemany`` of a one-row ``INSERT`` (per-row statements, pipelined).
2. Redis memory per finished task: ``--tasks`` work-unit tasks through a
   RedisRuntime with a short retention on a private ``redis-server``;
   ``used_memory`` before, right after (within the retention), and once the
   retention ended; the same for tasks left queued (live work).

Run::

    .venv/bin/python bench/bench_history.py --postgres postgresql://postgres@127.0.0.1/db
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from pathlib import Path
from typing import Any

import asyncpg  # type: ignore[import-untyped]
import msgspec
from redis.asyncio import Redis

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(Path(__file__).resolve().parent)]

from bench_redis import start_server, wait_ready  # noqa: E402
from soak_agent import SoakAgent, expected, payload  # noqa: E402

from swarm.history import HistorySettings, HistoryWriter, PostgresHistory  # noqa: E402
from swarm.ledger import TaskRecord, TaskState  # noqa: E402
from swarm.logging import configure_logging  # noqa: E402
from swarm.messages import new_id  # noqa: E402
from swarm.redis import RedisRuntime, RedisSettings  # noqa: E402


def records(n: int) -> list[TaskRecord]:
    result = msgspec.msgpack.encode(expected(0))
    now = time.time()
    return [
        TaskRecord(
            task_id=new_id(), type="Work", recipient="role:soak", state=TaskState.DONE,
            attempts=1, agent_id="soak-1", result=result, result_type="dict",
            created_at=now, started_at=now + 0.001, finished_at=now + 0.002, executions=1,
        )
        for _ in range(n)
    ]


async def bench_writes(dsn: str, n: int) -> tuple[float, float]:
    schema = f"bench_hist_{os.urandom(4).hex()}"
    settings = HistorySettings(dsn=dsn, schema=schema)
    store = PostgresHistory(settings)
    await store.start()
    enc = msgspec.msgpack.Encoder()
    recs = records(n)
    notes = [(r.task_id, enc.encode(r)) for r in recs]
    try:
        writer = HistoryWriter(settings, sink=store.write)
        task = asyncio.create_task(writer.run())
        started = time.perf_counter()
        for i in range(0, n, 1000):
            for task_id, note in notes[i : i + 1000]:
                writer.add(task_id, note)
            await asyncio.sleep(0)  # the settler's loop turns in between
        assert await writer.flushed(timeout=600)
        batched = n / (time.perf_counter() - started)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        assert await store.count() == n
        # Baseline: one INSERT per row, pipelined by executemany.
        pool: Any = store._pool
        await pool.execute(f'TRUNCATE "{schema}".task_history')
        sql = (
            f'INSERT INTO "{schema}".task_history (task_id, type, recipient, state, attempts,'
            " agent_id, result, result_type, created_at, started_at, finished_at, executions)"
            " VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12) ON CONFLICT (task_id) DO NOTHING"
        )
        rows = [
            (r.task_id, r.type, r.recipient, r.state.value, r.attempts, r.agent_id, r.result,
             r.result_type, r.created_at, r.started_at, r.finished_at, r.executions)
            for r in recs
        ]
        started = time.perf_counter()
        async with pool.acquire() as conn:
            for i in range(0, n, 5000):
                await conn.executemany(sql, rows[i : i + 5000])
        baseline = n / (time.perf_counter() - started)
        return batched, baseline
    finally:
        conn = await asyncpg.connect(dsn)
        await conn.execute(f'DROP SCHEMA "{schema}" CASCADE')
        await conn.close()
        await store.close()


async def key_bytes(r: Redis) -> int:
    """Bytes the server accounts to every key (``MEMORY USAGE``, all samples)."""
    total = 0
    async for k in r.scan_iter(count=5000):
        total += int(await r.memory_usage(k, samples=0) or 0)
    return total


async def bench_memory(n: int, retention: int) -> tuple[float, float, float, float]:
    server, url, _directory = start_server()
    await wait_ready(url)
    r = Redis.from_url(url)
    prefix = "bh"
    history = HistorySettings(retention=retention)
    try:
        agent_rt = RedisRuntime(settings=RedisSettings.from_dsn(url), prefix=prefix,
                                history=history)
        queen = RedisRuntime(settings=RedisSettings.from_dsn(url), prefix=prefix, history=history)
        await queen.start()
        await agent_rt.register(SoakAgent(agent_id="a1", concurrency=100))
        # Warm-up, then let its records expire: the baseline holds only live structures.
        await asyncio.gather(*(queen.send(payload(i), sender="b") for i in range(200)))
        await asyncio.sleep(retention + 1.5)
        await r.execute_command("MEMORY", "PURGE")
        before = int((await r.info("memory"))["used_memory"])
        keys_before = await key_bytes(r)
        for i in range(0, n, 500):
            got = await asyncio.gather(
                *(queen.send(payload(j), sender="b") for j in range(i, min(n, i + 500)))
            )
            assert got == [expected(j) for j in range(i, min(n, i + 500))]
        within = (int((await r.info("memory"))["used_memory"]) - before) / n
        # One retention later, and past the reaper's stream trim (every 30 s).
        await asyncio.sleep(max(retention + 1, 31))
        await r.execute_command("MEMORY", "PURGE")
        after = (int((await r.info("memory"))["used_memory"]) - before) / n
        keys_after = (await key_bytes(r) - keys_before) / n
        # Live work: tasks queued while no agent reads.
        await agent_rt.stop()
        await r.execute_command("MEMORY", "PURGE")
        base = int((await r.info("memory"))["used_memory"])
        from swarm.envelopes import task_envelope

        for i in range(0, n, 1000):
            await asyncio.gather(*(
                queen.submit(task_envelope(queen.codec, payload(j), "b", 3,
                                           reply_to=queen.node_id))
                for j in range(i, min(n, i + 1000))
            ))
        live = (int((await r.info("memory"))["used_memory"]) - base) / n
        await queen.stop(drain=False)
        return within, after, keys_after, live
    finally:
        await r.aclose()
        server.terminate()
        server.wait()


async def main_async(args: argparse.Namespace) -> None:
    configure_logging(level="warning")
    if args.postgres:
        batched, baseline = await bench_writes(args.postgres, args.records)
        print(f"history writes, {args.records} finished records:")
        print(f"  HistoryWriter (batches of 5000, COPY)     {batched:10.0f} records/s")
        print(f"  baseline: executemany of one-row INSERTs  {baseline:10.0f} records/s")
        print(f"  ratio: {batched / baseline:.2f}x")
    within, after, keys_after, live = await bench_memory(args.tasks, args.retention)
    print(f"Redis memory per task ({args.tasks} work-unit tasks, retention {args.retention} s):")
    print(f"  finished, within the retention   {within:8.0f} B")
    print(f"  finished, after the retention    {after:8.0f} B used_memory, "
          f"{keys_after:.1f} B in keys (MEMORY USAGE)")
    print(f"  live (queued, no agent)          {live:8.0f} B")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--postgres", default=None, help="PostgreSQL DSN for the write benchmark")
    p.add_argument("--records", type=int, default=200_000)
    p.add_argument("--tasks", type=int, default=20_000)
    p.add_argument("--retention", type=int, default=5)
    asyncio.run(main_async(p.parse_args()))


if __name__ == "__main__":
    main()
