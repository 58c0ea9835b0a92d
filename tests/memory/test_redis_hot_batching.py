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
