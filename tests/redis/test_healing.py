"""Lost Redis state is healed (issue 12, fault 5).

* A deleted stream (recreated by a later task without its consumer group)
  no longer stops the role: readers re-create missing groups on NOGROUP.
* Agents re-announce their roles with every heartbeat, and a submitter keeps
  routing to the roles it knew (see the declared-role test).
* A task for a declared role queues without any live agent; only a type
  nobody ever declared is refused, with a clear error.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from swarm import Agent, Message, handler
from swarm import constants as C
from swarm.envelopes import task_envelope
from swarm.errors import NoRouteError
from swarm.ledger import TaskState
from swarm.redis.runtime import RedisRuntime
from tests.redis.runtime_support import cleanup, make_runtime, new_prefix, redis_client

pytestmark = pytest.mark.integration


class Ping(Message):
    n: int


class Never(Message):
    n: int


class Ponger(Agent):
    role = "ponger"

    @handler
    async def ping(self, msg: Ping) -> int:
        return msg.n + 1


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


def _env(rt: RedisRuntime, n: int, priority: int = 0) -> object:
    return task_envelope(
        rt.codec, Ping(n=n), sender="t", max_attempts=3, priority=priority, reply_to=rt.node_id
    )


async def test_a_deleted_stream_does_not_stop_the_role(redis: Redis, prefix: str) -> None:
    rt = make_runtime(redis, prefix)
    await rt.start()
    try:
        await rt.register(Ponger())
        assert await rt.send(Ping(n=1), sender="t", timeout=10) == 2
        # An idle band's stream is deleted; a task recreates it without a group.
        for band in range(3):
            await redis.delete(C.task_stream("ponger", band, prefix))
        for priority in (0, 5, -5):
            tid = await rt.submit(_env(rt, 10, priority))  # type: ignore[arg-type]
            rec = await rt.wait(tid, timeout=15)
            assert rec.state is TaskState.DONE
        assert await rt.send(Ping(n=2), sender="t", timeout=10) == 3
    finally:
        await rt.stop(drain=False)


async def test_a_declared_role_queues_without_a_live_agent(redis: Redis, prefix: str) -> None:
    submitter = make_runtime(redis, prefix)
    node = make_runtime(redis, prefix)
    await submitter.start()
    await node.start()
    try:
        agent = Ponger()
        await node.register(agent)
        await node.unregister(agent.agent_id)
        assert (await submitter.directory())["ponger"].replicas == ()
        tid = await submitter.submit(_env(submitter, 41))  # type: ignore[arg-type]
        assert (await submitter.ledger.get(tid)).state is TaskState.QUEUED  # type: ignore[union-attr]
        await node.register(Ponger())  # scaling up from zero
        rec = await submitter.wait(tid, timeout=15)
        assert rec.state is TaskState.DONE
        with pytest.raises(NoRouteError, match="Never"):
            await submitter.send(Never(n=1), sender="t", timeout=5)
    finally:
        await node.stop(drain=False)
        await submitter.stop(drain=False)
