"""The Runtime Protocol: the only thing agents and the Queen see of transport.

:class:`~swarm.inprocess.InProcessRuntime` (the embedded default) and the Redis
runtime implement it with one delivery contract:

* at-least-once: a task is acked only after its handler returned; a handler
  that raises is retried with exponential backoff and jitter up to the
  envelope's ``max_attempts``, then dead-lettered (listable, re-drivable);
* a task whose agent crashed, was cancelled or outlived the visibility
  timeout is redelivered (to another replica when there is one);
* under backlog higher priority first, FIFO within a priority;
* ``recipient`` targets an agent id, a role (least-loaded replica first) or,
  when empty, any agent able to handle the type;
* a second submit with a used idempotency key returns the first task's id;
* a task past its deadline is not started and ends ``expired``;
* stopping with ``drain=True`` finishes in-flight work; nothing accepted is lost.

Example:
    >>> from swarm.runtime import Runtime
    >>> from swarm.inprocess import InProcessRuntime
    >>> isinstance(InProcessRuntime(), Runtime)
    True
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from swarm.codec import Codec
from swarm.errors import SwarmError, TaskDeadLettered, TaskExpired, TaskFailed
from swarm.ledger import Ledger, TaskRecord, TaskState
from swarm.messages import Envelope, Message
from swarm.retry import RetryPolicy

if TYPE_CHECKING:
    from swarm.agent.base import Agent

__all__ = [
    "DeadLetter",
    "EventCallback",
    "QueueStats",
    "ReplicaInfo",
    "RoleInfo",
    "Runtime",
    "Subscription",
    "result_of",
]

EventCallback = Callable[[Envelope], Awaitable[None]]

# ``TaskState.DONE`` goes through the enum metaclass's ``__getattr__`` hook per
# read; result_of runs once per awaited task.
_DONE = TaskState.DONE


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A task that exhausted its attempts.

    Attributes:
        envelope: The task as last delivered.
        error: The last error.
        failed_at: Unix time it was dead-lettered.
    """

    envelope: Envelope
    error: str
    failed_at: float


@dataclass(frozen=True, slots=True)
class ReplicaInfo:
    """One running agent instance.

    Attributes:
        agent_id: The agent's id.
        state: Lifecycle state name.
        inflight: Tasks it is running.
        capacity: Tasks it may run at once.
    """

    agent_id: str
    state: str
    inflight: int
    capacity: int


@dataclass(frozen=True, slots=True)
class RoleInfo:
    """What the runtime knows of a role.

    Attributes:
        role: The role name.
        types: Message types its agents handle.
        replicas: Its instances.
    """

    role: str
    types: frozenset[str]
    replicas: tuple[ReplicaInfo, ...] = field(default=())


@dataclass(frozen=True, slots=True)
class QueueStats:
    """Tasks of a role waiting to start (an optional runtime report).

    Attributes:
        depth: Waiting tasks by priority.
        oldest_age: Seconds the oldest waiting task has waited, if any waits.
    """

    depth: dict[int, int]
    oldest_age: float | None = None


class Subscription(Protocol):
    """A live topic subscription."""

    async def close(self) -> None:
        """Stop receiving; idempotent."""
        ...


@runtime_checkable
class Runtime(Protocol):
    """Delivers tasks, results and broadcasts between agents and the Queen."""

    @property
    def node_id(self) -> str:
        """Id of this runtime instance; results for its submitters come back here."""
        ...

    @property
    def codec(self) -> Codec:
        """The codec every message passes through."""
        ...

    @property
    def ledger(self) -> Ledger:
        """Where task states are recorded."""
        ...

    @property
    def retry_policy(self) -> RetryPolicy:
        """Backoff used between attempts."""
        ...

    async def start(self) -> None:
        """Start background work (delivery, reaper, subscriptions)."""
        ...

    async def stop(self, *, drain: bool = True, timeout: float | None = None) -> list[Envelope]:
        """Stop; with ``drain``, finish accepted work first.

        Returns:
            Tasks accepted but not finished when ``timeout`` ran out (for a
            durable runtime they also stay in the store): never silently lost.
        """
        ...

    async def stop_when_idle(self, *, timeout: float | None = None) -> None:
        """Wait until every accepted task reached a final state, then stop."""
        ...

    async def register(self, agent: Agent) -> None:
        """Start an agent and deliver its role's tasks to it."""
        ...

    async def unregister(self, agent_id: str, *, drain: bool = True) -> None:
        """Stop delivering to an agent; with ``drain``, let its in-flight work finish."""
        ...

    async def submit(self, envelope: Envelope) -> str:
        """Durably accept a task.

        Returns:
            The id of the task in effect: the envelope's, or the earlier task's
            when the idempotency key was used before.

        Raises:
            RuntimeClosed, NoRouteError, MessageTooLarge, EncodeError.
        """
        ...

    async def wait(self, task_id: str, *, timeout: float | None = None) -> TaskRecord:
        """Wait for a task's final ledger record.

        Raises:
            SwarmTimeout: Not final within ``timeout``.
            KeyError: Unknown task id.
        """
        ...

    async def send(
        self,
        message: Message,
        *,
        to: str = "",
        sender: str,
        timeout: float | None = None,
        priority: int = 0,
        max_attempts: int | None = None,
        idempotency_key: str | None = None,
    ) -> Any:
        """Submit a task and return its decoded result (request/response).

        Raises:
            TaskFailed, TaskDeadLettered, TaskExpired, SwarmTimeout, NoRouteError.
        """
        ...

    async def publish(self, topic: str, message: Message, *, sender: str) -> None:
        """Broadcast an event to a topic's subscribers (at-most-once)."""
        ...

    async def subscribe(self, topic: str, callback: EventCallback) -> Subscription:
        """Call ``callback`` with every envelope published on ``topic``."""
        ...

    async def dead_letters(self, *, limit: int = 100) -> list[DeadLetter]:
        """List dead-lettered tasks, oldest first."""
        ...

    async def redrive(self, task_id: str) -> bool:
        """Move a dead-lettered task back to its queue with a fresh attempt budget."""
        ...

    async def directory(self) -> dict[str, RoleInfo]:
        """Roles, the types they handle and their replicas."""
        ...


def result_of(codec: Codec, record: TaskRecord) -> Any:
    """Return the decoded result of a final task record, or raise what ended it.

    Raises:
        TaskFailed, TaskDeadLettered, TaskExpired: The task ended without a result.
        SwarmError: The record is not final yet.
    """
    state = record.state
    if state is _DONE:
        if record.result == b"\xc0":
            return None  # msgpack nil: skip the decoder for the common no-result case
        return codec.decode_value(record.result_type, record.result)
    if state is TaskState.FAILED:
        raise TaskFailed(record.task_id, record.error)
    if state is TaskState.DEAD:
        raise TaskDeadLettered(record.task_id, record.error)
    if state is TaskState.EXPIRED:
        raise TaskExpired(record.task_id, record.error)
    raise SwarmError(f"task {record.task_id} is still {state.value}")
