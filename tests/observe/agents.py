"""Agents of the observability tests (loaded by ``python -m swarm.agent`` subprocesses too)."""

from __future__ import annotations

import asyncio

from swarm import Agent, Message, handler
from swarm.agent.context import TaskContext


class ObsEcho(Message):
    text: str


class ObsHold(Message):
    n: int


class ObsHop(Message):
    text: str


class EchoAgent(Agent):
    role = "obs_echo"

    @handler
    async def echo(self, msg: ObsEcho, ctx: TaskContext) -> str:
        ctx.log.debug("echoing", size=len(msg.text))
        return msg.text.upper()


class FrontAgent(Agent):
    """Hands each ObsHop on to the echo role: a child task inside the trace."""

    role = "obs_front"

    @handler
    async def hop(self, msg: ObsHop, ctx: TaskContext) -> str:
        result: str = await ctx.send(ObsEcho(text=msg.text), to="role:obs_echo", timeout=30)
        return f"front:{result}"


class HoldAgent(Agent):
    """Runs until the class's gate opens: keeps tasks in flight and queues full."""

    gate: asyncio.Event | None = None

    @handler
    async def hold(self, msg: ObsHold) -> int:
        assert self.gate is not None
        await self.gate.wait()
        return msg.n
