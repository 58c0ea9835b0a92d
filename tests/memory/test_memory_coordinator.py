"""The coordinator on its embedded default tiers, with the in-process runtime."""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from memory import (
    ArchiveTier,
    Memory,
    MemoryCoordinator,
    MemoryFilter,
    MemoryKind,
    MemorySettings,
    export_memories,
    import_memories,
)
from swarm import Agent, Message, Swarm, TaskContext, handler
from swarm.errors import MemoryValidationError
from swarm.inprocess import InProcessRuntime

NO_JOBS = MemorySettings(
    synthesis_interval=None, tiering_interval=None, index_refresh_interval=None
)


class Learn(Message, frozen=True, kw_only=True):
    fact: str


class Scout(Agent):
    @handler
    async def learn(self, msg: Learn, ctx: TaskContext) -> str:
        mid: str = await ctx.memory.store(
            namespace="research",
            content=msg.fact,
            author=ctx.agent.agent_id,
            task_id=ctx.task_id,
        )
        return mid


async def eventually(predicate: Callable[[], bool], within: float = 5.0) -> None:
    """Poll a condition that has no event to wait on, with a deadline."""
    async with asyncio.timeout(within):
        while True:
            if predicate():
                return
            await asyncio.sleep(0.001)


async def test_store_get_recall_forget_round_trip() -> None:
    async with MemoryCoordinator(settings=NO_JOBS) as mem:
        assert mem.durable is False
        mid = await mem.store(
            namespace="research.tge",
            content="Apollo token unlock is on 1 May",
            kind="finding",
            author="scout-1",
            task_id="t1",
            trace_id="tr1",
            tags=["tge", "apollo"],
            confidence=0.7,
            ttl=3600,
        )
        got = await mem.get(mid)
        assert got is not None
        assert (got.namespace, got.author, got.task_id, got.trace_id) == (
            "research.tge",
            "scout-1",
            "t1",
            "tr1",
        )
        assert got.tags == ("apollo", "tge") and got.confidence == 0.7
        assert got.expires_at is not None and got.vector == b""
        await mem.store(namespace="ops", content="deploy pipeline green", author="ops")
        hits = await mem.recall("when does apollo unlock", k=5)
        assert hits[0].memory.id == mid
        assert await mem.forget(mid) is True
        assert await mem.get(mid) is None
        assert await mem.forget(mid) is False
        assert mid not in {h.memory.id for h in await mem.recall("apollo unlock")}


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"namespace": "Bad NS", "content": "x"}, "namespace"),
        ({"namespace": "n", "content": "x" * 200}, "exceeds the limit"),
        ({"namespace": "n", "content": "x", "confidence": math.nan}, "confidence"),
        ({"namespace": "n", "content": "x", "confidence": math.inf}, "confidence"),
        ({"namespace": "n", "content": "x", "kind": "rumour"}, "kind"),
        ({"namespace": "n", "content": "x", "ttl": -1}, "ttl"),
    ],
)
async def test_bad_input_raises_and_writes_nothing(kwargs: dict[str, object], match: str) -> None:
    settings = MemorySettings(max_content_bytes=100, synthesis_interval=None, tiering_interval=None)
    async with MemoryCoordinator(settings=settings) as mem:
        with pytest.raises(MemoryValidationError, match=match):
            await mem.store(**kwargs)  # type: ignore[arg-type]
        assert len(mem.index) == 0
        assert await mem.catch_up(since=None) == []


async def test_expired_memories_are_not_returned() -> None:
    async with MemoryCoordinator(settings=NO_JOBS) as mem:
        mid = await mem.store(namespace="n", content="short lived fact", ttl=0.05)
        keep = await mem.store(namespace="n", content="long lived fact")
        report = await mem.tier_once(now=time.time() + 1)
        assert report.expired == 1
        assert await mem.get(mid) is None
        assert [h.memory.id for h in await mem.recall("lived fact")] == [keep]


