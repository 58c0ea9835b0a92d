"""With Redis down, no raw redis-py error reaches a user (issue 12, fault 7).

A private redis-server is stopped, then every public method of ``Swarm``,
``TaskHandle``, the Redis runtime (and its ledger) and a Redis-backed
``MemoryCoordinator`` is called: each either works without Redis or raises
an error of the ``SwarmError`` tree (a ``TransportError`` for the transport).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from redis.asyncio import Redis

from memory.coordinator import MemoryCoordinator
from memory.records import MemoryFilter
from swarm import Agent, Message, SwarmError, TaskState, TransportError, handler
from swarm.envelopes import task_envelope
from swarm.queen import Queen
from swarm.redis.runtime import RedisRuntime
from swarm.swarm import Swarm
from tests.redis_server import RedisServer

pytestmark = pytest.mark.integration


class Echo(Message):
    text: str


class Echoer(Agent):
    role = "echo"

    @handler
    async def echo(self, msg: Echo) -> str:
        return msg.text


async def _call(name: str, make: Callable[[], Awaitable[Any]], leaks: list[str]) -> None:
    try:
        await asyncio.wait_for(make(), 20)
    except SwarmError:
        pass
    except Exception as exc:  # what the test exists to find
        leaks.append(f"{name}: {type(exc).__module__}.{type(exc).__name__}: {exc}")


async def test_every_public_method_raises_the_tree_with_redis_down() -> None:
    with RedisServer.launch() as server:
        client = Redis.from_url(server.url, socket_timeout=2, socket_connect_timeout=2)
        mem_client = Redis.from_url(server.url, socket_timeout=2, socket_connect_timeout=2)
        runtime = RedisRuntime(redis=client, prefix="down", block_time=0.2)
        swarm = Swarm(runtime=runtime, queen=Queen(runtime=runtime), agents=[Echoer()])
        memory = MemoryCoordinator(runtime=runtime, redis=mem_client)
        async with swarm:
            await memory.start()
            handle = await swarm.submit(Echo(text="before"))
            assert await handle.result(timeout=10) == "before"
            mem_id = await memory.store(namespace="n", content="kept before the outage")
            await server.astop()
            leaks: list[str] = []
            env = task_envelope(runtime.codec, Echo(text="x"), sender="t", max_attempts=3)
            calls: dict[str, Callable[[], Awaitable[Any]]] = {
                "Swarm.submit": lambda: swarm.submit(Echo(text="x")),
                "Swarm.submit(idempotency_key)": lambda: swarm.submit(
                    Echo(text="x"), idempotency_key="k"
                ),
                "Swarm.status": lambda: swarm.status(handle.task_id),
                "Swarm.publish": lambda: swarm.publish("topic", Echo(text="x")),
                "Swarm.add_agent": lambda: swarm.add_agent(Echoer()),
                "TaskHandle.result": lambda: handle.result(timeout=3),
                "TaskHandle.status": lambda: handle.status(),
                "Queen.counts": lambda: swarm.queen.counts(),
                "Queen.dead_letters": lambda: swarm.queen.dead_letters(),
                "Queen.redrive": lambda: swarm.queen.redrive(handle.task_id),
                "runtime.submit": lambda: runtime.submit(env),
                "runtime.submit(idempotency_key)": lambda: runtime.submit(
                    task_envelope(
                        runtime.codec, Echo(text="x"), sender="t", max_attempts=3,
                        idempotency_key="k2",
                    )
                ),
                "runtime.wait": lambda: runtime.wait(handle.task_id, timeout=3),
                "runtime.send": lambda: runtime.send(Echo(text="x"), sender="t"),
                "runtime.send(timeout)": lambda: runtime.send(
                    Echo(text="x"), sender="t", timeout=3
                ),
                "runtime.send(idempotency_key)": lambda: runtime.send(
                    Echo(text="x"), sender="t", timeout=3, idempotency_key="k3"
                ),
                "runtime.publish": lambda: runtime.publish("t", Echo(text="x"), sender="t"),
                "runtime.subscribe": lambda: runtime.subscribe("t", _noop),
                "runtime.directory": lambda: runtime.directory(),
                "runtime.dead_letters": lambda: runtime.dead_letters(),
                "runtime.redrive": lambda: runtime.redrive(handle.task_id),
                "runtime.register": lambda: runtime.register(Echoer()),
                "runtime.ledger.get": lambda: runtime.ledger.get(handle.task_id),
                "runtime.ledger.update": lambda: runtime.ledger.update(
                    handle.task_id, TaskState.DONE
                ),
                "runtime.ledger.counts": lambda: runtime.ledger.counts(),
                "runtime.ledger.requeue_dead": lambda: runtime.ledger.requeue_dead("x"),
                "memory.store": lambda: memory.store(namespace="n", content="during"),
                "memory.get": lambda: memory.get(mem_id),
                "memory.recall": lambda: memory.recall("kept"),
                "memory.feedback": lambda: memory.feedback(mem_id, useful=True),
                "memory.catch_up": lambda: memory.catch_up(since=None, filters=MemoryFilter()),
                "memory.refresh_index": lambda: memory.refresh_index(),
                "memory.synthesize_once": lambda: memory.synthesize_once(),
                "memory.tier_once": lambda: memory.tier_once(),
                "memory.forget": lambda: memory.forget(mem_id),
            }
            for name, make in calls.items():
                await _call(name, make, leaks)
            for agent in list(runtime.agents())[1:]:
                await _call(
                    "runtime.unregister", lambda a=agent: runtime.unregister(a.agent_id), leaks
                )
            await _call("runtime.kill", lambda: runtime.kill(runtime.agents()[0].agent_id), leaks)
            await _call("Swarm.run_until_idle", lambda: swarm.run_until_idle(timeout=3), leaks)
            await _call("memory.close", memory.close, leaks)
            assert leaks == []
            # Each error names the transport.
            with pytest.raises(TransportError):
                await runtime.directory()
        await client.aclose()
        await mem_client.aclose()


async def _noop(_env: object) -> None:
    return None
