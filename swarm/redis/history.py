"""The task history of a Redis runtime without PostgreSQL: the finished records Redis still holds.

Without a history table, Redis keeps a finished record ``retention`` seconds
(and each settling process at most ``keep`` of its own); this answers
:class:`~swarm.history.TaskHistory` queries from those, by a ``SCAN`` of the
ledger keys. That costs a pass over every retained record: fine for a
dashboard over minutes of history, which is all there is. With a history
table, the runtime answers from PostgreSQL instead.
"""

from __future__ import annotations

from typing import Any

from redis.exceptions import RedisError

from swarm.constants import ledger_pattern
from swarm.errors import TransportError
from swarm.history.memory import check_live_query, select_finished, select_live
from swarm.history.store import check_query
from swarm.ledger import TaskRecord, TaskState
from swarm.redis.ledger import RedisLedger, record_from_hash

__all__ = ["RedisHistory"]

_CHUNK = 1000


class RedisHistory:
    """:class:`~swarm.history.TaskHistory` over the finished records left in Redis.

    Also :class:`~swarm.history.LiveTasks`: the queued and running records.

    Args:
        ledger: The runtime's Redis ledger.
    """

    def __init__(self, ledger: RedisLedger) -> None:
        self._ledger = ledger

    async def get(self, task_id: str) -> TaskRecord | None:
        rec = await self._ledger.get(task_id)
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
            await self._records(), state=value, type=type, since=since, until=until,
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
        """Queued and running tasks, newest created first (:class:`~swarm.history.LiveTasks`)."""
        value = check_live_query(state, limit)
        return select_live(
            await self._records(), state=value, type=type, since=since, until=until,
            before=before, limit=limit,
        )

    async def _records(self) -> list[TaskRecord]:
        redis: Any = self._ledger.redis
        out: list[TaskRecord] = []
        try:
            match = ledger_pattern(self._ledger.prefix)
            keys: list[bytes] = [k async for k in redis.scan_iter(match=match, count=1000)]
            for i in range(0, len(keys), _CHUNK):
                pipe = redis.pipeline(transaction=False)
                for key in keys[i : i + _CHUNK]:
                    pipe.hgetall(key)
                out += [record_from_hash(raw) for raw in await pipe.execute() if raw]
        except (RedisError, OSError) as exc:
            raise TransportError(f"reading the task ledger from Redis failed: {exc!r}") from exc
        return out
