"""queenswarm: an asyncio multi-agent swarm with at-least-once delivery.

Example:
    >>> import asyncio
    >>> from swarm import Agent, Message, Swarm, handler
    >>> class Square(Message):
    ...     n: int
    >>> class Squarer(Agent):
    ...     @handler
    ...     async def square(self, msg: Square) -> int:
    ...         return msg.n ** 2
    >>> async def main():
    ...     async with Swarm(agents=[Squarer(concurrency=4)]) as swarm:
    ...         return await (await swarm.submit(Square(n=12))).result()
    >>> asyncio.run(main())
    144
"""

from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as _dist_version

try:
    __version__ = _dist_version("queenswarm")
except PackageNotFoundError:  # a source tree on sys.path, never installed
    __version__ = "0+unknown"

from swarm.agent import Agent, AgentContext, AgentState, SharedState, TaskContext, handler
from swarm.codec import DECODE_FAILURES, Codec
from swarm.envelopes import broadcast_envelope, task_envelope
from swarm.errors import (
    AclDenied,
    ConfigError,
    DecodeError,
    DiscoveryError,
    EncodeError,
    FencingError,
    HistoryUnavailable,
    LeadershipLost,
    MemoryStoreError,
    MemoryUnavailable,
    MemoryValidationError,
    MessageError,
    MessageTooLarge,
    NoRouteError,
    Reject,
    RoutingError,
    RuntimeClosed,
    SwarmError,
    SwarmTimeout,
    TaskDeadLettered,
    TaskError,
    TaskExpired,
    TaskFailed,
    TransportError,
)
from swarm.inprocess import InProcessRuntime
from swarm.ledger import (
    FINAL_STATES,
    MOVES,
    REDRIVE,
    InMemoryLedger,
    Ledger,
    TaskRecord,
    TaskState,
    legal_move,
)
from swarm.logging import configure_logging
from swarm.messages import (
    Command,
    CommandAction,
    Envelope,
    Kind,
    Message,
    UnknownMessage,
    lookup_message_type,
    message_type,
    new_id,
)
from swarm.queen import CommandBus, Intake, Queen, TaskHandle
from swarm.retry import RetryPolicy
from swarm.routing import Router
from swarm.runtime import (
    DeadLetter,
    EventCallback,
    QueueStats,
    ReplicaInfo,
    RoleInfo,
    Runtime,
    Subscription,
    result_of,
)
from swarm.settings import SwarmSettings
from swarm.swarm import Swarm
from swarm.tasks import TaskSet

# Modules kept as namespaces (``swarm.constants.CHANNEL_MEMORY_SYNC``), not re-exported.
# Subpackages with their own public API (``swarm.redis``) count as namespaces too.
_NAMESPACE_MODULES = (
    "cli",
    "client",
    "constants",
    "contract",
    "dashboard",
    "exposition",
    "history",
    "llm",
    "logging",
    "metrics",
    "redis",
    "service",
    "settings",
    "summary",
    "testing",
    "tracing",
)

__all__ = [
    "DECODE_FAILURES",
    "FINAL_STATES",
    "MOVES",
    "REDRIVE",
    "AclDenied",
    "Agent",
    "AgentContext",
    "AgentState",
    "Codec",
    "Command",
    "CommandAction",
    "CommandBus",
    "ConfigError",
    "DeadLetter",
    "DecodeError",
    "DiscoveryError",
    "EncodeError",
    "Envelope",
    "EventCallback",
    "FencingError",
    "HistoryUnavailable",
    "InMemoryLedger",
    "InProcessRuntime",
    "Intake",
    "Kind",
    "LeadershipLost",
    "Ledger",
    "MemoryStoreError",
    "MemoryUnavailable",
    "MemoryValidationError",
    "Message",
    "MessageError",
    "MessageTooLarge",
    "NoRouteError",
    "Queen",
    "QueueStats",
    "Reject",
    "ReplicaInfo",
    "RetryPolicy",
    "RoleInfo",
    "Router",
    "RoutingError",
    "Runtime",
    "RuntimeClosed",
    "SharedState",
    "Subscription",
    "Swarm",
    "SwarmError",
    "SwarmSettings",
    "SwarmTimeout",
    "TaskContext",
    "TaskDeadLettered",
    "TaskError",
    "TaskExpired",
    "TaskFailed",
    "TaskHandle",
    "TaskRecord",
    "TaskSet",
    "TaskState",
    "TransportError",
    "UnknownMessage",
    "broadcast_envelope",
    "configure_logging",
    "handler",
    "legal_move",
    "lookup_message_type",
    "message_type",
    "new_id",
    "result_of",
    "task_envelope",
]