async def test_feedback_reorders_recall_and_decays() -> None:
    settings = MemorySettings(
        synthesis_interval=None, tiering_interval=None, feedback_half_life=3600.0
    )
    async with MemoryCoordinator(settings=settings) as mem:
        first = await mem.store(namespace="n", content="apollo unlock date is may first")
        second = await mem.store(namespace="n", content="apollo unlock date is may 1st")
        before = [h.memory.id for h in await mem.recall("apollo unlock date is may first", k=2)]
        assert before == [first, second]
        assert await mem.feedback(second, useful=True) == 1.0
        assert await mem.feedback(second, useful=True) == pytest.approx(2.0, abs=1e-3)
        await mem.feedback(first, useful=False)
        after = [h.memory.id for h in await mem.recall("apollo unlock date is may first", k=2)]
        assert after == [second, first]
        with pytest.raises(KeyError):
            await mem.feedback("nope", useful=True)


async def test_cross_pollination_two_subscribers_and_offline_catch_up() -> None:
    runtime = InProcessRuntime()
    await runtime.start()
    try:
        async with (
            MemoryCoordinator(settings=NO_JOBS, runtime=runtime) as writer,
            MemoryCoordinator(settings=NO_JOBS, runtime=runtime, warm=writer.warm) as reader,
        ):
            got_a: list[Memory] = []
            got_b: list[Memory] = []
            done = asyncio.Event()

            async def on_a(m: Memory) -> None:
                got_a.append(m)

            async def on_b(m: Memory) -> None:
                got_b.append(m)
                if len(got_b) == 2:
                    done.set()

            sub_a = reader.subscribe(on_a, filters=MemoryFilter(namespaces=("research",)), name="a")
            reader.subscribe(on_b, filters=MemoryFilter(tags=("tge",)), name="b")
            # The third agent was online once, then went away.
            offline = writer.subscribe(on_a, name="c")
            cursor = offline.cursor
            await offline.close()

            ids = [
                await writer.store(
                    namespace="research.tge", content="apollo tge may", tags=["tge"], author="w"
                ),
                await writer.store(namespace="ops", content="unrelated deploy", author="w"),
                await writer.store(
                    namespace="research.defi",
                    content="zeus tge june",
                    tags=["tge", "defi"],
                    author="w",
                ),
            ]
            async with asyncio.timeout(5):
                await done.wait()
            assert [m.id for m in got_a] == [ids[0], ids[2]]
            assert [m.id for m in got_b] == [ids[0], ids[2]]
            assert sub_a.cursor == ids[2]
            # The reader indexed what the writer stored, from the notices alone.
            assert {h.memory.id for h in await reader.recall("tge")} >= {ids[0], ids[2]}
            missed = await reader.catch_up(since=cursor)
            assert [m.id for m in missed] == ids
            later = await reader.catch_up(since=ids[0], filters=MemoryFilter(tags=("tge",)))
            assert [m.id for m in later] == [ids[2]]
    finally:
        await runtime.stop()


async def test_synthesis_links_its_sources() -> None:
    async with MemoryCoordinator(settings=NO_JOBS) as mem:
        a = await mem.store(
            namespace="research",
            content="Apollo unlock is in May. Big cliff.",
            tags=["apollo"],
            confidence=0.8,
        )
        b = await mem.store(
            namespace="research",
            content="Apollo unlock is 20% of supply.",
            tags=["apollo"],
            confidence=0.6,
        )
        await mem.store(namespace="research", content="Zeus is unrelated.", tags=["zeus"])
        ids = await mem.synthesize_once()
        assert len(ids) == 1
        synth = await mem.get(ids[0])
        assert synth is not None and synth.kind is MemoryKind.SYNTHESIS
        assert synth.sources == (a, b)
        assert synth.tags == ("apollo",) and synth.confidence == pytest.approx(0.7)
        assert "Apollo unlock" in synth.content
        # A second run sees no new findings (the synthesis itself is not a finding).
        assert await mem.synthesize_once() == []


