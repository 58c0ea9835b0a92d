"""Agents of the deploy/ tests (loaded by ``python -m swarm.agent`` subprocesses)."""

from __future__ import annotations

from swarm import Agent, Message, handler


class Ping(Message):
    text: str


class Doomed(Message):
    n: int


class PingAgent(Agent):
    role = "deploy_ping"

    @handler
    async def ping(self, msg: Ping) -> str:
        return msg.text[::-1]


class DoomedAgent(Agent):
    """Fails every attempt: its tasks are retried, then dead-lettered."""

    role = "deploy_doomed"

    @handler
    async def doomed(self, msg: Doomed) -> int:
        raise RuntimeError(f"task {msg.n} cannot succeed")
