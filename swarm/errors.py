"""The exception hierarchy of queenswarm.

Every error the framework raises on purpose derives from :class:`SwarmError`,
so ``except SwarmError`` catches all of them::

    SwarmError
    ├── ConfigError              bad settings, DSN or CLI argument
    ├── RuntimeClosed            submit/send on a runtime that is stopping or stopped
    ├── TransportError           a server (Redis, PostgreSQL, Consul) could not be reached
    │   ├── DiscoveryError       the service registry (Consul) failed or is unreachable
    │   │   └── AclDenied        Consul refused the ACL token (names the permission, not the token)
    │   ├── MemoryUnavailable    the memory store of record is down (also a MemoryStoreError)
    │   └── HistoryUnavailable   the task history (PostgreSQL) could not be read or written
    ├── MessageError             something wrong with a message itself
    │   ├── EncodeError          the payload cannot be encoded (raised at the sender)
    │   ├── DecodeError          bytes on the wire are not a valid envelope or payload
    │   └── MessageTooLarge      the encoded message exceeds the codec's size limit
    ├── RoutingError             the task cannot be routed
    │   └── NoRouteError         no registered agent handles the task type / recipient
    ├── SwarmTimeout             waiting for a result took longer than allowed
    │                            (also a :class:`TimeoutError`)
    ├── TaskError                a task ended without a result
    │   ├── TaskFailed           the handler raised a non-retryable error
    │   ├── TaskDeadLettered     attempts were exhausted; the task sits in the DLQ
    │   └── TaskExpired          the deadline passed before the task started
    ├── FencingError             a write carried a stale leadership epoch
    ├── LeadershipLost           a leadership lease expired or was taken over before renewal
    └── MemoryStoreError         the memory coordinator could not do what was asked
        ├── MemoryValidationError  bad memory input: oversized content, bad namespace,
        │                          non-finite confidence (also a :class:`ValueError`)
        └── MemoryUnavailable      see above: ``store`` did not commit

Handlers may raise :class:`Reject` to fail a task at once, without retries.

Example:
    >>> from swarm.errors import SwarmError, NoRouteError
    >>> issubclass(NoRouteError, SwarmError)
    True
"""

from __future__ import annotations

__all__ = [
    "AclDenied",
    "ConfigError",
    "DecodeError",
    "DiscoveryError",
    "EncodeError",
    "FencingError",
    "HistoryUnavailable",
    "LeadershipLost",
    "MemoryStoreError",
    "MemoryUnavailable",
    "MemoryValidationError",
    "MessageError",
    "MessageTooLarge",
    "NoRouteError",
    "Reject",
    "RoutingError",
    "RuntimeClosed",
    "SwarmError",
    "SwarmTimeout",
    "TaskDeadLettered",
    "TaskError",
    "TaskExpired",
    "TaskFailed",
    "TransportError",
]


class SwarmError(Exception):
    """Base class of every queenswarm error."""


class ConfigError(SwarmError):
    """Invalid settings, DSN or command-line argument."""


class RuntimeClosed(SwarmError):
    """The runtime is stopping or stopped and accepts no new work."""


class TransportError(SwarmError):
    """A backing server could not be reached or answered with an error."""


class DiscoveryError(TransportError):
    """The service registry (Consul) is unreachable or answered with an error."""


class AclDenied(DiscoveryError):
    """Consul refused the request's ACL token.

    The message names the permission the token lacks (e.g. ``service:write``),
    never the token itself.

    Attributes:
        permission: The ACL permission the request needed.
    """

    def __init__(self, message: str, *, permission: str) -> None:
        super().__init__(message)
        self.permission = permission


class MessageError(SwarmError):
    """Base class of message encoding and validation errors."""


class EncodeError(MessageError):
    """A payload could not be encoded. Raised at the sender, never at the agent."""


class DecodeError(MessageError):
    """Bytes received are not a valid envelope, or a payload does not fit its type."""


class MessageTooLarge(MessageError):
    """An encoded message is larger than the configured limit.

    Attributes:
        size: The encoded size in bytes.
        limit: The configured limit in bytes.
    """

    def __init__(self, size: int, limit: int) -> None:
        super().__init__(f"message of {size} bytes exceeds the limit of {limit} bytes")
        self.size = size
        self.limit = limit


class RoutingError(SwarmError):
    """A task could not be routed."""


class NoRouteError(RoutingError):
    """No registered agent can take the task (unknown type, role or agent id)."""


class SwarmTimeout(SwarmError, TimeoutError):
    """Waiting for a task's outcome exceeded the allowed time."""


class TaskError(SwarmError):
    """A task ended without a result.

    Attributes:
        task_id: The id of the task.
        error: The last error text recorded for the task, if any.
    """

    def __init__(self, task_id: str, error: str | None = None) -> None:
        detail = f": {error}" if error else ""
        super().__init__(f"task {task_id} {self._verb}{detail}")
        self.task_id = task_id
        self.error = error

    _verb = "ended without a result"


class TaskFailed(TaskError):
    """The handler rejected the task or failed with a non-retryable error."""

    _verb = "failed"


class TaskDeadLettered(TaskError):
    """The task exhausted its attempts and was moved to the dead-letter queue."""

    _verb = "was dead-lettered"


class TaskExpired(TaskError):
    """The task's deadline passed before it could start."""

    _verb = "expired"


class FencingError(SwarmError):
    """A write carried a leadership epoch older than the current one."""


class LeadershipLost(SwarmError):
    """A leadership lease expired, was invalidated or was taken over before it was renewed."""


class MemoryStoreError(SwarmError):
    """The memory coordinator could not do what was asked."""


class MemoryValidationError(MemoryStoreError, ValueError):
    """A memory was rejected before anything was written: the input itself is wrong."""


class MemoryUnavailable(MemoryStoreError, TransportError):
    """The memory store of record could not be reached; the write did not commit."""


class HistoryUnavailable(TransportError):
    """The task history (PostgreSQL) could not be read or written."""


class Reject(Exception):  # named as the verb it is at the raise site: ``raise Reject(...)``
    """Raise from a handler to fail the task at once, without further attempts."""
