"""RedisRuntime on a local 3-master Redis Cluster (started from redis-server on loopback)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator

import pytest

from swarm import Agent, Message, handler
from swarm.errors import TaskDeadLettered
from swarm.ledger import TaskState
from swarm.redis import RedisClients, RedisRuntime, RedisSettings
from tests.redis.runtime_support import fast_retry
from tests.redis_cluster import RedisClusterServers

pytestmark = [pytest.mark.integration, pytest.mark.slow]


class Cube(Message):
    n: int


class Broken(Message):
    pass


class Cuber(Agent):
    role = "cluster_cuber"

    @handler
    async def cube(self, msg: Cube) -> int:
        return msg.n**3

    @handler
    async def broken(self, msg: Broken) -> None:
        raise RuntimeError("broken")


@pytest.fixture(scope="module")
def cluster() -> Iterator[RedisClusterServers]:
    with RedisClusterServers.launch() as servers:
        yield servers


@pytest.fixture
async def runtime(cluster: RedisClusterServers) -> AsyncIterator[RedisRuntime]:
    settings = RedisSettings.from_dsn(cluster.url, block_time=0.5)
    rt = RedisRuntime(
        settings=settings,
        retry_policy=fast_retry(),
        visibility_timeout=2.0,
        prefix=f"c{time.time_ns()}",
    )
    await rt.start()
    yield rt
    await rt.stop(drain=False)


async def test_tasks_retries_and_dead_letters_work_on_a_cluster(runtime: RedisRuntime) -> None:
    await runtime.register(Cuber(concurrency=4))
    for n in range(20):
        assert await runtime.send(Cube(n=n), sender="t", timeout=20) == n**3
    with pytest.raises(TaskDeadLettered):
        await runtime.send(Broken(), sender="t", timeout=20)
    dead = await runtime.dead_letters()
    assert [d.envelope.type for d in dead] == ["Broken"]
    assert await runtime.redrive(dead[0].envelope.id)
    rec = await runtime.wait(dead[0].envelope.id, timeout=20)
    assert rec.state is TaskState.DEAD


async def test_fencing_on_cluster_refuses_stale_epochs(cluster: RedisClusterServers) -> None:
    from swarm import Envelope, FencingError, task_envelope
    from swarm.constants import leader_epoch_key

    prefix = f"f{time.time_ns()}"
    settings = RedisSettings.from_dsn(cluster.url, block_time=0.5)
    rt = RedisRuntime(settings=settings, retry_policy=fast_retry(), prefix=prefix, fence="queen")
    await rt.start()
    clients = await RedisClients.connect(settings)
    client = clients.commands
    try:
        await rt.register(Cuber())
        await client.set(leader_epoch_key("queen", prefix), 3)

        def env(epoch: int) -> Envelope:
            return task_envelope(
                rt.codec,
                Cube(n=epoch),
                sender="q",
                to="role:cluster_cuber",
                max_attempts=3,
                reply_to=rt.node_id,
                epoch=epoch,
            )

        with pytest.raises(FencingError):
            await rt.submit(env(2))
        tid = await rt.submit(env(3))
        assert (await rt.wait(tid, timeout=10)).state is TaskState.DONE
    finally:
        await rt.stop(drain=False)
        await clients.close()


async def test_send_over_resp3_on_a_cluster(cluster: RedisClusterServers) -> None:
    # A Cluster client's blocking reads come back parsed by redis-py, whose RESP3
    # XREAD/XREADGROUP shape differs from RESP2's (one more list per stream).
    settings = RedisSettings.from_dsn(cluster.url, block_time=0.5, protocol=3)
    rt = RedisRuntime(
        settings=settings,
        retry_policy=fast_retry(),
        visibility_timeout=2.0,
        prefix=f"c3{time.time_ns()}",
    )
    await rt.start()
    try:
        await rt.register(Cuber(concurrency=2))
        assert await rt.send(Cube(n=3), sender="t", timeout=10) == 27
        assert await rt.send(Cube(n=4), sender="t", timeout=10) == 64
    finally:
        await rt.stop(drain=False)


async def test_queue_stats_on_a_cluster(runtime: RedisRuntime) -> None:
    # One script per role (its keys share a slot), pipelined across the nodes.
    await runtime.register(Cuber(concurrency=4))
    for n in range(5):
        assert await runtime.send(Cube(n=n), sender="t", timeout=20) == n**3
    stats = {q.role: q for q in await runtime.queues()}
    cuber = stats[Cuber.role]
    assert cuber.delivered == 5 and cuber.total == 0 and cuber.waiting[0] == 0
    assert cuber.dead == 0 and cuber.delayed == 0
