"""Queen HA: one epoch per leadership, whatever the election store and the fence remember.

Issue 17: the Consul election's epoch and the Redis fence are two counters. A
Queen elected by a fresh (or reset) Consul below the fence led but could
dispatch nothing. These tests run the real CLIs, and a served swarm whose
Consul KV is reset (or whose fence key is flushed) under it.
"""

from __future__ import annotations

import asyncio
import collections
import json
import os
import secrets
import signal
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, ClassVar

import aiohttp
import pytest
import redis.asyncio as aioredis
from prometheus_client import REGISTRY
from structlog.testing import capture_logs

from discovery import EpochReconciler, FencedWriter
from discovery.registry import Leadership
from swarm import Agent, Message, handler
from swarm.constants import leader_epoch_key
from swarm.errors import FencingError, LeadershipLost
from swarm.service import SwarmService
from swarm.settings import SwarmSettings
from tests.consul_server import FakeConsul
from tests.servers import require_redis

ROOT = Path(__file__).resolve().parents[2]
TTL = 1.5

pytestmark = pytest.mark.integration


@pytest.fixture(autouse=True)
def logs() -> Iterator[list[dict[str, Any]]]:
    """The log events of the test, kept in memory (a CLI test may have left
    structlog writing to a stream pytest has closed since)."""
    with capture_logs() as captured:
        yield captured


# -- the reconciler on its own -------------------------------------------------------


class _Fence:
    """A fencing store in memory: what FencedWriter does, without Redis."""

    name = "queen"

    def __init__(self, value: int = 0, *, racing: int = 0) -> None:
        self.value = value
        self.racing = racing  # another writer raises it this much past each advance

    async def current(self) -> int:
        return self.value

    async def advance(self, epoch: int) -> int:
        self.value = max(self.value, epoch) + self.racing
        return self.value


def _lease(epoch: int) -> Leadership:
    return Leadership(name="queen", holder="q", epoch=epoch, token="t", ttl=TTL)


def _reconciled() -> float:
    return REGISTRY.get_sample_value("swarm_fence_reconciled_total") or 0.0


async def test_the_epoch_goes_past_every_fence_and_every_fence_comes_to_it(
    logs: list[dict[str, Any]],
) -> None:
    before = _reconciled()
    redis_fence, other = _Fence(2), _Fence(5)
    reconciler = EpochReconciler(name="queen", fences=[redis_fence, other])
    assert await reconciler.on_elected(_lease(1)) == 6
    assert (redis_fence.value, other.value) == (6, 6)
    assert _reconciled() > before
    assert REGISTRY.get_sample_value("swarm_leader_epoch", {"name": "queen"}) == 6
    raised = [e for e in logs if e["event"].startswith("fence at or above the election epoch")]
    assert [(e["fence_epoch"], e["epoch"]) for e in raised] == [(2, 3), (5, 6)]


async def test_an_election_counting_the_fence_keeps_its_own_epoch() -> None:
    # A Redis lease increments the fence key itself: equal is its own epoch.
    fence = _Fence(4)
    assert await EpochReconciler(name="queen", fences=[fence],
                                 counted_by_election=True).on_elected(_lease(4)) == 4
    # Elected elsewhere (Consul), an equal fence is an earlier leader's.
    fence = _Fence(4)
    assert await EpochReconciler(name="queen", fences=[fence]).on_elected(_lease(4)) == 5


async def test_an_earlier_announced_leader_is_a_floor() -> None:
    async def announced() -> int:
        return 7

    fence = _Fence(1)
    reconciler = EpochReconciler(name="queen", fences=[fence], floors=[announced],
                                 counted_by_election=True)
    assert await reconciler.on_elected(_lease(1)) == 8 and fence.value == 8


async def test_a_fence_that_cannot_be_settled_is_a_clear_fencing_error() -> None:
    reconciler = EpochReconciler(name="queen", fences=[_Fence(0, racing=1)], attempts=2)
    with pytest.raises(FencingError, match="stepping down"):
        await reconciler.on_elected(_lease(1))


async def test_renewal_raises_a_flushed_fence_and_steps_down_past_a_newer_one() -> None:
    reconciler = EpochReconciler(name="queen", fences=[fence := _Fence(0)])
    before = _reconciled()
    await reconciler.on_renewed(_lease(3))
    assert fence.value == 3 and _reconciled() == before + 1
    await reconciler.on_renewed(_lease(3))  # in place: nothing to do
    assert _reconciled() == before + 1
    fence.value = 4
    with pytest.raises(LeadershipLost, match="epoch 4"):
        await reconciler.on_renewed(_lease(3))


