"""The warm tier on PostgreSQL (asyncpg): the durable record of every memory.

``put`` enqueues the memory and waits for its batch to commit: concurrent
stores share transactions (one ``executemany`` per batch) yet each caller
returns only after its own row is committed. When PostgreSQL cannot be
reached, every caller of the failed batch gets
:class:`~swarm.errors.MemoryUnavailable`; nobody is told a lie.

Example:
    >>> from memory.tiers.postgres import PostgresWarmTier
    >>> from memory.settings import PostgresSettings
    >>> tier = PostgresWarmTier(settings=PostgresSettings.from_dsn("postgresql://h/db"))
    >>> tier.durable, tier.table
    (True, '"queenswarm_memory".memories')
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import asyncpg  # type: ignore[import-untyped]

from memory.records import Memory, MemoryKind
from memory.schema import apply_migrations
from memory.settings import PostgresSettings
from swarm.errors import MemoryUnavailable
from swarm.tasks import TaskSet

__all__ = ["PostgresWarmTier"]

_COLUMNS = (
    "id, namespace, kind, content, author, task_id, trace_id, tags, confidence,"
    " created_at, expires_at, score, score_at, accessed_at, sources, vector"
)
# Advisory lock class of the periodic jobs (the migrations use their own).
_JOB_LOCK_CLASS = 0x5157_4D4A
# Errors meaning "the database is not there or the connection broke".
_DOWN = (OSError, asyncpg.PostgresConnectionError, asyncpg.InterfaceError,
         asyncpg.exceptions.CannotConnectNowError, asyncpg.exceptions.AdminShutdownError,
         asyncpg.exceptions.CrashShutdownError, TimeoutError)


def _row(memory: Memory) -> tuple[Any, ...]:
    return (
        memory.id, memory.namespace, memory.kind.value, memory.content, memory.author,
        memory.task_id, memory.trace_id, list(memory.tags), memory.confidence,
        memory.created_at, memory.expires_at, memory.score, memory.score_at,
        memory.created_at, list(memory.sources), memory.vector,
    )


def _memory(rec: Any) -> Memory:
    return Memory(
        id=rec["id"], namespace=rec["namespace"], content=rec["content"],
        kind=MemoryKind(rec["kind"]), author=rec["author"], task_id=rec["task_id"],
        trace_id=rec["trace_id"], tags=tuple(rec["tags"]), confidence=rec["confidence"],
        created_at=rec["created_at"], expires_at=rec["expires_at"], score=rec["score"],
        score_at=rec["score_at"], sources=tuple(rec["sources"]), vector=bytes(rec["vector"]),
    )


class PostgresWarmTier:
    """Memories in a PostgreSQL table, written in batches.

    Args:
        pool: An existing asyncpg pool (not closed by the tier).
        settings: Schema and batching; also used to create a pool when none is given.
    """

    durable = True

    def __init__(self, *, pool: Any = None, settings: PostgresSettings) -> None:
        self.settings = settings
        self._pool: Any = pool
        self._own = pool is None
        self.table = f'"{settings.schema}".memories'
        self._queue: asyncio.Queue[tuple[Memory, asyncio.Future[None]]] = asyncio.Queue(
            maxsize=settings.batch_max * 8
        )
        self._tasks = TaskSet("memory.postgres")
        self._insert = (
            f"INSERT INTO {self.table} ({_COLUMNS}) VALUES"
            " ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14,$15,$16)"
            " ON CONFLICT (id) DO NOTHING"
        )
        self.applied_migrations: list[int] = []

    @property
    def pool(self) -> Any:
        """The asyncpg pool."""
        return self._pool

    async def start(self) -> None:
        """Create the pool if needed, apply migrations, start the batch writers.

        Raises:
            MemoryUnavailable: PostgreSQL could not be reached.
        """
        s = self.settings
        try:
            if self._pool is None:
                self._pool = await asyncpg.create_pool(
                    s.dsn, min_size=s.min_size, max_size=s.max_size,
                    command_timeout=s.command_timeout,
                )
            async with self._pool.acquire() as conn:
                self.applied_migrations = await apply_migrations(conn, s.schema)
        except _DOWN as exc:
            raise MemoryUnavailable(f"PostgreSQL unavailable: {exc!r}") from exc
        for i in range(s.writers):
            self._tasks.supervise(self._writer, name=f"writer-{i}")

    async def close(self) -> None:
        """Let queued writes finish, stop the writers, close an own pool."""
        if self._tasks:
            await self._queue.join()
        await self._tasks.close()
        if self._own and self._pool is not None:
            await self._pool.close()
            self._pool = None

    async def put(self, memory: Memory) -> None:
        """Write one memory; returns once its batch committed.

        Raises:
            MemoryUnavailable: The batch did not commit.
        """
        if not self._tasks:
            raise MemoryUnavailable("the PostgreSQL warm tier is not started")
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        await self._queue.put((memory, future))
        await future

    async def _writer(self) -> None:
        while True:
            batch = [await self._queue.get()]
            while len(batch) < self.settings.batch_max:
                try:
                    batch.append(self._queue.get_nowait())
                except asyncio.QueueEmpty:
                    break
            try:
                await self._write([m for m, _ in batch])
            except BaseException as exc:
                error = exc if isinstance(exc, MemoryUnavailable) else MemoryUnavailable(
                    f"PostgreSQL write failed: {exc!r}"
                )
                for _, fut in batch:
                    if not fut.done():
                        fut.set_exception(error)
                if isinstance(exc, asyncio.CancelledError):
                    raise
            else:
                for _, fut in batch:
                    if not fut.done():
                        fut.set_result(None)
            finally:
                for _ in batch:
                    self._queue.task_done()

    async def _write(self, memories: Sequence[Memory]) -> None:
        committed = False
        try:
            async with self._pool.acquire() as conn:
                async with conn.transaction():
                    await conn.executemany(self._insert, [_row(m) for m in memories])
                committed = True
        except _DOWN as exc:
            # Once COMMIT was answered the rows are durable, whatever happens to
            # the connection on release: only an unanswered commit is a failure.
            if not committed:
                raise MemoryUnavailable(f"PostgreSQL unavailable: {exc!r}") from exc

    async def put_many(self, memories: Sequence[Memory]) -> int:
        """Write memories in one transaction; returns rows added (existing ids are kept)."""
        if not memories:
            return 0
        try:
            async with self._pool.acquire() as conn, conn.transaction():
                before = await conn.fetchval(
                    f"SELECT count(*) FROM {self.table} WHERE id = ANY($1::text[])",
                    [m.id for m in memories],
                )
                await conn.executemany(self._insert, [_row(m) for m in memories])
                return len({m.id for m in memories}) - int(before)
        except _DOWN as exc:
            raise MemoryUnavailable(f"PostgreSQL unavailable: {exc!r}") from exc

    async def _fetch(self, query: str, *args: Any) -> list[Any]:
        try:
            return list(await self._pool.fetch(query, *args))
        except _DOWN as exc:
            raise MemoryUnavailable(f"PostgreSQL unavailable: {exc!r}") from exc

    async def get(self, memory_id: str) -> Memory | None:
        """The memory or None."""
        rows = await self._fetch(f"SELECT {_COLUMNS} FROM {self.table} WHERE id = $1", memory_id)
        return _memory(rows[0]) if rows else None

    async def delete_many(self, memory_ids: Sequence[str]) -> int:
        """Delete memories; returns how many existed."""
        rows = await self._fetch(
            f"DELETE FROM {self.table} WHERE id = ANY($1::text[]) RETURNING id", list(memory_ids)
        )
        return len(rows)

    async def adjust_score(
        self, memory_id: str, delta: float, now: float, half_life: float
    ) -> Memory | None:
        """Decay the score to ``now`` and add ``delta`` in one statement (no lost update)."""
        rows = await self._fetch(
            f"UPDATE {self.table} SET score = CASE WHEN $4 > 0 THEN"
            " score * power(0.5, greatest(0, $3 - score_at) / $4) ELSE score END + $2,"
            f" score_at = $3 WHERE id = $1 RETURNING {_COLUMNS}",
            memory_id, delta, now, half_life,
        )
        return _memory(rows[0]) if rows else None

    async def touch(self, accessed: dict[str, float]) -> None:
        """Record last-access times in one statement."""
        if not accessed:
            return
        await self._fetch(
            f"UPDATE {self.table} AS m SET accessed_at = greatest(m.accessed_at, a.at)"
            " FROM unnest($1::text[], $2::float8[]) AS a(id, at) WHERE m.id = a.id",
            list(accessed), list(accessed.values()),
        )

    async def scan(self, *, after: str | None, limit: int) -> list[Memory]:
        """Memories with id greater than ``after``, in id order."""
        rows = await self._fetch(
            f"SELECT {_COLUMNS} FROM {self.table} WHERE id > $1 ORDER BY id LIMIT $2",
            after or "", limit,
        )
        return [_memory(r) for r in rows]

    async def stale(self, *, before: float, limit: int) -> list[Memory]:
        """Memories created and last read before ``before``."""
        rows = await self._fetch(
            f"SELECT {_COLUMNS} FROM {self.table} WHERE greatest(created_at, accessed_at) < $1"
            " ORDER BY id LIMIT $2",
            before, limit,
        )
        return [_memory(r) for r in rows]

    async def expired(self, *, now: float, limit: int) -> list[str]:
        """Ids whose TTL ran out."""
        rows = await self._fetch(
            f"SELECT id FROM {self.table} WHERE expires_at IS NOT NULL AND expires_at <= $1"
            " LIMIT $2",
            now, limit,
        )
        return [r["id"] for r in rows]

    @asynccontextmanager
    async def job_lock(self, job: str) -> AsyncIterator[bool]:
        """Hold a session advisory lock on ``job`` for the block, if no other node holds it."""
        key = f"{self.settings.schema}:{job}"
        try:
            conn = await self._pool.acquire()
        except _DOWN as exc:
            raise MemoryUnavailable(f"PostgreSQL unavailable: {exc!r}") from exc
        try:
            try:
                held = bool(await conn.fetchval(
                    "SELECT pg_try_advisory_lock($1, hashtext($2))", _JOB_LOCK_CLASS, key
                ))
            except _DOWN as exc:
                raise MemoryUnavailable(f"PostgreSQL unavailable: {exc!r}") from exc
            try:
                yield held
            finally:
                if held:
                    try:
                        await conn.execute(
                            "SELECT pg_advisory_unlock($1, hashtext($2))", _JOB_LOCK_CLASS, key
                        )
                    except _DOWN:
                        pass  # the session is gone, and its lock with it
        finally:
            await self._pool.release(conn)

    async def job_cursor(self, job: str) -> str | None:
        """The job's shared cursor, if set."""
        rows = await self._fetch(
            f'SELECT cursor FROM "{self.settings.schema}".memory_jobs WHERE job = $1', job
        )
        return str(rows[0]["cursor"]) if rows else None

    async def set_job_cursor(self, job: str, cursor: str) -> None:
        """Set the job's shared cursor (never moves it backwards)."""
        await self._fetch(
            f'INSERT INTO "{self.settings.schema}".memory_jobs (job, cursor) VALUES ($1, $2)'
            " ON CONFLICT (job) DO UPDATE SET cursor = greatest(memory_jobs.cursor,"
            " excluded.cursor), updated_at = now()",
            job, cursor,
        )
