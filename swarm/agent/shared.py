"""Where agent state that must be one per swarm lives: :class:`SharedState`.

A role with several replicas (in one process or many) must not keep state
that has to agree across them (a circuit breaker, a rate budget, a dedup set)
in the agent object: each replica would hold its own copy. On the Redis
runtime every agent's context carries ``ctx.shared_state``, a handle on the
swarm's Redis and key prefix, from which an agent builds a store once in
:meth:`~swarm.agent.Agent.on_start`. The in-process runtime has one process
and gives ``None``: state in the agent's process is then the swarm's.

Example:
    >>> from swarm import InProcessRuntime
    >>> from swarm.agent.context import AgentContext
    >>> AgentContext(runtime=InProcessRuntime(), agent_id="a-1", role="r").shared_state is None
    True
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["SharedState"]


@dataclass(frozen=True, slots=True)
class SharedState:
    """The home every replica of every role shares.

    Attributes:
        redis: The runtime's redis.asyncio command client. Write atomic
            read-modify-write steps as Lua scripts, name keys with the swarm's
            ``prefix`` and a role hash tag (declare them in
            :mod:`swarm.constants`), give them a TTL, and turn
            ``redis.exceptions.RedisError`` into :class:`~swarm.errors.TransportError`.
        prefix: The swarm's key prefix.
    """

    redis: Any
    prefix: str
