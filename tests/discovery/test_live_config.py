"""Live config: retry policy and concurrency limits change without restart."""

from __future__ import annotations

import asyncio
import json
from typing import ClassVar

import pytest

from discovery import LiveConfig, Registry
from swarm import Agent, InProcessRuntime, Message, Queen, RetryPolicy, TaskContext, handler
from swarm.errors import TaskDeadLettered
from swarm.metrics import REJECTED


class Slow(Message):
    n: int


class Boom(Message):
    # An explicit wire name: tests/service/agents.py has a Boom of its own, and wire
    # names are global to the process.
    type_name: ClassVar[str] = "live_config.boom"
    n: int


class Worker(Agent):
    role = "worker"
    concurrency = 3

    def __init__(self) -> None:
        super().__init__(agent_id="w1")
        self.running = 0
        self.peak = 0
        self.booms = 0

    @handler
    async def slow(self, msg: Slow, ctx: TaskContext) -> int:
        self.running += 1
        self.peak = max(self.peak, self.running)
        try:
            await asyncio.sleep(0.02)  # simulated work
        finally:
            self.running -= 1
        return msg.n

    @handler
    async def boom(self, msg: Boom, ctx: TaskContext) -> int:
        self.booms += 1
        raise RuntimeError("always fails")


def config_prefix(registry: Registry) -> str:
    settings = getattr(registry, "settings", None)
    return f"{getattr(settings, 'prefix', 'swarm')}/config/"


async def test_retry_policy_and_concurrency_apply_live(registry: Registry) -> None:
    prefix = config_prefix(registry)
    runtime = InProcessRuntime(retry_policy=RetryPolicy(max_attempts=2, base_delay=0.01))
    await runtime.start()
    worker = Worker()
    await runtime.register(worker)
    queen = Queen(runtime=runtime)
    live = LiveConfig(registry=registry, prefix=prefix, runtime=runtime, queen=queen)
    await live.start()
    try:
        handles = [await queen.submit(Slow(n=i)) for i in range(6)]
        assert [await h.result(timeout=5) for h in handles] == list(range(6))
        assert worker.peak == 3

        await registry.put_config(prefix + "runtime/retry_policy", json.dumps(
            {"max_attempts": 4, "base_delay": 0.001, "jitter": 0}).encode())
        await registry.put_config(prefix + "agents/worker/concurrency", b"1")
        await live.wait_for(lambda s: s.retry_policy is not None and s.concurrency == {"worker": 1},
                            timeout=5)
        assert runtime.retry_policy.max_attempts == 4
        assert queen.intake.retry_policy.max_attempts == 4
        assert worker.concurrency == 1

        with pytest.raises(TaskDeadLettered):
            await (await queen.submit(Boom(n=1))).result(timeout=5)
        assert worker.booms == 4  # the new attempt bound, not the startup one

        worker.peak = 0
        handles = [await queen.submit(Slow(n=i)) for i in range(6)]
        assert [await h.result(timeout=5) for h in handles] == list(range(6))
        assert worker.peak == 1
    finally:
        await live.close()
        await runtime.stop()


async def test_bad_value_is_rejected_and_counted(registry: Registry) -> None:
    prefix = config_prefix(registry)
    await registry.put_config(prefix + "agents/worker/concurrency", b"2")
    live = LiveConfig(registry=registry, prefix=prefix)
    await live.start()
    try:
        assert live.settings.concurrency == {"worker": 2}
        before = REJECTED.labels(reason="bad_config")._value.get()
        await registry.put_config(prefix + "agents/worker/concurrency", b"0")
        await registry.put_config(prefix + "runtime/retry_policy", b'{"max_attempts": 9}')
        await live.wait_for(lambda s: s.retry_policy is not None, timeout=5)
        assert live.settings.concurrency == {"worker": 2}  # the bad value changed nothing
        assert REJECTED.labels(reason="bad_config")._value.get() == before + 1
    finally:
        await live.close()
