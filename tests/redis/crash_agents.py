"""Agents run in subprocesses by the crash and poison tests (``python -m swarm.agent``).

They count handler starts in Redis, so the tests can tell duplicate
executions from redeliveries of work that never ran to completion.
"""

from __future__ import annotations

import asyncio
import os

from redis.asyncio import Redis

from swarm import Agent, Message, handler

__all__ = ["CrashWorker", "Poison", "Work", "starts_key"]


class Work(Message):
    key: str
    ms: int = 0


class Poison(Message):
    kind: str  # "raise" or "exit"


def starts_key(prefix: str) -> str:
    """Hash counting handler starts per task key."""
    return f"{prefix}:test:starts"


class CrashWorker(Agent):
    role = "crash_worker"

    async def on_start(self) -> None:
        # Test code: the test passes its server and prefix through the environment.
        self._prefix = os.environ["CRASH_PREFIX"]
        self._redis = Redis.from_url(os.environ["CRASH_REDIS_URL"])

    async def on_stop(self) -> None:
        await self._redis.aclose()

    @handler
    async def work(self, msg: Work) -> str:
        await self._redis.hincrby(starts_key(self._prefix), msg.key, 1)
        if msg.ms:
            await asyncio.sleep(msg.ms / 1000)
        return msg.key

    @handler
    async def poison(self, msg: Poison) -> None:
        if msg.kind == "exit":
            os._exit(3)  # a task that kills its process
        raise RuntimeError("poison")
