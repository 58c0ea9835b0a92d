"""The coordinator on real servers: PostgreSQL warm tier, Redis hot tier."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest

from memory import (
    ArchiveTier,
    Memory,
    MemoryCoordinator,
    MemoryFilter,
    MemoryKind,
    MemorySettings,
    PostgresSettings,
    PostgresWarmTier,
    RedisHotTier,
    export_memories,
    import_memories,
)
from memory.schema import apply_migrations, load_migrations
from swarm.constants import memory_key
from swarm.errors import MemoryUnavailable, TransportError
from swarm.inprocess import InProcessRuntime
from tests.memory.memory_servers import POSTGRES_DSN

pytestmark = pytest.mark.integration


def _settings(schema: str, **kw: Any) -> MemorySettings:
    return MemorySettings.from_dsn(
        f"{POSTGRES_DSN}?schema={schema}", synthesis_interval=None, tiering_interval=None, **kw
    )


async def test_migrations_applied_twice_are_a_no_op(pg_pool: Any, pg_schema: str) -> None:
    versions = [m.version for m in load_migrations()]
    async with pg_pool.acquire() as conn:
        assert await apply_migrations(conn, pg_schema) == versions
        assert await apply_migrations(conn, pg_schema) == []
        rows = await conn.fetch(f'SELECT version FROM "{pg_schema}".schema_migrations')
    assert sorted(r["version"] for r in rows) == versions
    # Concurrent starters serialise on the advisory lock: exactly one applies nothing new.
    other = f"{pg_schema}_b"
    try:
        async with pg_pool.acquire() as c1, pg_pool.acquire() as c2:
            results = await asyncio.gather(apply_migrations(c1, other), apply_migrations(c2, other))
        assert sorted(results, key=len) == [[], versions]
    finally:
        await pg_pool.execute(f'DROP SCHEMA IF EXISTS "{other}" CASCADE')


async def test_postgres_round_trip_and_batched_concurrent_stores(
    pg_pool: Any, pg_schema: str
) -> None:
    settings = _settings(pg_schema)
    async with MemoryCoordinator(settings=settings, pool=pg_pool) as mem:
        assert mem.durable is True
        ids = await asyncio.gather(*(
            mem.store(namespace="bulk", content=f"fact number {i}", author=f"a{i % 4}",
                      tags=["bulk"], confidence=0.5, task_id=f"t{i}", trace_id="tr")
            for i in range(500)
        ))
        assert len(set(ids)) == 500
        count = await pg_pool.fetchval(f'SELECT count(*) FROM "{pg_schema}".memories')
        assert count == 500
        one = await mem.warm.get(ids[7])
        assert one is not None and one.content == "fact number 7" and one.task_id == "t7"
        assert len(one.vector) == mem.embedder.dim * 4
    # A new coordinator on the same schema reloads the index from the vectors in PostgreSQL.
    async with MemoryCoordinator(settings=settings, pool=pg_pool) as again:
        assert len(again.index) == 500
        hits = await again.recall("fact number 123", k=1)
        assert hits[0].memory.content == "fact number 123"
        assert await again.forget(ids[0])
        assert await pg_pool.fetchval(
            f'SELECT count(*) FROM "{pg_schema}".memories WHERE id = $1', ids[0]
        ) == 0


async def test_feedback_persists_and_reorders(pg_pool: Any, pg_schema: str) -> None:
    async with MemoryCoordinator(settings=_settings(pg_schema), pool=pg_pool) as mem:
        a = await mem.store(namespace="n", content="apollo unlock date may first")
        b = await mem.store(namespace="n", content="apollo unlock date may 1st")
        q = "apollo unlock date may first"
        assert [h.memory.id for h in await mem.recall(q, k=2)] == [a, b]
        await mem.feedback(b, useful=True)
        await mem.feedback(a, useful=False)
        assert [h.memory.id for h in await mem.recall(q, k=2)] == [b, a]
    async with MemoryCoordinator(settings=_settings(pg_schema), pool=pg_pool) as mem2:
        assert [h.memory.id for h in await mem2.recall(q, k=2)] == [b, a]


async def test_redis_hot_tier_ttl_and_backfill(
    pg_pool: Any, pg_schema: str, redis_client: Any, redis_prefix: str
) -> None:
    hot = RedisHotTier(redis=redis_client, prefix=redis_prefix, ttl=120)
    async with MemoryCoordinator(settings=_settings(pg_schema), pool=pg_pool, hot=hot) as mem:
        mid = await mem.store(namespace="n", content="cached in redis", tags=["x"])
        key = memory_key(mid, redis_prefix)
        assert 0 < await redis_client.ttl(key) <= 120
        assert await redis_client.hget(key, "namespace") == b"n"
        cached = await hot.get(mid)
        assert cached is not None and cached.content == "cached in redis" and cached.vector == b""
        short = await mem.store(namespace="n", content="expires soon", ttl=5)
        assert 0 < await redis_client.ttl(memory_key(short, redis_prefix)) <= 5
        await redis_client.delete(key)  # as if it had expired
        got = await mem.get(mid)
        assert got is not None and got.id == mid
        assert await redis_client.exists(key) == 1  # backfilled from PostgreSQL


async def test_tiering_to_archive_and_backfill_from_cold(
    pg_pool: Any, pg_schema: str, redis_client: Any, redis_prefix: str, tmp_path: Path
) -> None:
    hot = RedisHotTier(redis=redis_client, prefix=redis_prefix, ttl=120)
    settings = _settings(pg_schema, archive_after=60.0)
    async with MemoryCoordinator(settings=settings, pool=pg_pool, hot=hot,
                                 archive=ArchiveTier(directory=tmp_path)) as mem:
        old = await mem.store(namespace="n", content="ancient lore")
        read = await mem.store(namespace="n", content="popular lore")
        assert await mem.get(read) is not None  # an access keeps it warm
        later = time.time() + 3600
        mem._accessed[read] = later
        report = await mem.tier_once(now=later + 1)
        assert report.archived == 1
        assert await mem.warm.get(old) is None and await mem.warm.get(read) is not None
        assert await redis_client.exists(memory_key(old, redis_prefix)) == 0
        got = await mem.get(old)
        assert got is not None and got.content == "ancient lore"
        assert await mem.warm.get(old) is not None  # restored into PostgreSQL
        assert await redis_client.exists(memory_key(old, redis_prefix)) == 1


async def test_cross_pollination_between_coordinators(pg_pool: Any, pg_schema: str) -> None:
    runtime = InProcessRuntime()
    await runtime.start()
    try:
        async with MemoryCoordinator(settings=_settings(pg_schema), pool=pg_pool,
                                     runtime=runtime) as writer, \
                MemoryCoordinator(settings=_settings(pg_schema), pool=pg_pool,
                                  runtime=runtime) as reader:
            inboxes: dict[str, list[str]] = {"a": [], "b": [], "c": []}
            arrived = {name: asyncio.Event() for name in inboxes}

            def collector(name: str, want: int) -> Any:
                async def cb(m: Memory) -> None:
                    inboxes[name].append(m.id)
                    if len(inboxes[name]) == want:
                        arrived[name].set()
                return cb

            # a and b on another node than the writer, c on the writer's node.
            reader.subscribe(collector("a", 3), filters=MemoryFilter(tags=("tge",)), name="a")
            reader.subscribe(collector("b", 3), filters=MemoryFilter(namespaces=("research",)),
                             name="b")
            sub_c = writer.subscribe(collector("c", 1), filters=MemoryFilter(tags=("tge",)),
                                     name="c")
            first = await writer.store(namespace="research", content="tge 0", tags=["tge"])
            async with asyncio.timeout(5):
                await arrived["c"].wait()
            await sub_c.close()  # c goes offline
            later = [await writer.store(namespace="research", content=f"tge {i}", tags=["tge"])
                     for i in (1, 2)]
            async with asyncio.timeout(5):
                await arrived["a"].wait()
                await arrived["b"].wait()
            assert inboxes["a"] == inboxes["b"] == [first, *later]
            assert inboxes["c"] == [first] and sub_c.cursor == first
            # c comes back and catches up from PostgreSQL, from its cursor.
            missed = await writer.catch_up(since=sub_c.cursor, filters=sub_c.flt)
            assert [m.id for m in missed] == later
    finally:
        await runtime.stop()


async def test_synthesis_on_postgres_links_sources(pg_pool: Any, pg_schema: str) -> None:
    async with MemoryCoordinator(settings=_settings(pg_schema), pool=pg_pool) as mem:
        src = [await mem.store(namespace="r", content=f"apollo unlock fact {i}.", tags=["apollo"])
               for i in range(3)]
        [sid] = await mem.synthesize_once()
        row = await pg_pool.fetchrow(
            f'SELECT kind, sources FROM "{pg_schema}".memories WHERE id = $1', sid
        )
        assert row["kind"] == MemoryKind.SYNTHESIS.value and list(row["sources"]) == src


async def test_export_import_between_schemas(pg_pool: Any, pg_schema: str, tmp_path: Path) -> None:
    path = tmp_path / "b.jsonl.gz"
    other = f"{pg_schema}_restore"
    try:
        async with MemoryCoordinator(settings=_settings(pg_schema), pool=pg_pool) as a:
            for i in range(200):
                await a.store(namespace="n", content=f"memory {i}", tags=["t"], ttl=3600)
            originals = await a.warm.scan(after=None, limit=1000)
            await export_memories(a, path)
        started = time.perf_counter()
        async with MemoryCoordinator(settings=_settings(other), pool=pg_pool) as b:
            report = await import_memories(b, path)
            elapsed = time.perf_counter() - started
            assert report.added == 200
            assert await b.warm.scan(after=None, limit=1000) == originals
        print(f"restore drill on PostgreSQL: 200 memories in {elapsed * 1000:.0f} ms")
    finally:
        await pg_pool.execute(f'DROP SCHEMA IF EXISTS "{other}" CASCADE')


async def test_postgres_down_makes_store_fail_loudly() -> None:
    settings = PostgresSettings.from_dsn("postgresql://postgres@127.0.0.1:9/test")
    tier = PostgresWarmTier(settings=settings)
    with pytest.raises(MemoryUnavailable):
        await tier.start()
    mem = MemoryCoordinator(warm=tier, settings=MemorySettings(synthesis_interval=None,
                                                               tiering_interval=None))
    with pytest.raises(MemoryUnavailable) as info:
        await mem.store(namespace="n", content="must not pretend")
    assert isinstance(info.value, TransportError)
    assert len(mem.index) == 0


async def test_one_node_synthesises_at_a_time_and_the_next_resumes(
    pg_pool: Any, pg_schema: str
) -> None:
    async with MemoryCoordinator(settings=_settings(pg_schema), pool=pg_pool) as a, \
            MemoryCoordinator(settings=_settings(pg_schema), pool=pg_pool) as b:
        for i in range(2):
            await a.store(namespace="r", content=f"apollo fact {i}", tags=["apollo"])
        # Overlapping runs: one holds the lock; sequential runs: the shared cursor.
        first, second = await asyncio.gather(a.synthesize_once(), b.synthesize_once())
        assert len(first + second) == 1
        # New findings: node b resumes from the shared cursor, not from its own start.
        for i in range(2):
            await b.store(namespace="r", content=f"zeus fact {i}", tags=["zeus"])
        later = await b.synthesize_once()
        assert len(later) == 1
        synth = await b.get(later[0])
        assert synth is not None and synth.tags == ("zeus",)
        assert await a.synthesize_once() == []
        rows = await pg_pool.fetch(
            f"SELECT id FROM \"{pg_schema}\".memories WHERE kind = 'synthesis'"
        )
        assert len(rows) == 2


async def test_start_fails_loudly_when_postgres_is_down() -> None:
    settings = MemorySettings.from_dsn("postgresql://postgres@127.0.0.1:9/test?schema=nowhere")
    mem = MemoryCoordinator(settings=settings)
    with pytest.raises(MemoryUnavailable, match="PostgreSQL unavailable"):
        async with mem:
            pytest.fail("must not start")
    assert mem.warm.durable and len(mem._tasks) == 0
