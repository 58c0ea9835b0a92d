"""Agents the HTTP API tests submit to: echo, a gated hold, and one that fails on demand."""

from __future__ import annotations

import asyncio
from typing import Any, ClassVar

from swarm import Agent, Message, Reject, handler


class Echo(Message):
    """Echoed back as a dict (the bench's work unit is the same shape)."""

    text: str
    n: int = 0
    tags: list[str] = []


class Hold(Message):
    """Runs until the test opens the gate named ``gate``."""

    gate: str


class Boom(Message):
    """Fails while ``BoomAgent.failing`` is set; ``refuse`` rejects it outright."""

    refuse: bool = False


class EchoAgent(Agent):
    role = "echo"

    @handler
    async def echo(self, msg: Echo) -> dict[str, Any]:
        return {"text": msg.text, "n": msg.n + 1, "tags": msg.tags}


class HoldAgent(Agent):
    role = "hold"
    gates: ClassVar[dict[str, asyncio.Event]] = {}
    started: ClassVar[dict[str, asyncio.Event]] = {}

    @classmethod
    def gate(cls, name: str) -> asyncio.Event:
        return cls.gates.setdefault(name, asyncio.Event())

    @classmethod
    def started_event(cls, name: str) -> asyncio.Event:
        return cls.started.setdefault(name, asyncio.Event())

    @handler
    async def hold(self, msg: Hold) -> str:
        self.started_event(msg.gate).set()
        await self.gate(msg.gate).wait()
        return f"released {msg.gate}"


class BoomAgent(Agent):
    role = "boom"
    failing: ClassVar[bool] = True

    @handler
    async def boom(self, msg: Boom) -> str:
        if msg.refuse:
            raise Reject("refused on purpose")
        if BoomAgent.failing:
            raise RuntimeError("boom on purpose")
        return "recovered"


def make_agents() -> list[Agent]:
    """The test swarm: one agent of each role (hold with one slot, so tasks queue)."""
    return [EchoAgent(concurrency=16), HoldAgent(concurrency=1), BoomAgent()]


def make_quick_agents() -> list[Agent]:
    """Agents whose tasks all end quickly (for fuzzing: no task waits on a gate)."""
    return [EchoAgent(concurrency=16), BoomAgent()]
