"""A late settlement never rewrites a finished task (issue 12, fault 2).

Agent A is cut off by a half-open connection (a black-holed TCP proxy)
while its settle script for a task is in flight; the task is reclaimed and
finished by agent B. When the link heals and A's script (and redis-py's
retry of it) runs, it only acks: the stored result stays B's, the task
counts one execution, the submitter hears one final result, and the late
settlement is counted in ``swarm_duplicate_settlements_total``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from swarm import Agent, Message, handler
from swarm import constants as C
from swarm.envelopes import task_envelope
from swarm.ledger import TaskState
from swarm.metrics import DUPLICATE_SETTLEMENTS
from swarm.redis.runtime import RedisRuntime
from swarm.redis.settings import RedisSettings
from tests.discovery.util import eventually
from tests.redis.runtime_support import cleanup, make_runtime, new_prefix, redis_client
from tests.servers import require_redis
from tests.tcp_proxy import TcpProxy

pytestmark = pytest.mark.integration

_RELEASE = asyncio.Event()
_STARTED = asyncio.Event()


class Which(Message):
    n: int


class Late(Agent):
    role = "late"

    @handler
    async def which(self, msg: Which) -> str:
        if self.agent_id == "agent-a":
            _STARTED.set()
            await _RELEASE.wait()
        return self.agent_id


def _duplicates() -> float:
    return DUPLICATE_SETTLEMENTS._value.get()


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


async def test_a_late_settlement_after_a_partition_only_acks(redis: Redis, prefix: str) -> None:
    _RELEASE.clear()
    _STARTED.clear()
    url = RedisSettings.from_dsn(require_redis())
    async with TcpProxy(url.host, url.port) as proxy:
        proxied = Redis(host="127.0.0.1", port=proxy.port, db=url.db, socket_timeout=30)
        rt_a = RedisRuntime(redis=proxied, prefix=prefix, visibility_timeout=60, block_time=0.3)
        rt_b = make_runtime(redis, prefix, visibility_timeout=1.5)
        await rt_a.start()
        await rt_b.start()
        try:
            await rt_a.register(Late(agent_id="agent-a"))
            env = task_envelope(
                rt_b.codec, Which(n=1), sender="t", max_attempts=5, reply_to=rt_b.node_id
            )
            task_id = await rt_b.submit(env)
            await asyncio.wait_for(_STARTED.wait(), 10)

            async def running() -> bool:
                rec = await rt_b.ledger.get(task_id)
                return rec is not None and rec.state is TaskState.RUNNING

            await eventually(running, within=20)
            # A is cut off (half-open: its writes vanish, nothing arrives),
            # then finishes: its settle script waits in the black hole.
            proxy.blackhole(include_new=True)
            _RELEASE.set()
            await rt_b.register(Late(agent_id="agent-b"))
            first = await rt_b.wait(task_id, timeout=30)
            assert (first.state, first.executions) == (TaskState.DONE, 1)
            assert rt_b.codec.decode_value("", first.result) == "agent-b"
            before = _duplicates()
            inbox_key = C.inbox_stream(rt_b.node_id, prefix)
            added = (await redis.xinfo_stream(inbox_key))["entries-added"]
            proxy.heal()

            async def counted() -> bool:
                return _duplicates() > before

            await eventually(counted, within=40)
            rec = await rt_b.ledger.get(task_id)
            assert rec is not None and rec.state is TaskState.DONE
            assert rec.executions == 1 and rec.agent_id == "agent-b"
            assert rt_b.codec.decode_value("", rec.result) == "agent-b"
            # No second final note reached the submitter's inbox (notes are
            # trimmed once read: count what was ever added).
            assert (await redis.xinfo_stream(inbox_key))["entries-added"] == added
            again = await rt_b.wait(task_id, timeout=5)
            assert again.result == first.result
        finally:
            _RELEASE.set()
            await rt_b.stop(drain=False)
            await rt_a.stop(drain=False, timeout=5)
            await proxied.aclose()
