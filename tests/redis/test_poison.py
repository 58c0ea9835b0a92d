"""Hostile bytes from outside never silence a Redis runtime (issue 12, fault 1).

Each place that decodes bytes it did not write itself gets a 3 KB message
nested 1 000 deep (and other malformed bytes): the task streams, the
submitter's inbox, the four ``swarm:channels:*`` channels (memory-sync
included) and the heartbeats. Every one is rejected and counted by reason;
no loop dies; good traffic keeps flowing afterwards.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from redis.asyncio import Redis

from swarm import Agent, Message, handler
from swarm import constants as C
from swarm.envelopes import task_envelope
from swarm.messages import Command, CommandAction, Envelope, Kind, new_id
from swarm.metrics import BACKGROUND_RESTARTS, REJECTED
from swarm.redis.runtime import RedisRuntime
from tests.redis.runtime_support import cleanup, make_runtime, new_prefix, redis_client

pytestmark = pytest.mark.integration

POISON = b"\x81\xa1a" * 1000 + b"\xc0"  # the repro: 3 KB, 1 000 maps deep


class Echo(Message):
    text: str


class Echoer(Agent):
    role = "echoer"

    @handler
    async def echo(self, msg: Echo) -> str:
        return msg.text


def _rejected(reason: str) -> float:
    return REJECTED.labels(reason=reason)._value.get()


def _restarts() -> float:
    return sum(
        s.value
        for m in BACKGROUND_RESTARTS.collect()
        for s in m.samples
        if s.name.endswith("_total")
    )


@pytest.fixture
async def redis() -> AsyncIterator[Redis]:
    client = await redis_client()
    yield client
    await client.aclose()


@pytest.fixture
async def prefix(redis: Redis) -> AsyncIterator[str]:
    p = new_prefix()
    yield p
    await cleanup(redis, p)


@pytest.fixture
async def runtime(redis: Redis, prefix: str) -> AsyncIterator[RedisRuntime]:
    rt = make_runtime(redis, prefix)
    await rt.start()
    yield rt
    await rt.stop(drain=False)


async def _counted(reason: str, before: float) -> None:
    while _rejected(reason) <= before:
        await asyncio.sleep(0.01)


async def test_poison_in_a_task_stream_is_rejected_and_the_role_keeps_working(
    runtime: RedisRuntime, redis: Redis, prefix: str
) -> None:
    await runtime.register(Echoer())
    before = _rejected("malformed")
    restarts = _restarts()
    for band in range(3):
        await redis.xadd(C.task_stream("echoer", band, prefix), {"e": POISON})
    await asyncio.wait_for(_counted("malformed", before + 2), 10)
    assert await runtime.send(Echo(text="after"), sender="t", timeout=10) == "after"
    assert _restarts() == restarts
    assert runtime.healthy


async def test_poison_in_the_inbox_does_not_stop_results(
    runtime: RedisRuntime, redis: Redis
) -> None:
    await runtime.register(Echoer())
    before = _rejected("malformed_result")
    await redis.xadd(C.inbox_stream(runtime.node_id, runtime.prefix), {"r": POISON})
    await redis.xadd(C.inbox_stream(runtime.node_id, runtime.prefix), {"rs": POISON})
    await asyncio.wait_for(_counted("malformed_result", before + 1), 10)
    for i in range(5):
        task_id = await runtime.submit(_task(runtime, f"r{i}"))
        rec = await runtime.wait(task_id, timeout=10)
        assert rec.state.value == "done"


@pytest.mark.parametrize("channel", C.CHANNELS)
async def test_poison_on_each_channel_leaves_subscribers_listening(
    runtime: RedisRuntime, redis: Redis, channel: str
) -> None:
    got: asyncio.Queue[Envelope] = asyncio.Queue()

    async def collect(env: Envelope) -> None:
        await got.put(env)

    sub = await runtime.subscribe(channel, collect)
    try:
        name = C.channel_name(channel, runtime.prefix)
        before = _rejected("malformed") + _rejected("foreign")
        for bad in (POISON, b"\x91" * 5000 + b"\xc0", b"\xdd\xff\xff\xff\xff", b"junk"):
            await redis.publish(name, bad)
        while _rejected("malformed") + _rejected("foreign") < before + 4:
            await asyncio.sleep(0.01)
        await runtime.publish(channel, Echo(text="still here"), sender="t")
        env = await asyncio.wait_for(got.get(), 10)
        assert runtime.codec.decode_payload(env, Echo).text == "still here"
        assert runtime.healthy
    finally:
        await sub.close()


async def test_poison_then_a_command_is_still_obeyed(runtime: RedisRuntime, redis: Redis) -> None:
    agent = Echoer()
    await runtime.register(agent)
    name = C.channel_name(C.CHANNEL_QUEEN_COMMANDS, runtime.prefix)
    await redis.publish(name, POISON)
    await runtime.publish(
        C.CHANNEL_QUEEN_COMMANDS, Command(action=CommandAction.PAUSE), sender="queen"
    )
    while agent.accepting:
        await asyncio.sleep(0.01)


async def test_poison_heartbeats_are_counted_and_the_directory_still_reads(
    runtime: RedisRuntime, redis: Redis
) -> None:
    await runtime.register(Echoer())
    before = _rejected("malformed_heartbeat")
    await redis.hset(C.replicas_key("echoer", runtime.prefix), "ghost", POISON)
    roles = await runtime.directory()
    assert [r.agent_id for r in roles["echoer"].replicas] != []
    assert "ghost" not in {r.agent_id for r in roles["echoer"].replicas}
    assert _rejected("malformed_heartbeat") > before


_bytes = st.one_of(
    st.binary(max_size=200),
    st.integers(1, 3000).map(lambda n: b"\x81\xa1a" * n + b"\xc0"),
    st.integers(1, 3000).map(lambda n: b"\x91" * n + b"\xc0"),
    st.binary(max_size=40).map(lambda b: b"\x89" + b),
)


@settings(max_examples=8, deadline=None, suppress_health_check=list(HealthCheck))
@given(stream=st.lists(_bytes, min_size=1, max_size=4), inbox=st.lists(_bytes, max_size=3))
async def test_fuzz_streams_inbox_and_channels_never_kill_a_loop(
    stream: list[bytes], inbox: list[bytes]
) -> None:
    client = await redis_client()
    prefix = new_prefix()
    rt = make_runtime(client, prefix)
    try:
        await rt.start()
        await rt.register(Echoer())
        restarts = _restarts()
        for data in stream:
            await client.xadd(C.task_stream("echoer", 1, prefix), {"e": data})
        for data in inbox:
            await client.xadd(C.inbox_stream(rt.node_id, prefix), {"r": data})
        for data in stream:
            await client.publish(C.channel_name(C.CHANNEL_MEMORY_SYNC, prefix), data)
            await client.hset(C.replicas_key("echoer", prefix), "fuzz", data)
        assert await rt.send(Echo(text="ok"), sender="t", timeout=30) == "ok"
        await rt.directory()
        assert _restarts() == restarts and rt.healthy
    finally:
        await rt.stop(drain=False)
        await cleanup(client, prefix)
        await client.aclose()


def _task(runtime: RedisRuntime, text: str) -> Envelope:
    return task_envelope(
        runtime.codec, Echo(text=text), sender="t", max_attempts=3, reply_to=runtime.node_id
    )


async def test_a_task_entry_without_a_ledger_record_is_rejected_once(
    runtime: RedisRuntime, redis: Redis, prefix: str
) -> None:
    # Issue 12, fault 8: it used to run max_attempts times, then die as "agent crashes?".
    agent = Echoer()
    await runtime.register(agent)
    before = _rejected("no_ledger_record")
    for text, attempt in (("first", 1), ("retry", 2)):
        env = task_envelope(
            runtime.codec, Echo(text=text), sender="t", max_attempts=3, to="role:echoer"
        )
        env = msgspec.structs.replace(env, recipient="role:echoer", attempt=attempt)
        await redis.xadd(C.task_stream("echoer", 1, prefix), {"e": runtime.codec.encode(env)})
    await asyncio.wait_for(_counted("no_ledger_record", before + 1), 10)
    rejected = await redis.xrange(C.rejected_stream("echoer", prefix))
    assert len(rejected) == 2
    assert agent.processed <= 1  # the first delivery's handler ran once at most
    assert await runtime.dead_letters() == []
    assert await runtime.send(Echo(text="after"), sender="t", timeout=10) == "after"


async def test_a_poison_memory_notice_is_counted_and_sync_keeps_working(
    runtime: RedisRuntime, redis: Redis
) -> None:
    # A well-formed envelope on memory-sync whose MemoryNotice payload is nested deep.
    from memory.coordinator import MemoryCoordinator
    from memory.records import MemoryFilter

    receiver = MemoryCoordinator(runtime=runtime)
    sender = MemoryCoordinator(runtime=runtime)
    await receiver.start()
    await sender.start()
    try:
        got: asyncio.Queue[str] = asyncio.Queue()

        async def on_memory(memory: object) -> None:
            await got.put(memory.content)  # type: ignore[attr-defined]

        receiver.subscribe(on_memory, filters=MemoryFilter(), name="t")
        reasons = ("memory_notice_malformed", "malformed")
        before = sum(_rejected(r) for r in reasons)
        bad = Envelope(
            id=new_id(),
            kind=Kind.EVENT,
            type="memory.notice",
            sender="evil",
            payload=msgspec.Raw(POISON),
        )
        await redis.publish(
            C.channel_name(C.CHANNEL_MEMORY_SYNC, runtime.prefix), runtime.codec.encode(bad)
        )
        # Rejected where it is first decoded: the envelope (msgspec walks the
        # raw payload too) or, past that, the notice.
        while sum(_rejected(r) for r in reasons) <= before:
            await asyncio.sleep(0.01)
        await sender.store(namespace="n", content="after the poison")
        assert await asyncio.wait_for(got.get(), 10) == "after the poison"
        assert runtime.healthy
    finally:
        await sender.close()
        await receiver.close()


async def test_a_loop_that_keeps_failing_is_restarted_and_reported_unhealthy(
    redis: Redis, prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from swarm.redis.results import Results

    failures: list[int] = []
    real = Results._read_inbox

    async def broken(self: Results, last: bytes, blocking: object) -> None:
        failures.append(1)
        if len(failures) <= 4:
            raise RuntimeError("a bug in the inbox loop")
        await real(self, last, blocking)

    monkeypatch.setattr(Results, "_read_inbox", broken)
    restarts = BACKGROUND_RESTARTS.labels(task="inbox")._value.get
    before = restarts()
    rt = make_runtime(redis, prefix)
    await rt.start()
    try:
        await rt.register(Echoer())
        while len(failures) < 3:
            await asyncio.sleep(0.01)
        assert not rt.healthy
        # Other processes see it through the heartbeat in Redis.
        await rt._directory.beat(list(rt._replicas.values()))
        raw = await redis.hgetall(C.replicas_key("echoer", prefix))
        assert raw and all(b"unhealthy" in blob for blob in raw.values()), raw
        # Restarted with backoff: the loop comes back and results flow again.
        assert await rt.send(Echo(text="back"), sender="t", timeout=20) == "back"
        assert restarts() >= before + 4
    finally:
        await rt.stop(drain=False)
