"""The HTTP API's request and response types: they validate requests and make the OpenAPI doc.

Every body the API reads is decoded into one of these msgspec Structs (a bad
field is a 400 naming it), and every body it writes is one of them; the
OpenAPI document's schemas are generated from the same types
(:mod:`swarm.service.openapi`), never written by hand.

Example:
    >>> import msgspec
    >>> from swarm.service.api import SubmitRequest
    >>> msgspec.json.decode(b'{"type": "Ping", "payload": {"n": 1}}', type=SubmitRequest)
    SubmitRequest(type='Ping', payload={'n': 1}, to='', priority=0, deadline=None, \
timeout=None, max_attempts=None)
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta

from swarm.retry import RetryPolicy

__all__ = [
    "ConfigChange",
    "ConfigView",
    "DeadLetterView",
    "FieldError",
    "Health",
    "LeaderView",
    "MemoryStoreRequest",
    "MemoryStored",
    "MemoryView",
    "Problem",
    "Readiness",
    "RecallHitView",
    "RedriveResult",
    "ReplicaView",
    "RetryPolicyView",
    "RoleView",
    "SubmitRequest",
    "Submitted",
    "TaskList",
    "TaskView",
]

_RETRY = RetryPolicy()
Priority = Annotated[int, Meta(ge=-1000, le=1000, description="Higher runs first under backlog")]
Seconds = Annotated[float, Meta(gt=0, le=31_536_000)]
UnixTime = Annotated[float, Meta(ge=0, le=32_503_680_000, description="Unix time (seconds)")]
Name = Annotated[str, Meta(min_length=1, max_length=200)]
TaskState = Literal["queued", "running", "done", "failed", "dead", "expired"]


class SubmitRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """A task to submit: a message type by its wire name and its fields as ``payload``.

    Attributes:
        type: Wire name of a message type some agent handles (see ``GET /v1/roles``).
        payload: The message's fields.
        to: ``agent:<id>``, ``role:<name>`` (or a bare role), or empty for any handler.
        priority: Higher runs first under backlog.
        deadline: Unix time after which the task must not start.
        timeout: Seconds from now after which the task must not start.
        max_attempts: Attempts before the task is dead-lettered.
    """

    type: Name
    payload: dict[str, Any] = msgspec.field(default_factory=dict)
    to: Annotated[str, Meta(max_length=300)] = ""
    priority: Priority = 0
    deadline: UnixTime | None = None
    timeout: Seconds | None = None
    max_attempts: Annotated[int, Meta(ge=1, le=1000)] | None = None


class TaskView(msgspec.Struct, kw_only=True):
    """A task's ledger record; ``result`` is the handler's return value once ``done``."""

    task_id: str
    type: str
    recipient: str
    state: TaskState
    attempts: int
    priority: int
    idempotency_key: str | None = None
    agent_id: str | None = None
    error: str | None = None
    result: Any = None
    created_at: float | None = None
    started_at: float | None = None
    finished_at: float | None = None
    epoch: int = 0


class TaskList(msgspec.Struct, kw_only=True):
    """A page of tasks: live ones newest created first, then finished ones newest finished first.

    Attributes:
        tasks: This page.
        cursor: Pass as ``cursor=`` for the next page; None on the last page.
        next: The next page's path and query (the same filters); None on the last page.
    """

    tasks: list[TaskView]
    cursor: str | None = None
    next: str | None = None


class ReplicaView(msgspec.Struct, kw_only=True):
    """One agent instance."""

    agent_id: str
    role: str
    state: str
    inflight: int
    capacity: int
    healthy: bool | None = None


class RoleView(msgspec.Struct, kw_only=True):
    """A role: its types, replicas, health and queue.

    Attributes:
        queue: Tasks waiting to start, by priority (as a string key).
        oldest_waiting: Seconds the oldest waiting task has waited.
    """

    role: str
    types: list[str]
    replicas: list[ReplicaView]
    healthy: int
    queue: dict[str, int]
    oldest_waiting: float | None = None


class DeadLetterView(msgspec.Struct, kw_only=True):
    """A task that exhausted its attempts."""

    task_id: str
    type: str
    recipient: str
    attempts: int
    error: str
    failed_at: float


class RedriveResult(msgspec.Struct, kw_only=True):
    """Tasks moved back to their queues."""

    redriven: list[str]


class MemoryStoreRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """A memory to store (see :meth:`memory.MemoryCoordinator.store`)."""

    namespace: Annotated[str, Meta(min_length=1, max_length=200)]
    content: Annotated[str, Meta(min_length=1)]
    kind: Literal["finding", "observation", "synthesis"] = "finding"
    tags: Annotated[list[Annotated[str, Meta(max_length=100)]], Meta(max_length=50)] = []
    confidence: Annotated[float, Meta(ge=0, le=1)] = 1.0
    ttl: Seconds | None = None
    sources: Annotated[list[Annotated[str, Meta(max_length=200)]], Meta(max_length=100)] = []


class MemoryStored(msgspec.Struct, kw_only=True):
    """The id of a stored memory."""

    id: str


class MemoryView(msgspec.Struct, kw_only=True):
    """A memory."""

    id: str
    namespace: str
    content: str
    kind: str
    author: str
    tags: list[str]
    confidence: float
    score: float
    created_at: float
    expires_at: float | None = None
    task_id: str | None = None
    sources: list[str] = []


class RecallHitView(msgspec.Struct, kw_only=True):
    """A recalled memory and its relevance."""

    memory: MemoryView
    score: float


class RetryPolicyView(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Backoff between attempts (see :class:`swarm.retry.RetryPolicy`)."""

    max_attempts: Annotated[int, Meta(ge=1, le=1000)] = _RETRY.max_attempts
    base_delay: Annotated[float, Meta(ge=0, le=3600)] = _RETRY.base_delay
    max_delay: Annotated[float, Meta(ge=0, le=86400)] = _RETRY.max_delay
    jitter: Annotated[float, Meta(ge=0, le=1)] = _RETRY.jitter


