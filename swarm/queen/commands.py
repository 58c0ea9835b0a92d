"""Command broadcast on the queen-commands channel: pause, resume, drain, shutdown.

Commands are broadcasts (at-most-once); each runtime applies them to its
local agents matching the role or agent id given.

Example:
    >>> from swarm.queen.commands import CommandBus
    >>> CommandBus.__name__
    'CommandBus'
"""

from __future__ import annotations

from swarm.constants import CHANNEL_QUEEN_COMMANDS
from swarm.messages import Command, CommandAction
from swarm.runtime import Runtime

__all__ = ["CommandBus"]


class CommandBus:
    """Publishes :class:`~swarm.messages.Command` messages.

    Args:
        runtime: The runtime to publish through.
        sender: The Queen's id.
    """

    def __init__(self, *, runtime: Runtime, sender: str) -> None:
        self.runtime = runtime
        self.sender = sender

    async def send(self, action: CommandAction, *, role: str = "", agent_id: str = "") -> None:
        """Broadcast one command to the agents matching ``role`` / ``agent_id`` (all if empty)."""
        await self.runtime.publish(
            CHANNEL_QUEEN_COMMANDS,
            Command(action=action, role=role, agent_id=agent_id),
            sender=self.sender,
        )

    async def pause(self, *, role: str = "", agent_id: str = "") -> None:
        """Agents stop taking new tasks; in-flight ones finish."""
        await self.send(CommandAction.PAUSE, role=role, agent_id=agent_id)

    async def resume(self, *, role: str = "", agent_id: str = "") -> None:
        """Paused agents take tasks again."""
        await self.send(CommandAction.RESUME, role=role, agent_id=agent_id)

    async def drain(self, *, role: str = "", agent_id: str = "") -> None:
        """Agents finish in-flight work and take no more."""
        await self.send(CommandAction.DRAIN, role=role, agent_id=agent_id)

    async def shutdown(self, *, role: str = "", agent_id: str = "") -> None:
        """Agents drain, then leave the swarm."""
        await self.send(CommandAction.SHUTDOWN, role=role, agent_id=agent_id)
