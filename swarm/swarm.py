"""``Swarm``: a Queen and agents composed over a runtime, as an async context manager.

Example:
    >>> import asyncio
    >>> from swarm import Agent, Message, Swarm, handler
    >>> class Greet(Message):
    ...     name: str
    >>> class Greeter(Agent):
    ...     @handler
    ...     async def greet(self, msg: Greet) -> str:
    ...         return f"hello {msg.name}"
    >>> async def demo():
    ...     async with Swarm(agents=[Greeter()]) as swarm:
    ...         handle = await swarm.submit(Greet(name="bee"))
    ...         return await handle.result(timeout=5)
    >>> asyncio.run(demo())
    'hello bee'
"""

from __future__ import annotations

from collections.abc import Coroutine, Iterable
from types import TracebackType
from typing import TYPE_CHECKING, Any

from swarm.inprocess import InProcessRuntime
from swarm.ledger import TaskRecord
from swarm.messages import Envelope, Message
from swarm.queen.handle import TaskHandle
from swarm.queen.queen import Queen
from swarm.retry import RetryPolicy
from swarm.runtime import Runtime

if TYPE_CHECKING:
    from swarm.agent.base import Agent

__all__ = ["Swarm"]


class Swarm:
    """Starts a runtime, a Queen and agents; drains and stops them on exit.

    Args:
        agents: Agents to register on entry.
        runtime: Any :class:`~swarm.runtime.Runtime` (default: a new
            :class:`~swarm.inprocess.InProcessRuntime`).
        queen: A Queen to use (default: one over ``runtime``).
        retry_policy: Retry policy for the default runtime and Queen.
        drain_timeout: Seconds to let accepted work finish on exit.
    """

    def __init__(
        self,
        *,
        agents: Iterable[Agent] = (),
        runtime: Runtime | None = None,
        queen: Queen | None = None,
        retry_policy: RetryPolicy | None = None,
        drain_timeout: float | None = 30.0,
    ) -> None:
        self.runtime: Runtime = runtime or InProcessRuntime(retry_policy=retry_policy)
        self.queen = queen or Queen(runtime=self.runtime, retry_policy=retry_policy)
        self._agents = list(agents)
        self.drain_timeout = drain_timeout
        self.leftovers: list[Envelope] = []

    async def __aenter__(self) -> Swarm:
        await self.runtime.start()
        try:
            for agent in self._agents:
                await self.runtime.register(agent)
        except BaseException:
            await self.runtime.stop(drain=False)
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.leftovers = await self.runtime.stop(drain=exc is None, timeout=self.drain_timeout)

    @property
    def agents(self) -> list[Agent]:
        """Agents this swarm registered."""
        return list(self._agents)

    async def add_agent(self, agent: Agent) -> None:
        """Register another agent while running."""
        await self.runtime.register(agent)
        self._agents.append(agent)

    def submit(
        self,
        message: Message,
        *,
        to: str = "",
        priority: int = 0,
        timeout: float | None = None,
        deadline: float | None = None,
        idempotency_key: str | None = None,
        max_attempts: int | None = None,
    ) -> Coroutine[Any, Any, TaskHandle]:
        """Submit a task through the Queen; see :meth:`swarm.queen.intake.Intake.submit`.

        Returns the intake's coroutine to await (``await swarm.submit(...)``):
        not itself a coroutine, so a task costs one coroutine frame less.
        """
        # By position: cheaper than seven keywords, per task.
        return self.queen.intake.submit(
            message, to, priority, timeout, deadline, idempotency_key, max_attempts
        )

    async def status(self, task_id: str) -> TaskRecord | None:
        """A task's ledger record."""
        return await self.queen.status(task_id)

    async def publish(self, topic: str, message: Message) -> None:
        """Broadcast an event from the Queen."""
        await self.runtime.publish(topic, message, sender=self.queen.queen_id)

    async def run_until_idle(self, *, timeout: float | None = None) -> None:
        """Wait until every accepted task is final, then stop the runtime."""
        await self.runtime.stop_when_idle(timeout=timeout)
