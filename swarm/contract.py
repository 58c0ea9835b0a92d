"""Rules of the delivery contract that both runtimes apply, written once.

* Which interruptions of a running handler cost the task an attempt: a
  hand-back (the runtime stops or the agent is unregistered, gracefully or
  not) is not a failure of the task and is free; a crash, a visibility
  timeout or a cancellation is charged, so a task that keeps killing its
  agent stays bounded.
* How a runtime obeys a Queen command and hands events to an agent
  (:class:`CommandTarget`, :func:`obey`, :func:`event_callback`).

Example:
    >>> from swarm.contract import charged
    >>> charged("shutdown"), charged("visibility timeout")
    (False, True)
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Protocol, TypeVar

import structlog

from swarm.agent.context import TaskContext
from swarm.errors import DecodeError
from swarm.messages import Command, CommandAction, Envelope, Kind
from swarm.metrics import REJECTED
from swarm.tracing import handler_span

if TYPE_CHECKING:
    from swarm.agent.base import Agent
    from swarm.agent.context import AgentContext
    from swarm.codec import Codec
    from swarm.runtime import EventCallback

__all__ = [
    "HANDBACK_REASONS",
    "CommandTarget",
    "ReplicaLike",
    "charged",
    "event_callback",
    "obey",
]

_log = structlog.get_logger("swarm.contract")

#: Interruption reasons of a hand-back: the task goes back with its attempt unchanged.
HANDBACK_REASONS = frozenset({"shutdown", "unregistered"})


def charged(reason: str) -> bool:
    """Whether an interrupted delivery counts as an attempt (see :data:`HANDBACK_REASONS`)."""
    return reason not in HANDBACK_REASONS


class ReplicaLike(Protocol):
    """What the shared handling needs of a runtime's replica record."""

    @property
    def agent(self) -> Agent: ...

    @property
    def context(self) -> AgentContext: ...

    @property
    def dead(self) -> bool: ...


R = TypeVar("R", bound=ReplicaLike)
R_contra = TypeVar("R_contra", bound=ReplicaLike, contravariant=True)


class CommandTarget(Protocol[R_contra]):
    """The runtime side of a Queen command: what each action does to a replica."""

    async def resume_replica(self, rep: R_contra) -> None:
        """The agent accepts tasks again: let it take work now."""
        ...

    async def return_queued(self, rep: R_contra) -> None:
        """The agent drains: hand back what it holds but has not started (attempt unchanged)."""
        ...

    async def unregister(self, agent_id: str, *, drain: bool = True) -> None:
        """The agent shuts down."""
        ...


async def obey(
    env: Envelope, codec: Codec, replicas: Iterable[R], target: CommandTarget[R]
) -> None:
    """Apply a command envelope from the queen-commands channel to every replica it names.

    A malformed command is counted (``malformed_command``) and dropped.
    """
    try:
        cmd = codec.decode_payload(env, Command)
    except DecodeError as exc:
        REJECTED.labels(reason="malformed_command").inc()
        _log.warning("rejected command", error=str(exc))
        return
    for rep in list(replicas):
        action = rep.agent.obey(cmd)
        if action is None:
            continue
        _log.info("command", action=action.value, agent_id=rep.agent.agent_id)
        if action is CommandAction.RESUME:
            await target.resume_replica(rep)
        elif action is CommandAction.DRAIN:
            await target.return_queued(rep)
        elif action is CommandAction.SHUTDOWN:
            await target.unregister(rep.agent.agent_id, drain=True)


def event_callback(rep: ReplicaLike, codec: Codec) -> EventCallback:
    """The subscription callback handing broadcast events to a replica's agent."""
    agent = rep.agent

    async def deliver(env: Envelope) -> None:
        if env.kind is Kind.EVENT and agent.handles(env.type) and not rep.dead:
            with handler_span(env, agent.agent_id):
                await agent.dispatch(env, TaskContext(rep.context, env), codec)

    return deliver
