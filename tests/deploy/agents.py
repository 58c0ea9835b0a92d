"""Agents of the deploy/ tests, run by ``python -m swarm.agent`` and ``python -m swarm.queen``."""

from __future__ import annotations

from typing import ClassVar

from swarm import Agent, Message, handler
from swarm.agent.context import TaskContext
from swarm.service.bundle import Bundle


# Wire names are global: explicit ones keep these apart from other tests' Ping and Note.
class Ping(Message):
    type_name: ClassVar[str] = "deploy.ping"
    text: str


class Doomed(Message):
    type_name: ClassVar[str] = "deploy.doomed"
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


class Note(Message):
    type_name: ClassVar[str] = "deploy.note"
    text: str


class MemoAgent(Agent):
    """Stores each note in the swarm's memory and reads it back."""

    role = "deploy_memo"

    @handler
    async def note(self, msg: Note, ctx: TaskContext) -> str:
        memory_id = await ctx.memory.store(
            namespace="deploy.notes", content=msg.text, author=self.role
        )
        found = await ctx.memory.get(memory_id)
        assert found is not None
        return str(found.content)


#: For ``python -m swarm.queen --agents tests.deploy.agents:bundle``.
bundle = Bundle(name="deploy", agents=lambda: [MemoAgent(concurrency=4)])