async def test_synthesis_job_runs_periodically() -> None:
    settings = MemorySettings(synthesis_interval=0.05, tiering_interval=None)
    async with MemoryCoordinator(settings=settings) as mem:
        made: asyncio.Future[Memory] = asyncio.get_running_loop().create_future()

        async def on_synthesis(m: Memory) -> None:
            if not made.done():
                made.set_result(m)

        mem.subscribe(on_synthesis, filters=MemoryFilter(kinds=(MemoryKind.SYNTHESIS,)))
        ids = [
            await mem.store(namespace="n", content=text, tags=["apollo"])
            for text in ("apollo unlock may", "apollo unlock cliff")
        ]
        async with asyncio.timeout(5):
            synth = await made
        assert synth.sources == tuple(ids) and synth.author == "memory.synthesizer"
    assert len(mem._tasks) == 0


async def test_tiering_archives_stale_and_backfills_on_get(tmp_path: Path) -> None:
    settings = MemorySettings(
        synthesis_interval=None, tiering_interval=None, archive_after=60.0, hot_capacity=1
    )
    async with MemoryCoordinator(settings=settings, archive=ArchiveTier(directory=tmp_path)) as mem:
        old = await mem.store(namespace="n", content="ancient lore")
        fresh = await mem.store(namespace="n", content="fresh news")
        report = await mem.tier_once(now=time.time() + 3600)
        assert report.archived == 2
        assert await mem.warm.get(old) is None and len(mem.index) == 0
        assert mem.archive is not None and len(mem.archive) == 2
        got = await mem.get(old)  # cold -> warm -> hot
        assert got is not None and got.content == "ancient lore"
        assert await mem.warm.get(old) is not None
        assert await mem.hot.get(old) is not None
        assert [h.memory.id for h in await mem.recall("ancient lore", k=1)] == [old]
        assert await mem.forget(fresh) and await mem.get(fresh) is None


async def test_hot_miss_backfills_from_warm() -> None:
    settings = MemorySettings(synthesis_interval=None, tiering_interval=None, hot_capacity=1)
    async with MemoryCoordinator(settings=settings) as mem:
        a = await mem.store(namespace="n", content="first")
        await mem.store(namespace="n", content="second")
        assert await mem.hot.get(a) is None  # evicted by the LRU
        assert (await mem.get(a)) is not None
        assert await mem.hot.get(a) is not None


async def test_export_import_equality_and_restore_drill(tmp_path: Path) -> None:
    path = tmp_path / "backup.jsonl.gz"
    async with MemoryCoordinator(settings=NO_JOBS) as a:
        for i in range(300):
            await a.store(
                namespace=f"ns{i % 3}",
                content=f"memory number {i}",
                tags=[f"t{i % 5}"],
                confidence=(i % 10) / 10,
            )
        await a.feedback((await a.catch_up(since=None, limit=1))[0].id, useful=True)
        exported = await export_memories(a, path)
        originals = await a.warm.scan(after=None, limit=10_000)
    assert exported.count == 300 and exported.size > 0
    started = time.perf_counter()
    async with MemoryCoordinator(settings=NO_JOBS) as b:
        report = await import_memories(b, path)
        drill = time.perf_counter() - started
        restored = await b.warm.scan(after=None, limit=10_000)
        assert report.count == report.added == 300
        assert restored == originals
        assert len(b.index) == 300
        assert (await b.recall("memory number 42", k=1))[0].memory.content == "memory number 42"
        again = await import_memories(b, path)
        assert again.added == 0
    print(f"restore drill: 300 memories in {drill * 1000:.1f} ms")
    assert drill < 10


async def test_import_rejects_a_corrupt_backup(tmp_path: Path) -> None:
    import gzip

    path = tmp_path / "bad.jsonl.gz"
    with gzip.open(path, "wb") as f:
        f.write(
            b'{"format":"queenswarm.backup","version":1}\n{"id":"1","namespace":"BAD","content":"x"}\n'
        )
    async with MemoryCoordinator(settings=NO_JOBS) as mem:
        with pytest.raises(MemoryValidationError, match="namespace"):
            await import_memories(mem, path)
        assert len(mem.index) == 0


