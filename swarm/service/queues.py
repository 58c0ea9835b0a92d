"""Queue depth of the Redis runtime's task streams, per role and priority band.

A task waits in its role's stream for its band until the role's consumer
group reads it: the group's ``lag`` counts those entries, and the first entry
after ``last-delivered-id`` is the oldest waiting one (its id is its enqueue
time in milliseconds). Once an entry was deleted (a cancelled task) Redis
reports no lag; the unread entries are then counted, up to 10 000.

Example:
    >>> from swarm.service.queues import _entry_age
    >>> _entry_age(b"1000-0", now=3.0)
    2.0
"""

from __future__ import annotations

import time
from typing import Any

from swarm.constants import PRIORITY_BANDS, TASK_GROUP, task_stream
from swarm.errors import SwarmError
from swarm.runtime import QueueStats, RoleInfo

__all__ = ["redis_queue_stats"]

_COUNT_MAX = 10_000


def _entry_age(entry_id: bytes | str, *, now: float) -> float:
    text = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
    return max(0.0, now - int(text.split("-", 1)[0]) / 1000)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


async def redis_queue_stats(
    redis: Any, prefix: str, roles: dict[str, RoleInfo]
) -> dict[str, QueueStats]:
    """Waiting tasks per role and band, and the oldest one's age, read from Redis.

    A stream that cannot be read (no group yet, a Redis error) counts as empty:
    these figures are for people and dashboards.
    """
    from redis.exceptions import RedisError

    out: dict[str, QueueStats] = {}
    now = time.time()
    for role in roles:
        depth: dict[int, int] = {}
        oldest: float | None = None
        for band in PRIORITY_BANDS:
            stream = task_stream(role, band, prefix)
            try:
                groups = await redis.xinfo_groups(stream)
            except (RedisError, SwarmError):
                continue
            for group in groups:
                info = {_text(k): v for k, v in group.items()}
                if _text(info.get("name", "")) != TASK_GROUP:
                    continue
                lag = info.get("lag")
                last = _text(info.get("last-delivered-id", "0-0"))
                try:
                    if lag is None:
                        # Redis cannot tell the lag of a stream with deleted entries
                        # (a cancelled task): count the unread ones, up to a bound.
                        unread = await redis.xrange(stream, min=f"({last}", count=_COUNT_MAX)
                        lag = len(unread)
                    first = await redis.xrange(stream, min=f"({last}", count=1) if lag else []
                except (RedisError, SwarmError):
                    continue
                if not lag:
                    continue
                depth[band] = int(lag)
                if first:
                    age = _entry_age(first[0][0], now=now)
                    oldest = age if oldest is None else max(oldest, age)
        out[role] = QueueStats(depth=depth, oldest_age=oldest)
    return out
