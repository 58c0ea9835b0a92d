"""Redis lease election and epoch-fenced writes (real Redis)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from discovery import FencedWriter, LeaderElector, RedisLease
from discovery.redis_lease import FENCED_REFUSED
from swarm.constants import fenced_key, leader_epoch_key, leader_lease_key
from swarm.errors import FencingError
from tests.discovery.util import eventually

pytestmark = pytest.mark.integration


def test_keys_share_the_leadership_hash_tag() -> None:
    tags = {k.split("{")[1].split("}")[0] for k in (
        leader_lease_key("queen"), leader_epoch_key("queen"), fenced_key("queen", "ledger:t1"))}
    assert tags == {"leader-queen"}


async def test_concurrent_candidates_one_winner(redis_env: tuple[Any, str]) -> None:
    client, prefix = redis_env
    lease = RedisLease(redis=client, prefix=prefix)
    results = await asyncio.gather(*(lease.acquire("queen", f"q{i}", ttl=5) for i in range(10)))
    winners = [r for r in results if r is not None]
    assert len(winners) == 1 and winners[0].epoch == 1
    assert await client.pttl(leader_lease_key("queen", prefix)) > 4000


async def test_stale_epoch_write_is_refused_and_counted(redis_env: tuple[Any, str]) -> None:
    client, prefix = redis_env
    lease = RedisLease(redis=client, prefix=prefix)
    writer = FencedWriter(redis=client, name="queen", prefix=prefix)
    key = fenced_key("queen", "ledger:t1", prefix)
    old = await lease.acquire("queen", "qa", ttl=0.2)
    assert old is not None
    await writer.hset(key, {"state": "running", "by": "qa"}, epoch=old.epoch)

    new: Any = None

    async def taken() -> bool:
        nonlocal new
        new = await lease.acquire("queen", "qb", ttl=5)
        return new is not None

    await eventually(taken, within=3)
    assert new.epoch == old.epoch + 1
    refused = FENCED_REFUSED.labels(name="queen")._value.get()
    with pytest.raises(FencingError, match=f"epoch {old.epoch} refused.*epoch {new.epoch}"):
        await writer.hset(key, {"state": "done", "by": "qa"}, epoch=old.epoch)
    assert FENCED_REFUSED.labels(name="queen")._value.get() == refused + 1
    assert await client.hgetall(key) == {b"state": b"running", b"by": b"qa"}
    await writer.hset(key, {"state": "done", "by": "qb"}, epoch=new.epoch)
    assert await client.hget(key, "by") == b"qb"


async def test_external_epochs_raise_the_fence(redis_env: tuple[Any, str]) -> None:
    client, prefix = redis_env
    writer = FencedWriter(redis=client, name="queen", prefix=prefix)
    key = fenced_key("queen", "x", prefix)
    await writer.hset(key, {"v": 1}, epoch=6)  # a Consul leader's epoch, first write
    assert await writer.advance(7) == 7  # its successor takes over
    assert await writer.advance(3) == 7
    with pytest.raises(FencingError):
        await writer.hset(key, {"v": 2}, epoch=6)
    await writer.hset(key, {"v": 3}, epoch=7)
    assert await client.hget(key, "v") == b"3"


async def test_elector_on_redis_fails_over(redis_env: tuple[Any, str]) -> None:
    client, prefix = redis_env
    electors = [
        LeaderElector(election=RedisLease(redis=client, prefix=prefix), name="queen",
                      holder=f"q{i}", ttl=0.3, retry_interval=0.05)
        for i in range(2)
    ]
    for e in electors:
        await e.start()

    async def one() -> bool:
        return sum(e.leading for e in electors) == 1

    await eventually(one, within=3)
    leader, other = sorted(electors, key=lambda e: not e.leading)
    epoch = leader.epoch
    await leader.close()  # graceful: releases, so the other takes over at once
    await other.wait_leading(timeout=2)
    assert other.epoch == epoch + 1
    await other.close()


async def test_execute_other_write_commands(redis_env: tuple[Any, str]) -> None:
    client, prefix = redis_env
    writer = FencedWriter(redis=client, name="queen", prefix=prefix)
    key = fenced_key("queen", "dispatched", prefix)
    assert await writer.execute("hsetnx", key, "t1", "q1:2", epoch=2) == 1
    assert await writer.execute("HSETNX", key, "t1", "q1:2", epoch=2) == 0
    assert await writer.execute("RPUSH", fenced_key("queen", "log", prefix), "t1", epoch=2) == 1
    with pytest.raises(FencingError):
        await writer.execute("HSETNX", key, "t2", "q0:1", epoch=1)
    assert await client.hkeys(key) == [b"t1"]
    with pytest.raises(ValueError, match="not a fenced write"):
        await writer.execute("FLUSHALL", key, epoch=3)


async def test_elector_steps_down_when_the_fence_cannot_be_raised(
    redis_env: tuple[Any, str],
) -> None:
    client, prefix = redis_env
    lease = RedisLease(redis=client, prefix=prefix)
    calls = 0

    async def broken_fence(_: Any) -> None:
        nonlocal calls
        calls += 1
        raise ConnectionError("redis gone")

    elector = LeaderElector(election=lease, name="queen", holder="q1", ttl=5,
                            retry_interval=0.05, on_elected=broken_fence)
    await elector.start()

    async def retried() -> bool:
        return calls >= 2

    await eventually(retried, within=3)
    assert not elector.leading
    await elector.close()
    # It gave each lease back rather than sitting on it unfenced.
    assert await lease.acquire("queen", "q2", ttl=5) is not None