# -- the sequence with the real CLIs ------------------------------------------


def _prefixed(prefix: str) -> str:
    base = require_redis()
    return f"{base}{'&' if '?' in base else '?'}prefix={prefix}"


async def _drop(prefix: str) -> None:
    client = aioredis.from_url(require_redis())
    keys = [k async for k in client.scan_iter(match=f"{prefix}:*", count=1000)]
    if keys:
        await client.delete(*keys)
    await client.aclose()


def _env() -> dict[str, str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("CONSUL_HTTP_TOKEN", None)
    return env


async def _serve_and_sigterm(url: str) -> str:
    """``python -m swarm.queen --serve --redis url`` until it leads, then SIGTERM."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "swarm.queen", "--serve", "--redis", url,
        "--lease-ttl", str(TTL), "--no-progress",
        cwd=ROOT, env=_env(), stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    assert proc.stderr is not None
    lines: list[str] = []
    try:
        async with asyncio.timeout(60):
            async for raw in proc.stderr:
                lines.append(raw.decode())
                if "leading with epoch" in lines[-1]:
                    break
        proc.send_signal(signal.SIGTERM)
        rest = await asyncio.wait_for(proc.stderr.read(), 60)
        assert await asyncio.wait_for(proc.wait(), 60) == 0, "".join(lines) + rest.decode()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    return "".join(lines)


async def test_a_fresh_consul_elects_a_queen_below_the_redis_fence_and_its_job_completes() -> None:
    prefix = f"epochcli{secrets.token_hex(4)}"
    url = _prefixed(prefix)
    client = aioredis.from_url(require_redis())
    try:
        assert "leading with epoch 1" in await _serve_and_sigterm(url)
        assert "leading with epoch 2" in await _serve_and_sigterm(url)
        assert int(await client.get(leader_epoch_key("queen", prefix))) == 2
        async with FakeConsul() as consul:  # fresh: its election starts at epoch 1
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "swarm.queen", "--redis", url, "--consul", consul.url,
                "--json", "--no-progress",
                cwd=ROOT, env=_env(), stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
            )
            out, err = await asyncio.wait_for(proc.communicate(), 180)
        text = err.decode()
        assert proc.returncode == 0, text
        assert "FENCED" not in text and "FencingError" not in text
        # One epoch for the leadership: past the fence, on the fence, announced.
        assert "leading with epoch 3" in text, text
        assert int(await client.get(leader_epoch_key("queen", prefix))) == 3
        report = json.loads(out)
        assert report["ok"] is True and report["announcements"]
    finally:
        await client.aclose()
        await _drop(prefix)


# -- a running swarm whose stores forget -----------------------------------------------


class EpochCount(Message):
    n: int


class EpochCounter(Agent):
    """Counts each task it runs, by number: a task run twice shows up here."""

    role = "epoch_counter"
    runs: ClassVar[collections.Counter[int]] = collections.Counter()

    @handler
    async def count(self, msg: EpochCount) -> dict[str, int]:
        self.runs[msg.n] += 1
        return {"n": msg.n, "square": msg.n * msg.n}


async def _until(check: Callable[[], Awaitable[bool]], *, within: float) -> None:
    """Wait for a state another component reaches; nothing signals it to the test."""
    async with asyncio.timeout(within):
        while not await check():
            await asyncio.sleep(0.05)


async def _round(service: SwarmService, numbers: range) -> None:
    handles = [await service.swarm.submit(EpochCount(n=n)) for n in numbers]
    results = [await h.result(timeout=30) for h in handles]
    assert results == [{"n": n, "square": n * n} for n in numbers]


@pytest.fixture
async def served(request: pytest.FixtureRequest) -> AsyncIterator[tuple[SwarmService, Any]]:
    """A served Redis swarm electing through Consul (``consul``) or a Redis lease (``redis``)."""
    EpochCounter.runs.clear()
    prefix = f"epochsvc{secrets.token_hex(4)}"
    # Consul's smallest session TTL is 10 s by default; lowered so renewals come quickly.
    consul = FakeConsul(session_ttl_min=TTL) if request.param == "consul" else None
    if consul is not None:
        await consul.start()
    settings = SwarmSettings(
        redis_url=_prefixed(prefix), consul_url=consul.url if consul else None,
        lease_ttl=TTL, drain_timeout=5.0,
    )
    service = SwarmService(settings, agents=[EpochCounter(concurrency=4)])
    await service.start()
    try:
        await service.wait_leading(timeout=30)
        yield service, (consul, prefix)
    finally:
        await service.close(drain=False)
        if consul is not None:
            await consul.stop()
        await _drop(prefix)


def _assert_each_ran_once(total: int) -> None:
    assert dict(EpochCounter.runs) == {n: 1 for n in range(total)}


@pytest.mark.parametrize("served", ["consul"], indirect=True)
async def test_a_consul_kv_reset_under_a_running_swarm(served: tuple[SwarmService, Any]) -> None:
    service, (consul, prefix) = served
    client = aioredis.from_url(require_redis())
    fence = FencedWriter(redis=client, name="queen", prefix=prefix)
    try:
        first = service.leadership.epoch
        await _round(service, range(0, 20))
        # An operator wipes (or restores an old snapshot of) the KV store.
        async with aiohttp.ClientSession() as http, http.delete(
            f"{consul.url}/v1/kv/?recurse"
        ) as reply:
            assert reply.status == 200
        # The lock is gone: the Queen steps down and is elected again by a
        # Consul whose epoch counter restarted at 1, below the fence.
        await _until(lambda: _leading_past(service, first), within=TTL * 10)
        second = service.leadership.epoch
        assert second > first
        assert await fence.current() == second
        assert REGISTRY.get_sample_value("swarm_leader_epoch", {"name": "queen"}) == second
        # The deposed epoch is refused where writes land.
        with pytest.raises(FencingError):
            await fence.execute("SET", f"{prefix}:{{leader-queen}}:probe", "x", epoch=first)
        await _round(service, range(20, 40))
        _assert_each_ran_once(40)
    finally:
        await client.aclose()


async def _leading_past(service: SwarmService, epoch: int) -> bool:
    return service.leadership.leading and service.leadership.epoch > epoch


@pytest.mark.parametrize("served", ["consul", "redis"], indirect=True)
async def test_a_flushed_fence_key_under_a_running_swarm(served: tuple[SwarmService, Any]) -> None:
    service, (_, prefix) = served
    client = aioredis.from_url(require_redis())
    fence = FencedWriter(redis=client, name="queen", prefix=prefix)
    key = leader_epoch_key("queen", prefix)
    try:
        epoch = service.leadership.epoch
        assert await fence.current() == epoch
        await _round(service, range(0, 20))
        before = _reconciled()
        await client.delete(key)
        flushed = time.monotonic()

        async def raised_again() -> bool:
            return await fence.current() == epoch

        # The leader's next renewal finds the fence below its epoch and raises it.
        await _until(raised_again, within=TTL * 5)
        assert time.monotonic() - flushed < TTL * 5
        assert _reconciled() >= before + 1
        assert service.leadership.leading and service.leadership.epoch == epoch
        with pytest.raises(FencingError):
            await fence.execute("SET", f"{prefix}:{{leader-queen}}:probe", "x", epoch=epoch - 1)
        await _round(service, range(20, 40))
        _assert_each_ran_once(40)
    finally:
        await client.aclose()


@pytest.mark.parametrize("served", ["redis"], indirect=True)
async def test_a_successor_elected_on_a_flushed_fence_still_goes_past_the_last_leader(
    served: tuple[SwarmService, Any],
) -> None:
    # The leader stops before any renewal could raise the flushed fence again:
    # its Redis-lease successor's INCR starts from nothing, and only the
    # leader's announcement remembers the epoch it must go past.
    service, (_, prefix) = served
    client = aioredis.from_url(require_redis())
    try:
        epoch = service.leadership.epoch
        await _round(service, range(0, 5))
        await client.delete(leader_epoch_key("queen", prefix))
        await service.close(drain=False)
        successor = SwarmService(
            SwarmSettings(redis_url=_prefixed(prefix), lease_ttl=TTL, drain_timeout=5.0),
            agents=[EpochCounter(concurrency=4)],
        )
        await successor.start()
        try:
            await successor.wait_leading(timeout=30)
            assert successor.leadership.epoch > epoch
            await _round(successor, range(5, 10))
            _assert_each_ran_once(10)
        finally:
            await successor.close(drain=False)
    finally:
        await client.aclose()
