"""RedisRuntime across server restarts: a private redis-server with AOF, restarted twice."""

from __future__ import annotations

import asyncio
import time
from typing import ClassVar

import pytest

from swarm import Agent, Message, handler
from swarm.errors import TransportError
from swarm.ledger import TaskState
from swarm.messages import Envelope, Kind, new_id
from swarm.redis import RedisRuntime, RedisSettings
from tests.redis_server import RedisServer

pytestmark = [pytest.mark.integration, pytest.mark.slow]

TOPIC = "restart-test:events"


class Job(Message):
    n: int


class Hello(Message):
    text: str


class JobAgent(Agent):
    role = "restart_worker"
    subscriptions: ClassVar[tuple[str, ...]] = (TOPIC,)
    heard: ClassVar[dict[str, asyncio.Event]] = {}

    @handler
    async def job(self, msg: Job) -> int:
        return msg.n

    @handler
    async def hello(self, msg: Hello) -> None:
        self.heard.setdefault(f"{self.agent_id}:{msg.text}", asyncio.Event()).set()


def _runtime(url: str) -> RedisRuntime:
    settings = RedisSettings.from_dsn(url, block_time=0.5, retry_attempts=8)
    return RedisRuntime(settings=settings, visibility_timeout=3.0, block_time=0.5)


async def _submit(queen: RedisRuntime, env: Envelope) -> str:
    # A submit that failed on a dropped connection was not accepted: send it
    # again (same task id, so a half-applied first try cannot run it twice).
    deadline = time.monotonic() + 15
    while True:
        try:
            return await queen.submit(env)
        except TransportError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.05)


async def _round_trip_after_restart(queen: RedisRuntime) -> float:
    start = time.monotonic()
    env = _env(queen, -1)
    await _submit(queen, env)
    rec = await queen.wait(env.id, timeout=30)
    assert rec.state is TaskState.DONE
    return time.monotonic() - start


def _env(queen: RedisRuntime, n: int) -> Envelope:
    return Envelope(
        id=new_id(),
        kind=Kind.TASK,
        type=Job.type_name,
        sender="test",
        recipient=f"role:{JobAgent.role}",
        payload=queen.codec.encode_payload(Job(n=n)),
        created_at=time.time(),
        reply_to=queen.node_id,
        max_attempts=5,
    )


async def test_two_restarts_during_10000_tasks_lose_nothing() -> None:
    with RedisServer.launch() as server:
        queen = _runtime(server.url)
        nodes = [_runtime(server.url) for _ in range(2)]
        await queen.start()
        agents = [JobAgent(agent_id=f"rw-{i}", concurrency=16) for i in range(2)]
        for node, agent in zip(nodes, agents, strict=True):
            await node.start()
            await node.register(agent)
        try:
            ids: list[str] = []
            reconnect: list[float] = []
            total, batch = 10_000, 250
            restart_at = {total // 3, 2 * total // 3}
            for start in range(0, total, batch):
                envs = [_env(queen, n) for n in range(start, start + batch)]
                ids += await asyncio.gather(*(_submit(queen, e) for e in envs))
                if any(start <= r < start + batch for r in restart_at):
                    await server.arestart()
                    reconnect.append(await _round_trip_after_restart(queen))
            assert server.restarts == 2
            for task_id in ids:
                rec = await queen.wait(task_id, timeout=60)
                assert rec.state is TaskState.DONE, rec
            counts = await queen.ledger.counts()
            assert counts.get(TaskState.DONE, 0) == total + 2
            print(f"reconnect round trips after restart: {[round(t, 2) for t in reconnect]}s")
            assert max(reconnect) <= 10
            # A broadcast after the restarts reaches every agent (pub/sub is
            # at-most-once: publish until each subscriber resubscribed and heard one).
            deadline = time.monotonic() + 10
            text = new_id()
            while not all(f"{a.agent_id}:{text}" in JobAgent.heard for a in agents):
                assert time.monotonic() < deadline, "broadcast did not reach every agent"
                await queen.publish(TOPIC, Hello(text=text), sender="test")
                await asyncio.sleep(0.1)
        finally:
            for node in nodes:
                await node.stop(drain=False)
            await queen.stop(drain=False)
