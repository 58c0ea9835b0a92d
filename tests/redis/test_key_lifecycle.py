"""Every key the runtime writes has an owner and an end (swarm.constants.KEY_LIFECYCLE).

The first test fails when a name function is added to ``swarm.constants``
without a lifecycle entry. The second runs a workload over real Redis (done,
failed, retried, dead-lettered, idempotent, direct tasks; an agent crash and
its burial; clean stops) and checks every key left: it matches a known
pattern; one of a kind that expires carries a TTL; after one TTL only the
per-role keys bounded by configuration remain.
"""

from __future__ import annotations

import asyncio
import inspect
import re
from collections.abc import Callable

import pytest

from swarm import Agent, Message, handler
from swarm import constants as C
from swarm.errors import Reject, TaskDeadLettered, TaskFailed
from swarm.history import HistorySettings
from swarm.redis import directory as directory_module
from tests.discovery.util import eventually
from tests.redis.runtime_support import cleanup, make_runtime, new_prefix, redis_client

# Name functions that do not name a key: a pub/sub channel and a SCAN pattern.
_NOT_KEYS = {"channel_name", "ledger_pattern"}


def _name_functions() -> dict[str, Callable[..., str]]:
    out = {}
    for name in C.__all__:
        obj = getattr(C, name)
        if inspect.isfunction(obj) and name not in _NOT_KEYS:
            out[name] = obj
    return out


def test_every_key_pattern_has_an_owner_and_an_end() -> None:
    functions = _name_functions()
    missing = sorted(set(functions) - set(C.KEY_LIFECYCLE))
    assert not missing, f"key patterns without an owner and an end in KEY_LIFECYCLE: {missing}"
    stale = sorted(set(C.KEY_LIFECYCLE) - set(functions))
    assert not stale, f"KEY_LIFECYCLE entries for no name function: {stale}"
    for name, life in C.KEY_LIFECYCLE.items():
        assert life.owner.strip() and life.end.strip(), name


def _patterns(prefix: str) -> dict[str, re.Pattern[str]]:
    """One regular expression per key kind, made by calling its name function."""
    out = {}
    hole = "\x00"
    for name, fn in _name_functions().items():
        params = [p for p in inspect.signature(fn).parameters if p != "prefix"]
        args = [7 if p == "band" else hole for p in params]
        text = re.escape(fn(*args, prefix=prefix)).replace(re.escape(hole), "[^{}]+")
        out[name] = re.compile(text.replace("7", r"\d+") if "band" in params else text)
    return out


def _kind(key: str, patterns: dict[str, re.Pattern[str]]) -> str:
    kinds = [name for name, pat in patterns.items() if pat.fullmatch(key)]
    assert kinds, f"{key!r} matches no key pattern of swarm.constants"
    return kinds[0]


class Job(Message):
    n: int
    mode: str = "ok"


class Worker(Agent):
    role = "lifecycle"

    def __init__(self, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.attempts: dict[int, int] = {}
        self.release = asyncio.Event()

    @handler
    async def job(self, msg: Job) -> dict[str, int]:
        self.attempts[msg.n] = self.attempts.get(msg.n, 0) + 1
        if msg.mode == "reject":
            raise Reject("no")
        if msg.mode == "always":
            raise RuntimeError("always fails")
        if msg.mode == "once" and self.attempts[msg.n] == 1:
            raise RuntimeError("first attempt fails")
        if msg.mode == "hold":
            await self.release.wait()
        return {"n": msg.n}


@pytest.mark.integration
async def test_every_key_left_by_a_workload_and_a_crash_has_an_owner_and_an_end(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Faster burial than production's 30 s, still well past a missed heartbeat.
    monkeypatch.setattr(directory_module, "_STALE_AFTER", 2.0)
    monkeypatch.setattr(directory_module, "BURY_AFTER", 2.5)
    redis = await redis_client()
    prefix = new_prefix()
    history = HistorySettings(retention=2, inbox_ttl=5)
    patterns = _patterns(prefix)
    crashed = make_runtime(redis, prefix, history=history, node_id="crashed-node")
    survivor = make_runtime(redis, prefix, history=history, node_id="survivor-node")
    queen = make_runtime(redis, prefix, history=history, node_id="queen-node")
    try:
        victim, keeper = Worker(agent_id="victim"), Worker(agent_id="keeper")
        await crashed.register(victim)
        await survivor.register(keeper)
        await queen.start()
        assert await queen.send(Job(n=1), sender="t") == {"n": 1}
        with pytest.raises(TaskFailed):
            await queen.send(Job(n=2, mode="reject"), sender="t")
        with pytest.raises(TaskDeadLettered):
            await queen.send(Job(n=3, mode="always"), sender="t", max_attempts=2)
        assert await queen.send(Job(n=4, mode="once"), sender="t") == {"n": 4}
        assert await queen.send(Job(n=5), sender="t", idempotency_key="k5") == {"n": 5}
        assert await queen.send(Job(n=6), to="agent:keeper", sender="t") == {"n": 6}
        # A task aimed at the victim is in its own stream when it crashes.
        victim.release.clear()
        held = asyncio.ensure_future(
            queen.send(Job(n=7, mode="hold"), to="agent:victim", sender="t")
        )
        await eventually(
            lambda: _true(bool(victim.attempts.get(7))), within=20,
            what="the victim to hold task 7",
        )
        agent_key = C.agent_stream("lifecycle", "victim", prefix)
        replicas = C.replicas_key("lifecycle", prefix)
        last_beat = await redis.hget(replicas, "victim")
        assert last_beat is not None
        await crashed.kill("victim")
        await crashed.stop()
        # kill() withdraws the heartbeat; a SIGKILLed process leaves its last one.
        await redis.hset(replicas, "victim", last_beat)
        assert await redis.exists(agent_key)

        # The survivor's reaper buries the victim: heartbeat field and own stream go,
        # the task aimed at it is dead-lettered and its submitter told.
        async def buried() -> bool:
            return not await redis.hexists(replicas, "victim") and not await redis.exists(
                agent_key
            )

        await eventually(buried, within=20, what="the reaper to bury the crashed agent")
        with pytest.raises(TaskDeadLettered, match="victim"):
            await asyncio.wait_for(held, 10)
        await survivor.stop()
        await queen.stop()

        keys = sorted([k.decode() async for k in redis.scan_iter(match=f"{prefix}:*", count=500)])
        assert keys
        for key in keys:
            kind = _kind(key, patterns)
            ttl = await redis.pttl(key)
            if C.KEY_LIFECYCLE[kind].expires:
                assert ttl > 0, f"{key} ({kind}) has no TTL after every process left"
        assert not [k for k in keys if _kind(k, patterns) in ("agent_stream", "replicas_key")]

        # One TTL later (the longest: the inboxes' 5 s) only per-role keys remain.
        async def only_bounded_left() -> bool:
            left = [k.decode() async for k in redis.scan_iter(match=f"{prefix}:*", count=500)]
            return all(not C.KEY_LIFECYCLE[_kind(k, patterns)].expires for k in left)

        await eventually(only_bounded_left, within=15, what="every expiring key to expire")
        left = {_kind(k.decode(), patterns) async for k in redis.scan_iter(match=f"{prefix}:*")}
        assert left <= {"task_stream", "dead_letter_stream", "directory_key"}, left
    finally:
        for rt in (crashed, survivor, queen):
            await rt.stop(drain=False)
        await cleanup(redis, prefix)
        await redis.aclose()


async def _true(value: bool) -> bool:
    return value
