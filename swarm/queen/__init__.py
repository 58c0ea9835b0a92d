"""The Queen orchestrator and its parts; ``python -m swarm.queen`` runs the CLI."""

from swarm.queen.commands import CommandBus
from swarm.queen.handle import TaskHandle
from swarm.queen.intake import Intake
from swarm.queen.queen import Queen

__all__ = ["CommandBus", "Intake", "Queen", "TaskHandle"]
