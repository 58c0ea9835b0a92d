"""The task ledger: one record per accepted task, with its state, attempts and timings.

:class:`Ledger` is the Protocol that the in-memory, Redis and PostgreSQL
ledgers implement; :class:`InMemoryLedger` is the embedded default.

States::

    queued ──► running ──► done
      ▲           │
      └─(retry)───┤──► failed    (rejected / non-retryable)
                  └──► dead      (attempts exhausted; in the dead-letter queue)
    queued ──► expired           (deadline passed before start)

Example:
    >>> import asyncio
    >>> from swarm.ledger import InMemoryLedger, TaskRecord, TaskState
    >>> async def demo():
    ...     ledger = InMemoryLedger()
    ...     rec = await ledger.create(TaskRecord(task_id="t1", type="Ping", recipient="role:x"))
    ...     await ledger.update("t1", TaskState.DONE)
    ...     return (await ledger.get("t1")).state
    >>> asyncio.run(demo())
    <TaskState.DONE: 'done'>
"""

from __future__ import annotations

import enum
import time
from collections.abc import Callable
from typing import Protocol, runtime_checkable

import msgspec

from swarm.messages import Envelope

__all__ = ["FINAL_STATES", "InMemoryLedger", "Ledger", "TaskRecord", "TaskState"]


class TaskState(enum.StrEnum):
    """Where a task is in its life."""

    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    DEAD = "dead"
    EXPIRED = "expired"


FINAL_STATES = frozenset({TaskState.DONE, TaskState.FAILED, TaskState.DEAD, TaskState.EXPIRED})
#: An in-memory ledger with an age bound looks for expired final records
#: once this many more tasks finished.
_AGE_CHECK_EVERY = 10_000

# Members read on the hot path: ``TaskState.DONE`` goes through the enum
# metaclass's ``__getattr__`` hook (~0.1 us per read); a module global does not.
_QUEUED = TaskState.QUEUED
_RUNNING = TaskState.RUNNING
_DONE = TaskState.DONE


class TaskRecord(msgspec.Struct, kw_only=True, gc=False):
    """A task's ledger entry.

    A msgspec Struct with ``gc=False``: its fields are atomic, so it cannot be
    part of a reference cycle, and a ledger of a million records costs the
    garbage collector nothing.

    Attributes:
        task_id: The task id (the envelope id).
        type: Wire name of the payload type.
        recipient: Where it was routed.
        state: Current state.
        attempts: Deliveries so far.
        priority: Task priority.
        idempotency_key: Key it was submitted with, if any.
        agent_id: The agent of the latest delivery.
        error: The latest error text.
        result: Encoded result payload once done.
        result_type: Wire type name of the result.
        created_at: When it was accepted (unix time).
        started_at: When the latest attempt started.
        finished_at: When it reached a final state.
        executions: Times a handler completed it successfully (more than one
            means a duplicate execution after a redelivery).
        epoch: Leadership epoch of the dispatching Queen.
    """

    task_id: str
    type: str
    recipient: str
    state: TaskState = TaskState.QUEUED
    attempts: int = 0
    priority: int = 0
    idempotency_key: str | None = None
    agent_id: str | None = None
    error: str | None = None
    result: bytes | None = None
    result_type: str = ""
    created_at: float = msgspec.field(default_factory=time.time)
    started_at: float | None = None
    finished_at: float | None = None
    executions: int = 0
    epoch: int = 0

    @property
    def final(self) -> bool:
        """Whether the task reached a final state."""
        return self.state in FINAL_STATES

    @classmethod
    def for_task(cls, envelope: Envelope) -> TaskRecord:
        """The queued record of a task about to be accepted."""
        return cls(
            task_id=envelope.id,
            type=envelope.type,
            recipient=envelope.recipient,
            priority=envelope.priority,
            idempotency_key=envelope.idempotency_key,
            created_at=envelope.created_at or time.time(),
            epoch=envelope.epoch,  # in field order: the cheapest keyword matching
        )


