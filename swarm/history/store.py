"""The task history in PostgreSQL (asyncpg): one row per finished task.

Rows are written in batches, one binary ``COPY`` per batch (a few thousand
rows per round trip). A task finished twice (a dead letter re-driven, then
done) keeps its latest record: a batch that meets an existing row is written
again as one ``INSERT ... SELECT FROM unnest(...) ON CONFLICT DO UPDATE``. Every
asyncpg or socket error is translated here, at one point, into
:class:`~swarm.errors.HistoryUnavailable`; none reaches a caller raw.

Example:
    >>> from swarm.history.settings import HistorySettings
    >>> from swarm.history.store import PostgresHistory
    >>> PostgresHistory(HistorySettings(dsn="postgresql://h/db")).table
    '"queenswarm_history".task_history'
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterable, Iterator, Sequence
from typing import Any, Protocol, runtime_checkable

import asyncpg  # type: ignore[import-untyped]

from swarm.errors import ConfigError, HistoryUnavailable
from swarm.history.settings import HistorySettings
from swarm.ledger import FINAL_STATES, TaskRecord, TaskState

__all__ = ["LiveTasks", "PostgresHistory", "TaskHistory", "check_query"]

_COLUMNS = (
    "task_id, type, recipient, state, attempts, priority, idempotency_key, agent_id,"
    " error, result, result_type, created_at, started_at, finished_at, executions, epoch"
)
_TYPES = (
    "text[]", "text[]", "text[]", "text[]", "int4[]", "int4[]", "text[]", "text[]",
    "text[]", "bytea[]", "text[]", "float8[]", "float8[]", "float8[]", "int4[]", "int8[]",
)
_NAMES = tuple(c.strip() for c in _COLUMNS.split(","))
_MAX_LIMIT = 10_000


@runtime_checkable
class TaskHistory(Protocol):
    """Finished tasks, queried by state, type and finish time (newest first)."""

    async def get(self, task_id: str) -> TaskRecord | None:
        """The finished record of a task, or None."""
        ...

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
        """Finished tasks, newest first.

        Args:
            state: Only this final state (done, failed, dead, expired).
            type: Only this message type (wire name).
            since: Only tasks finished at or after this unix time.
            until: Only tasks finished before this unix time.
            before: Keyset cursor: only tasks ordered after this
                ``(finished_at, task_id)`` (the last record of the previous page).
            limit: Most records returned (1..10000).

        Raises:
            ConfigError: A filter is invalid (an unknown or live state, a bad limit).
            HistoryUnavailable: The store could not be read.
        """
        ...


@runtime_checkable
class LiveTasks(Protocol):
    """Unfinished (queued and running) tasks, newest created first."""

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
        """Live tasks; ``since``, ``until`` and the ``(created_at, task_id)`` cursor
        ``before`` apply to the creation time.

        Raises:
            ConfigError: A filter is invalid (a final state, a bad limit).
            TransportError: The ledger could not be read.
        """
        ...


def check_query(state: TaskState | str | None, limit: int) -> TaskState | None:
    """Validate the filters of :meth:`TaskHistory.query`; returns the state as an enum."""
    if not isinstance(limit, int) or not 1 <= limit <= _MAX_LIMIT:
        raise ConfigError(f"limit must be between 1 and {_MAX_LIMIT}: {limit!r}")
    if state is None:
        return None
    try:
        value = TaskState(state)
    except ValueError:
        known = ", ".join(sorted(s.value for s in FINAL_STATES))
        raise ConfigError(f"unknown task state {state!r} (history holds: {known})") from None
    if value not in FINAL_STATES:
        raise ConfigError(f"the history holds finished tasks only, not {value.value!r} ones")
    return value


def _down(exc: BaseException) -> HistoryUnavailable:
    return HistoryUnavailable(f"task history (PostgreSQL) failed: {type(exc).__name__}: {exc}")


@contextlib.contextmanager
def _translated() -> Iterator[None]:
    # The one place where asyncpg's and the socket's errors become ours.
    try:
        yield
    except HistoryUnavailable:
        raise
    except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError) as exc:
        raise _down(exc) from exc


def _record(row: Any) -> TaskRecord:
    result = row["result"]
    return TaskRecord(
        task_id=row["task_id"],
        type=row["type"],
        recipient=row["recipient"],
        state=TaskState(row["state"]),
        attempts=row["attempts"],
        priority=row["priority"],
        idempotency_key=row["idempotency_key"],
        agent_id=row["agent_id"],
        error=row["error"],
        result=None if result is None else bytes(result),
        result_type=row["result_type"],
        created_at=row["created_at"],
        started_at=row["started_at"],
        finished_at=row["finished_at"],
        executions=row["executions"],
        epoch=row["epoch"],
    )


def _rows(records: Iterable[TaskRecord]) -> list[tuple[Any, ...]]:
    # Within one statement a row may be touched once: the latest finish of a
    # task wins here as it does across batches.
    latest: dict[str, TaskRecord] = {}
    for rec in records:
        prev = latest.get(rec.task_id)
        if prev is None or (prev.finished_at or 0.0) <= (rec.finished_at or 0.0):
            latest[rec.task_id] = rec
    return [
        (
            r.task_id, r.type, r.recipient, r.state.value, r.attempts, r.priority,
            r.idempotency_key, r.agent_id, r.error, r.result, r.result_type,
            r.created_at, r.started_at, r.finished_at or r.created_at, r.executions, r.epoch,
        )
        for r in latest.values()
    ]


class PostgresHistory:
    """Finished tasks in a PostgreSQL table (see :class:`TaskHistory`).

    Args:
        settings: DSN, schema, pool size and timeouts.
        pool: An existing asyncpg pool (not closed by :meth:`close`).
    """

    def __init__(self, settings: HistorySettings, *, pool: Any = None) -> None:
        if settings.dsn is None and pool is None:
            raise ConfigError("the PostgreSQL task history needs a DSN")
        self.settings = settings
        self.table = f'"{settings.schema}".task_history'
        self._pool: Any = pool
        self._own = pool is None
        placeholders = ", ".join(f"${i + 1}::{t}" for i, t in enumerate(_TYPES))
        updates = ", ".join(
            f"{c} = EXCLUDED.{c}" for c in _COLUMNS.replace(" ", "").split(",")[1:]
        )
        self._insert = (
            f"INSERT INTO {self.table} AS h ({_COLUMNS})"
            f" SELECT * FROM unnest({placeholders})"
            f" ON CONFLICT (task_id) DO UPDATE SET {updates}"
            " WHERE h.finished_at <= EXCLUDED.finished_at"
        )
        self.applied_migrations: list[int] = []

    async def start(self) -> None:
        """Connect and apply the history's migrations.

        Raises:
            HistoryUnavailable: PostgreSQL could not be reached.
        """
        # Imported here: the memory package imports the Redis runtime, which imports this.
        from memory.schema import apply_migrations

        s = self.settings
        with _translated():
            if self._pool is None:
                self._pool = await asyncpg.create_pool(
                    s.dsn, min_size=1, max_size=s.pool_size, command_timeout=s.command_timeout
                )
            async with self._pool.acquire() as conn:
                self.applied_migrations = await apply_migrations(
                    conn, s.schema, package="swarm.history"
                )

    async def close(self) -> None:
        """Close the pool, if the history made it."""
        if self._own and self._pool is not None:
            pool, self._pool = self._pool, None
            with contextlib.suppress(Exception):
                await pool.close()

    @property
    def _conn_pool(self) -> Any:
        if self._pool is None:
            raise HistoryUnavailable("the task history is not started")
        return self._pool

    async def write(self, records: Sequence[TaskRecord]) -> None:
        """Write finished records in one batch (a task's latest finish wins).

        A batch of new tasks (the rule) is one binary ``COPY``; one that
        finishes a task again (a re-drive, a duplicate run) is one upsert
        statement instead.
        """
        if not records:
            return
        rows = _rows(records)
        with _translated():
            try:
                await self._conn_pool.copy_records_to_table(
                    "task_history",
                    schema_name=self.settings.schema,
                    columns=_NAMES,
                    records=rows,
                )
            except asyncpg.UniqueViolationError:
                cols = [list(c) for c in zip(*rows, strict=True)]
                await self._conn_pool.execute(self._insert, *cols)

    async def get(self, task_id: str) -> TaskRecord | None:
        with _translated():
            row = await self._conn_pool.fetchrow(
                f"SELECT {_COLUMNS} FROM {self.table} WHERE task_id = $1", task_id
            )
        return None if row is None else _record(row)

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
        where: list[str] = []
        args: list[Any] = []
        for cond, arg in (
            ("state = ${}", None if value is None else value.value),
            ("type = ${}", type),
            ("finished_at >= ${}", since),
            ("finished_at < ${}", until),
        ):
            if arg is not None:
                args.append(arg)
                where.append(cond.format(len(args)))
        if before is not None:
            args += [float(before[0]), str(before[1])]
            where.append(f"(finished_at, task_id) < (${len(args) - 1}, ${len(args)})")
        args.append(limit)
        sql = (
            f"SELECT {_COLUMNS} FROM {self.table}"
            + (" WHERE " + " AND ".join(where) if where else "")
            + f" ORDER BY finished_at DESC, task_id DESC LIMIT ${len(args)}"
        )
        with _translated():
            rows = await self._conn_pool.fetch(sql, *args)
        return [_record(r) for r in rows]

    async def count(self) -> int:
        """Rows in the history table."""
        with _translated():
            return int(await self._conn_pool.fetchval(f"SELECT count(*) FROM {self.table}"))

    async def export(self, *, chunk: int = 2000) -> AsyncIterator[list[TaskRecord]]:
        """Every row, oldest first, in lists of up to ``chunk`` (for backups)."""
        after: tuple[float, str] = (float("-inf"), "")
        while True:
            with _translated():
                rows = await self._conn_pool.fetch(
                    f"SELECT {_COLUMNS} FROM {self.table}"
                    " WHERE (finished_at, task_id) > ($1, $2)"
                    " ORDER BY finished_at, task_id LIMIT $3",
                    after[0],
                    after[1],
                    chunk,
                )
            if not rows:
                return
            records = [_record(r) for r in rows]
            last = records[-1]
            after = (last.finished_at or 0.0, last.task_id)
            yield records
