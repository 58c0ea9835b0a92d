"""The Redis hot tier coalesces concurrent operations into few multi-key commands."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from memory import Memory, RedisHotTier
from swarm.errors import TransportError

pytestmark = pytest.mark.integration


class CountingRedis:
    """Passes through to a real client, counting pipelines and their commands."""

    def __init__(self, real: Any) -> None:
        self.real = real
        self.pipelines = 0
        self.commands = 0

    def pipeline(self, *, transaction: bool) -> Any:
        pipe = self.real.pipeline(transaction=transaction)
        execute = pipe.execute

        async def counted(**kw: Any) -> Any:
            self.pipelines += 1
            self.commands += len(pipe.command_stack)
            return await execute(**kw)

        pipe.execute = counted
        return pipe

    async def script_load(self, lua: str) -> Any:
        return await self.real.script_load(lua)

    def reset(self) -> None:
        self.pipelines = self.commands = 0


async def test_concurrent_gets_and_puts_share_one_command_each_and_reach_their_callers(
    redis_client: Any, redis_prefix: str
) -> None:
    spy = CountingRedis(redis_client)
    hot = RedisHotTier(redis=spy, prefix=redis_prefix, ttl=120)
    try:
        memories = [Memory(id=f"m{i}", namespace=f"ns{i}", content=f"c{i}") for i in range(200)]
        await asyncio.gather(*(hot.put(m) for m in memories))
        # One put_many, plus one retry if this Redis had not seen the scripts yet.
        assert spy.pipelines <= 2 and spy.commands <= 2
        assert await redis_client.hget(hot.key("m7"), "namespace") == b"ns7"
        assert 0 < await redis_client.ttl(hot.key("m7")) <= 120

        spy.reset()
        got = await asyncio.gather(*(hot.get(f"m{i}") for i in range(200)), hot.get("absent"))
        assert (spy.pipelines, spy.commands) == (1, 1)
        assert [g.content if g else None for g in got] == [f"c{i}" for i in range(200)] + [None]
    finally:
        await hot.close()


async def test_a_batch_keeps_the_order_of_operations_on_one_key(
    redis_client: Any, redis_prefix: str
) -> None:
    hot = RedisHotTier(redis=redis_client, prefix=redis_prefix, ttl=120)
    try:
        await asyncio.gather(*(hot.put(Memory(id=i, namespace="n", content="old")) for i in "abc"))
        got = await asyncio.gather(
            hot.put(Memory(id="a", namespace="n", content="new")),
            hot.get("a"),  # after the put: sees it
            hot.get("b"),  # before the put: does not
            hot.put(Memory(id="b", namespace="n", content="new")),
            hot.delete("c"),
            hot.get("c"),
        )
        assert [g.content if isinstance(g, Memory) else g for g in got] == [
            None, "new", "old", None, None, None
        ]
        assert (await hot.get("b")) == Memory(id="b", namespace="n", content="new")
    finally:
        await hot.close()


async def test_a_read_in_a_batch_refreshes_only_hits_and_one_bad_key_fails_only_its_caller(
    redis_client: Any, redis_prefix: str
) -> None:
    hot = RedisHotTier(redis=redis_client, prefix=redis_prefix, ttl=120)
    try:
        await hot.put(Memory(id="hit", namespace="n", content="x"))
        await redis_client.expire(hot.key("hit"), 5)
        await redis_client.set(hot.key("foreign"), "not a hash")
        got = await asyncio.gather(
            hot.get("hit"),
            hot.get("foreign"),
            hot.put(Memory(id="foreign", namespace="n", content="y")),
            hot.get("miss"),
            return_exceptions=True,
        )
        assert isinstance(got[0], Memory) and got[0].content == "x"
        assert isinstance(got[1], TransportError) and "WRONGTYPE" in str(got[1])
        assert isinstance(got[2], TransportError) and "WRONGTYPE" in str(got[2])
        assert got[3] is None
        assert 5 < await redis_client.ttl(hot.key("hit")) <= 120
        assert await redis_client.exists(hot.key("miss")) == 0
        assert await redis_client.ttl(hot.key("foreign")) == -1  # left as it was
    finally:
        await hot.close()


async def test_a_corrupt_cached_value_reads_as_a_miss_beside_good_ones(
    redis_client: Any, redis_prefix: str
) -> None:
    hot = RedisHotTier(redis=redis_client, prefix=redis_prefix, ttl=120)
    try:
        await hot.put(Memory(id="good", namespace="n", content="x"))
        await redis_client.hset(hot.key("bad"), "data", b"{not json")
        got = await asyncio.gather(hot.get("good"), hot.get("bad"), hot.get("good"))
        assert [g.content if g else None for g in got] == ["x", None, "x"]
    finally:
        await hot.close()


async def test_a_plain_client_sends_each_batch_as_one_write_and_reads_every_reply(
    redis_client: Any, redis_prefix: str
) -> None:
    # On the fast path a plain client's batches bypass redis-py's pipeline (packed):
    # still one write per batch, one command per kind, and any decoding setting.
    pool = redis_client.connection_pool
    writes: list[bytes] = []
    real_get = pool.get_connection

    async def counted_get() -> Any:
        conn = await real_get()
        if "send_packed_command" in vars(conn):  # a pooled connection, already wrapped
            return conn
        send = conn.send_packed_command

        async def counted_send(payload: Any, *a: Any, **kw: Any) -> Any:
            if isinstance(payload, bytes):  # the tier's; redis-py's own come as lists
                writes.append(payload)
            return await send(payload, *a, **kw)

        conn.send_packed_command = counted_send
        return conn

    pool.get_connection = counted_get
    texts = redis_client.__class__.from_url(
        f"redis://{pool.connection_kwargs['host']}:{pool.connection_kwargs['port']}"
        f"/{pool.connection_kwargs.get('db', 0)}",
        decode_responses=True,
    )
    hot = RedisHotTier(redis=redis_client, prefix=redis_prefix, ttl=120, fast=True)
    other = RedisHotTier(redis=texts, prefix=redis_prefix, ttl=120, fast=True)
    try:
        memories = [
            Memory(id=f"m{i}", namespace="n", content=f"c{i} é", tags=("t",)) for i in range(150)
        ]
        await asyncio.gather(*(hot.put(m) for m in memories))
        # One write, plus one retry if this Redis had not seen the scripts yet.
        assert 1 <= len(writes) <= 2 and writes[-1].count(b"EVALSHA") == 1
        writes.clear()
        got = await asyncio.gather(*(hot.get(f"m{i}") for i in range(150)), hot.get("absent"))
        assert len(writes) == 1 and writes[0].count(b"EVALSHA") == 1
        assert got == [*memories, None]
        writes.clear()
        await asyncio.gather(hot.delete("m0"), hot.delete("m1"), hot.get("m2"))
        assert len(writes) == 1 and writes[0].count(b"DEL") == 1
        assert await redis_client.exists(hot.key("m0"), hot.key("m1")) == 0
        assert await other.get("m2") == memories[2]  # a decoding client reads them too
    finally:
        pool.get_connection = real_get
        await hot.close()
        await other.close()
        await texts.aclose()


async def test_a_batch_after_its_connection_was_killed_reconnects(
    redis_client: Any, redis_prefix: str
) -> None:
    hot = RedisHotTier(redis=redis_client, prefix=redis_prefix, ttl=120)
    try:
        await hot.put(Memory(id="a", namespace="n", content="x"))
        # Kill the pooled connection the batch used (not the test's own one).
        pool = redis_client.connection_pool
        conn = await pool.get_connection()
        try:
            await conn.send_command("CLIENT", "ID")
            victim = await conn.read_response()
        finally:
            await pool.release(conn)
        kw = pool.connection_kwargs
        admin = redis_client.__class__(host=kw["host"], port=kw["port"], db=kw.get("db", 0))
        try:
            assert await admin.execute_command("CLIENT", "KILL", "ID", victim) == 1
        finally:
            await admin.aclose()
        # The client's retry policy reconnects, or the batch fails alone and the next one
        # reconnects: either way the cache keeps working, and nothing is left half-read.
        try:
            first = await hot.get("a")
        except TransportError:
            first = await hot.get("a")
        assert first == Memory(id="a", namespace="n", content="x")
        got = await asyncio.gather(*(hot.get("a") for _ in range(20)), hot.get("missing"))
        assert got == [first] * 20 + [None]
    finally:
        await hot.close()
