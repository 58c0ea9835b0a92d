"""What an agent sees of the swarm: ``send``, ``publish``, a logger, memory, discovery and
the model layer (``ctx.llm``) and, on the Redis runtime, the home of state that must be one
per swarm (``ctx.shared_state``).

Example:
    >>> from swarm import InProcessRuntime
    >>> from swarm.agent.context import AgentContext
    >>> ctx = AgentContext(runtime=InProcessRuntime(), agent_id="a-1", role="scout")
    >>> (ctx.agent_id, ctx.role, ctx.memory, ctx.llm.available)
    ('a-1', 'scout', None, False)
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import structlog

from swarm.constants import CHANNEL_AGENT_COMMUNICATION
from swarm.messages import Envelope, Message

if TYPE_CHECKING:
    from swarm.agent.shared import SharedState
    from swarm.llm.client import LlmScope
    from swarm.runtime import Runtime

__all__ = ["AgentContext", "TaskContext"]


class AgentContext:
    """An agent's handle on the swarm, bound to one runtime.

    Args:
        runtime: The runtime the agent is registered with.
        agent_id: The agent's id (the ``sender`` of what it sends).
        role: The agent's role.
        memory: The memory coordinator, when one is configured.
        discovery: The service registry, when one is configured.
        llm: The model layer (:class:`swarm.llm.Llm`); default: the runtime's ``llm``
            attribute, else an offline one.

    Attributes:
        shared_state: Where state shared by every replica lives
            (:class:`~swarm.agent.shared.SharedState`), from the runtime's
            ``shared_state``; None on a runtime of one process.
    """

    __slots__ = (
        "_llm", "_llm_scope", "agent_id", "discovery", "log", "memory", "role", "runtime",
        "shared_state",
    )

    def __init__(
        self,
        *,
        runtime: Runtime,
        agent_id: str,
        role: str,
        memory: Any = None,
        discovery: Any = None,
        llm: Any = None,
    ) -> None:
        self.runtime = runtime
        self.agent_id = agent_id
        self.role = role
        self.memory = memory
        self.discovery = discovery
        self.log: Any = structlog.get_logger("swarm.agent").bind(agent_id=agent_id, role=role)
        self._llm = llm if llm is not None else getattr(runtime, "llm", None)
        self._llm_scope: LlmScope | None = None
        self.shared_state: SharedState | None = getattr(runtime, "shared_state", None)

    @property
    def llm(self) -> LlmScope:
        """The model layer bound to this agent; check ``ctx.llm.available`` or catch
        :class:`~swarm.llm.LlmError` and run the deterministic path."""
        if self._llm_scope is None:
            # Imported on first use: swarms that never ask pay nothing.
            from swarm.llm.client import offline

            self._llm_scope = (self._llm or offline()).scope(role=self.role, agent=self.agent_id)
        return self._llm_scope

    async def send(
        self,
        message: Message,
        *,
        to: str = "",
        timeout: float | None = None,
        priority: int = 0,
    ) -> Any:
        """Send a task and await its result (request/response).

        Args:
            message: The task payload.
            to: ``agent:<id>``, ``role:<name>``, or empty for any capable agent.
            timeout: Seconds to wait for the result.
            priority: Higher runs first under backlog.

        Raises:
            TaskFailed, TaskDeadLettered, TaskExpired, SwarmTimeout, NoRouteError.
        """
        return await self.runtime.send(
            message, to=to, sender=self.agent_id, timeout=timeout, priority=priority
        )

    async def publish(self, message: Message, *, topic: str = CHANNEL_AGENT_COMMUNICATION) -> None:
        """Broadcast an event on a topic (at-most-once)."""
        await self.runtime.publish(topic, message, sender=self.agent_id)


class TaskContext:
    """The context of one delivery: the agent's context plus the envelope being handled."""

    __slots__ = ("_log", "agent", "envelope")

    def __init__(self, agent: AgentContext, envelope: Envelope) -> None:
        self.agent = agent
        self.envelope = envelope
        self._log: Any = None

    @property
    def task_id(self) -> str:
        """Id of the task (or event) being handled."""
        return self.envelope.id

    @property
    def attempt(self) -> int:
        """Delivery attempt, 1 on first delivery."""
        return self.envelope.attempt

    @property
    def memory(self) -> Any:
        """The memory coordinator, when configured."""
        return self.agent.memory

    @property
    def discovery(self) -> Any:
        """The service registry, when configured."""
        return self.agent.discovery

    @property
    def llm(self) -> LlmScope:
        """The model layer, accounted and budgeted to this task as well."""
        return self.agent.llm.for_task(self.envelope.id)

    @property
    def log(self) -> Any:
        """A structlog logger bound to the agent and this task."""
        # Bound lazily: most handlers never log, and binding costs per task.
        if self._log is None:
            self._log = self.agent.log.bind(task_id=self.envelope.id, attempt=self.envelope.attempt)
        return self._log

    async def send(
        self, message: Message, *, to: str = "", timeout: float | None = None, priority: int = 0
    ) -> Any:
        """Send a task and await its result; see :meth:`AgentContext.send`."""
        return await self.agent.send(message, to=to, timeout=timeout, priority=priority)

    async def publish(self, message: Message, *, topic: str = CHANNEL_AGENT_COMMUNICATION) -> None:
        """Broadcast an event; see :meth:`AgentContext.publish`."""
        await self.agent.publish(message, topic=topic)
