"""The task history of the embedded runtime: the finished records its bounded ledger keeps.

The in-process runtime has no history table: its :class:`~swarm.ledger.InMemoryLedger`
keeps finished records up to ``max_final`` of them and (when set) ``max_age``
seconds. :class:`LedgerHistory` answers :class:`~swarm.history.TaskHistory`
queries from those, so the HTTP API lists tasks through one code path on both
runtimes. It also lists live (queued and running) tasks, newest first.

Example:
    >>> import asyncio
    >>> from swarm.history.memory import LedgerHistory
    >>> from swarm.ledger import InMemoryLedger, TaskRecord, TaskState
    >>> async def demo():
    ...     ledger = InMemoryLedger()
    ...     await ledger.create(TaskRecord(task_id="t1", type="Ping", recipient="role:x"))
    ...     await ledger.update("t1", TaskState.DONE)
    ...     return [r.task_id for r in await LedgerHistory(ledger).query(state="done")]
    >>> asyncio.run(demo())
    ['t1']
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterable

from swarm.errors import ConfigError
from swarm.history.store import check_query
from swarm.ledger import FINAL_STATES, InMemoryLedger, TaskRecord, TaskState

__all__ = ["LIVE_STATES", "LedgerHistory", "check_live_query", "select_finished", "select_live"]

#: The states of unfinished tasks (listed from the ledger, not the history).
LIVE_STATES = frozenset(TaskState) - FINAL_STATES


def check_live_query(state: TaskState | str | None, limit: int) -> TaskState | None:
    """Validate a live listing's filters; returns the state as an enum (None: every live one)."""
    if not isinstance(limit, int) or not 1 <= limit <= 10_000:
        raise ConfigError(f"limit must be between 1 and 10000: {limit!r}")
    if state is None:
        return None
    try:
        value = TaskState(state)
    except ValueError:
        raise ConfigError(f"unknown task state {state!r}") from None
    if value not in LIVE_STATES:
        raise ConfigError(f"{value.value!r} is a final state: query the history")
    return value


def _select(
    records: Iterable[TaskRecord],
    keep: Callable[[TaskRecord], bool],
    key: Callable[[TaskRecord], tuple[float, str]],
    *,
    type: str | None,
    since: float | None,
    until: float | None,
    before: tuple[float, str] | None,
    limit: int,
) -> list[TaskRecord]:
    def wanted(rec: TaskRecord) -> bool:
        if not keep(rec) or (type is not None and rec.type != type):
            return False
        at = key(rec)
        return (
            (since is None or at[0] >= since)
            and (until is None or at[0] < until)
            and (before is None or at < before)
        )

    return heapq.nlargest(limit, (r for r in records if wanted(r)), key=key)


def _finished_key(rec: TaskRecord) -> tuple[float, str]:
    return (rec.finished_at or 0.0, rec.task_id)


def _created_key(rec: TaskRecord) -> tuple[float, str]:
    return (rec.created_at, rec.task_id)


def select_live(
    records: Iterable[TaskRecord],
    *,
    state: TaskState | None,
    type: str | None = None,
    since: float | None = None,
    until: float | None = None,
    before: tuple[float, str] | None = None,
    limit: int = 100,
) -> list[TaskRecord]:
    """Unfinished records, newest created first (``since``/``until``/``before`` on creation)."""
    return _select(
        records,
        (lambda r: not r.final) if state is None else (lambda r: r.state is state),
        _created_key, type=type, since=since, until=until, before=before, limit=limit,
    )


def select_finished(
    records: Iterable[TaskRecord],
    *,
    state: TaskState | None,
    type: str | None = None,
    since: float | None = None,
    until: float | None = None,
    before: tuple[float, str] | None = None,
    limit: int = 100,
) -> list[TaskRecord]:
    """Finished records, newest finished first (the :class:`TaskHistory` order)."""
    return _select(
        records,
        (lambda r: r.final and r.finished_at is not None)
        if state is None else (lambda r: r.state is state and r.finished_at is not None),
        _finished_key, type=type, since=since, until=until, before=before, limit=limit,
    )


class LedgerHistory:
    """:class:`~swarm.history.TaskHistory` over an in-memory ledger's finished records.

    Args:
        ledger: The embedded runtime's ledger (bounded by count and age).
    """

    def __init__(self, ledger: InMemoryLedger) -> None:
        self._ledger = ledger

    async def get(self, task_id: str) -> TaskRecord | None:
        rec = self._ledger.get_nowait(task_id)
        return rec if rec is not None and rec.final else None

    async def query(
        self,
        *,
        state: TaskState | str | None = None,
        type: str | None = None,
        since: float | None = None,
        until: float | None = None,
        before: tuple[float, str] | None = None,
        limit: int = 100,
    ) -> list[TaskRecord]:
        value = check_query(state, limit)
        return select_finished(
            self._ledger.records(), state=value, type=type, since=since, until=until,
            before=before, limit=limit,
        )

    async def live(
        self,
        *,
        state: TaskState | str | None = None,
        type: str | None = None,
        since: float | None = None,
        until: float | None = None,
        before: tuple[float, str] | None = None,
        limit: int = 100,
    ) -> list[TaskRecord]:
        """Queued and running tasks, newest created first (see :class:`LiveTasks`)."""
        value = check_live_query(state, limit)
        return select_live(
            self._ledger.records(), state=value, type=type, since=since, until=until,
            before=before, limit=limit,
        )
