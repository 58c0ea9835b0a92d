"""Agents: the base class, the handler decorator and the contexts handlers receive."""

from swarm.agent.base import Agent, AgentState, handler
from swarm.agent.context import AgentContext, TaskContext
from swarm.agent.shared import SharedState

__all__ = ["Agent", "AgentContext", "AgentState", "SharedState", "TaskContext", "handler"]