class ConfigView(msgspec.Struct, kw_only=True):
    """Live config in force (``version`` counts changes seen)."""

    retry_policy: RetryPolicyView | None
    concurrency: dict[str, int]
    version: int


class ConfigChange(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """A live config change: given fields are written, the rest stay."""

    retry_policy: RetryPolicyView | None = None
    concurrency: dict[
        Annotated[str, Meta(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9_.-]+$")],
        Annotated[int, Meta(ge=1, le=10_000)],
    ] = {}


class LeaderView(msgspec.Struct, kw_only=True):
    """Who leads."""

    queen_id: str
    url: str = ""
    epoch: int = 0


class Health(msgspec.Struct, kw_only=True):
    """The process lives."""

    status: Literal["ok"] = "ok"


class Readiness(msgspec.Struct, kw_only=True):
    """The runtime is connected; this Queen leads or stands by."""

    status: Literal["leading", "standby", "draining"]
    queen_id: str
    leader: LeaderView | None = None


class FieldError(msgspec.Struct, kw_only=True):
    """What is wrong with one field of a request."""

    field: str
    message: str


class Problem(msgspec.Struct, kw_only=True, omit_defaults=True):
    """An RFC 9457 problem document; ``code`` is stable and meant for programs.

    Attributes:
        type: URI naming the problem type (``urn:queenswarm:problem:<code>``).
        title: Short summary of the problem type.
        status: The HTTP status code.
        detail: What happened this time.
        code: Stable machine-readable code.
        errors: Offending fields (400s).
        leader: Who leads (503 from a standby).
    """

    type: str
    title: str
    status: int
    code: str
    detail: str = ""
    instance: str = ""
    errors: list[FieldError] = []
    leader: LeaderView | None = None


class Submitted(msgspec.Struct, kw_only=True):
    """A task accepted (202), or the task an ``Idempotency-Key`` already named (200).

    Attributes:
        task_id: The task's id; ``GET /v1/tasks/{task_id}`` reads it.
        state: Its state when answered.
        replayed: Whether the key named an earlier task (nothing new was submitted).
        task: The task's record, when the request waited for it (``Prefer: wait=N``).
    """

    task_id: str
    state: TaskState = "queued"
    replayed: bool = False
    task: TaskView | None = None