@runtime_checkable
class Ledger(Protocol):
    """Stores task records. Implementations must make ``create`` atomic per idempotency key."""

    async def create(self, record: TaskRecord) -> TaskRecord:
        """Store a new record; if its idempotency key was claimed, return that task's record."""
        ...

    async def update(
        self,
        task_id: str,
        state: TaskState,
        *,
        attempts: int | None = None,
        agent_id: str | None = None,
        error: str | None = None,
        result: bytes | None = None,
        result_type: str | None = None,
    ) -> TaskRecord | None:
        """Move a task to ``state`` and set the given fields; returns the record."""
        ...

    async def get(self, task_id: str) -> TaskRecord | None:
        """Return a task's record, or None if unknown (or expired from the ledger)."""
        ...

    async def counts(self) -> dict[TaskState, int]:
        """Return how many tasks are in each state."""
        ...


class InMemoryLedger:
    """A ledger held in a dict: the embedded default (not durable across restarts).

    Args:
        max_final: Final records kept before the oldest are evicted.
        max_age: Seconds a final record is kept at least; older ones are
            evicted, checked every 10 000 finished tasks
            (None: no age bound, the count bound alone).
    """

    def __init__(self, *, max_final: int = 1_000_000, max_age: float | None = None) -> None:
        self._records: dict[str, TaskRecord] = {}
        self._idem: dict[str, str] = {}
        self._counts: dict[TaskState, int] = dict.fromkeys(TaskState, 0)
        # The hot path's transitions are counted in plain ints and folded into
        # the per-state counts when read: an attribute increment costs less
        # than half of a dict item's. Created queued; queued -> running;
        # running -> done.
        self._created = 0
        self._started = 0
        self._completed = 0
        self._finals = 0
        self._max_final = max_final
        self._max_age = max_age
        # Finals past this take the slow path, which evicts (count and age).
        self._limit = max_final if max_age is None else min(max_final, _AGE_CHECK_EVERY)

    async def create(self, record: TaskRecord) -> TaskRecord:
        return self.create_nowait(record)

    def create_nowait(self, record: TaskRecord) -> TaskRecord:
        """Synchronous :meth:`create`, for the in-process runtime's hot path."""
        key = record.idempotency_key
        if key is not None:
            existing = self._idem.get(key)
            if existing is not None and existing in self._records:
                return self._records[existing]
            self._idem[key] = record.task_id
        self._records[record.task_id] = record
        state = record.state
        if state is _QUEUED:
            self._created += 1
        else:
            self._counts[state] += 1
            if state in FINAL_STATES:
                self._finals += 1
        return record

    async def update(
        self,
        task_id: str,
        state: TaskState,
        *,
        attempts: int | None = None,
        agent_id: str | None = None,
        error: str | None = None,
        result: bytes | None = None,
        result_type: str | None = None,
    ) -> TaskRecord | None:
        return self.update_nowait(
            task_id,
            state,
            attempts=attempts,
            agent_id=agent_id,
            error=error,
            result=result,
            result_type=result_type,
        )

    def update_nowait(
        self,
        task_id: str,
        state: TaskState,
        *,
        attempts: int | None = None,
        agent_id: str | None = None,
        error: str | None = None,
        result: bytes | None = None,
        result_type: str | None = None,
    ) -> TaskRecord | None:
        """Synchronous :meth:`update`, for the in-process runtime."""
        rec = self._records.get(task_id)
        if rec is None:
            return None
        if attempts is not None:
            rec.attempts = attempts
        if agent_id is not None:
            rec.agent_id = agent_id
        if error is not None:
            rec.error = error
        if result is not None:
            rec.result = result
        if result_type is not None:
            rec.result_type = result_type
        self._move(rec, state)
        return rec

    def running_nowait(self, task_id: str, attempts: int, agent_id: str) -> None:
        """Mark a task running: the hot-path form of ``update(RUNNING, ...)``."""
        rec = self._records.get(task_id)
        if rec is not None:
            rec.attempts = attempts
            rec.agent_id = agent_id
            if rec.state is _QUEUED:
                # The one transition a delivery makes, without _move's general case.
                self._started += 1
                rec.state = _RUNNING
                rec.started_at = time.time()
            else:
                self._move(rec, _RUNNING)

    def done_nowait(
        self, task_id: str, attempts: int, result: bytes, result_type: str
    ) -> TaskRecord | None:
        """Mark a task done: the hot-path form of ``update(DONE, ...)``."""
        rec = self._records.get(task_id)
        if rec is not None:
            # A Struct field write costs several times a read: attempts and
            # result_type usually hold these values already (set at start, default).
            if rec.attempts != attempts:
                rec.attempts = attempts
            rec.result = result
            if rec.result_type != result_type:
                rec.result_type = result_type
            if rec.state is _RUNNING and self._finals < self._limit:
                self._completed += 1
                rec.state = _DONE
                rec.executions += 1
                rec.finished_at = time.time()
                self._finals += 1
            else:
                self._move(rec, _DONE)
        return rec

    def _move(self, rec: TaskRecord, state: TaskState) -> None:
        old = rec.state
        counts = self._counts
        counts[old] -= 1
        counts[state] += 1
        now = time.time()
        if state is _RUNNING:
            rec.started_at = now
        elif state is _DONE:
            rec.executions += 1
        was_final = old in FINAL_STATES
        is_final = state in FINAL_STATES
        rec.state = state
        if is_final and not was_final:
            rec.finished_at = now
            self._finals += 1
            if self._finals > self._limit:
                self._evict()
        elif was_final and not is_final:
            rec.finished_at = None  # re-driven from the dead-letter queue
            self._finals -= 1

    def _evict(self) -> None:
        # Dicts keep insertion order and ids sort by time: the first final
        # records found are the oldest. Unfinished records are never evicted.
        drop: list[str] = []
        if self._max_age is not None:
            cutoff = time.time() - self._max_age
            for task_id, rec in self._records.items():
                if rec.state in FINAL_STATES:
                    if (rec.finished_at or 0.0) >= cutoff:
                        break
                    drop.append(task_id)
        excess = self._finals - len(drop) - self._max_final
        if excess > 0:
            seen = set(drop)
            drop += [t for t, r in self._records.items() if r.final and t not in seen][:excess]
        for task_id in drop:
            rec = self._records.pop(task_id)
            self._counts[rec.state] -= 1
            self._finals -= 1
            if rec.idempotency_key is not None:
                self._idem.pop(rec.idempotency_key, None)
        if self._max_age is not None:
            self._limit = min(self._max_final, self._finals + _AGE_CHECK_EVERY)

    async def get(self, task_id: str) -> TaskRecord | None:
        return self._records.get(task_id)

    def get_nowait(self, task_id: str) -> TaskRecord | None:
        """Synchronous :meth:`get`."""
        return self._records.get(task_id)

    def records(self) -> list[TaskRecord]:
        """Every record held (live and the finished ones the bounds keep), oldest first."""
        return list(self._records.values())

    def record_getter(self) -> Callable[[str], TaskRecord | None]:
        """:meth:`get_nowait` as a C-level callable (the records dict's ``get``), for hot loops.

        In a subclass overriding :meth:`get_nowait`, that method instead.
        """
        if type(self).get_nowait is not InMemoryLedger.get_nowait:
            return self.get_nowait
        return self._records.get

    async def counts(self) -> dict[TaskState, int]:
        counts = dict(self._counts)
        counts[_QUEUED] += self._created - self._started
        counts[_RUNNING] += self._started - self._completed
        counts[_DONE] += self._completed
        return {state: n for state, n in counts.items() if n}