async def test_changes_propagate_to_other_nodes_and_refresh_repairs_lost_notices() -> None:
    runtime = InProcessRuntime()
    await runtime.start()
    try:
        async with (
            MemoryCoordinator(settings=NO_JOBS, runtime=runtime) as a,
            MemoryCoordinator(settings=NO_JOBS, runtime=runtime, warm=a.warm) as b,
            MemoryCoordinator(settings=NO_JOBS, warm=a.warm) as deaf,
        ):
            seen = asyncio.Event()

            async def on_b(m: Memory) -> None:
                seen.set()

            b.subscribe(on_b)
            x = await a.store(namespace="n", content="apollo unlock may first")
            y = await a.store(namespace="n", content="apollo unlock may 1st")
            async with asyncio.timeout(5):
                await seen.wait()
            await eventually(lambda: len(b.index) == 2)
            await a.feedback(y, useful=True)
            await a.forget(x)
            await eventually(lambda: x not in b.index)
            await eventually(lambda: getattr(b.index.get(y), "score", 0) == 1.0)
            # ``deaf`` has no runtime: it heard nothing, and its refresh reads the store.
            assert y not in deaf.index
            assert await deaf.refresh_index() == 1
            assert [h.memory.id for h in await deaf.recall("apollo unlock")] == [y]
    finally:
        await runtime.stop()


async def test_agents_use_memory_through_their_context() -> None:
    runtime = InProcessRuntime()
    async with MemoryCoordinator(settings=NO_JOBS, runtime=runtime) as mem:
        runtime.memory = mem
        async with Swarm(agents=[Scout()], runtime=runtime) as swarm:
            handle = await swarm.submit(Learn(fact="apollo unlocks in may"))
            mid = await handle.result(timeout=5)
    got = await mem.warm.get(mid)
    assert got is not None and got.task_id == handle.task_id and got.author


def test_rejected_input_is_counted() -> None:
    from swarm.metrics import REJECTED

    counter = REJECTED.labels(reason="memory_invalid")
    before = counter._value.get()

    async def bad() -> None:
        async with MemoryCoordinator(settings=NO_JOBS) as mem:
            with pytest.raises(MemoryValidationError):
                await mem.store(namespace="n", content="x", confidence=math.nan)

    asyncio.run(bad())
    assert counter._value.get() == before + 1


async def test_a_down_redis_hot_tier_degrades_to_the_warm_tier() -> None:
    import redis.asyncio as aioredis

    from memory import RedisHotTier
    from swarm.errors import TransportError

    client = aioredis.Redis.from_url("redis://127.0.0.1:9/0", socket_connect_timeout=0.5)
    hot = RedisHotTier(redis=client, prefix="memtest-down")
    try:
        with pytest.raises(TransportError):
            await hot.get("x")
        async with MemoryCoordinator(settings=NO_JOBS, hot=hot) as mem:
            mid = await mem.store(namespace="n", content="still stored")  # cache miss only
            got = await mem.get(mid)
            assert got is not None and got.content == "still stored"
    finally:
        await client.aclose()


async def test_redis_hot_tier_reports_any_failure_instead_of_hanging() -> None:
    from memory import RedisHotTier
    from swarm.errors import TransportError

    class Broken:
        def pipeline(self, *, transaction: bool) -> None:
            raise ValueError("unexpected client failure")

    hot = RedisHotTier(redis=Broken())
    try:
        async with asyncio.timeout(5):
            with pytest.raises(TransportError, match="unexpected client failure"):
                await hot.get("x")
            with pytest.raises(TransportError):  # and the flusher is still alive
                await hot.put(Memory(id="x", namespace="n", content="c"))
    finally:
        await hot.close()
