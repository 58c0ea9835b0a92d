"""A serving process's one-line summary, every few seconds, for a person at a terminal.

Example:
    >>> from swarm.summary import summary_line
    >>> summary_line(seconds=10.0, finished=250, inflight=3, failed=1, agents=2)
    'last 10s: 25.0 tasks/s here, 3 in flight, 1 failed, 2 agents'
    >>> summary_line(seconds=10.0, finished=0, inflight=0, failed=0, agents=0,
    ...              swarm_rate=40.0, waiting=7)
    'last 10s: 0.0 tasks/s here, 0 in flight, 0 failed, 0 agents; swarm: 40.0 tasks/s, 7 waiting'
"""

from __future__ import annotations

import asyncio
import time
from typing import Any, TextIO

import structlog

from swarm.errors import SwarmError
from swarm.metrics import task_totals

__all__ = ["print_summaries", "summary_line"]

_log = structlog.get_logger("swarm.summary")


def summary_line(
    *,
    seconds: float,
    finished: int,
    inflight: int,
    failed: int,
    agents: int,
    swarm_rate: float | None = None,
    waiting: int | None = None,
) -> str:
    """The summary of the last ``seconds`` (the swarm's part when its queues are readable)."""
    rate = finished / seconds if seconds > 0 else 0.0
    line = (
        f"last {seconds:.0f}s: {rate:.1f} tasks/s here, {inflight} in flight, {failed} failed, "
        f"{agents} agents"
    )
    if swarm_rate is not None and waiting is not None:
        line += f"; swarm: {swarm_rate:.1f} tasks/s, {waiting} waiting"
    return line


async def _swarm(runtime: Any) -> tuple[int, int] | None:
    queues = getattr(runtime, "queues", None)
    if queues is None:
        return None
    try:
        stats = await queues()
    except SwarmError as exc:
        _log.warning("summary could not read the queues", error=str(exc))
        return None
    return sum(q.delivered for q in stats), sum(q.total for q in stats)


async def print_summaries(runtime: Any, *, every: float, stream: TextIO) -> None:
    """Print :func:`summary_line` every ``every`` seconds, until cancelled.

    Counts what this process finished (every final state) and failed (final
    states other than done), from :mod:`swarm.metrics`; on Redis, also the
    whole swarm's rate of delivered tasks and how many wait.
    """
    done, failed = task_totals()
    delivered = await _swarm(runtime)
    at = time.monotonic()
    while True:
        await asyncio.sleep(every)
        now_done, now_failed = task_totals()
        now_delivered = await _swarm(runtime)
        now = time.monotonic()
        agents = runtime.agents()
        swarm_rate = waiting = None
        if delivered is not None and now_delivered is not None:
            swarm_rate = max(0, now_delivered[0] - delivered[0]) / (now - at)
            waiting = now_delivered[1]
        line = summary_line(
            seconds=now - at,
            finished=(now_done - done) + (now_failed - failed),
            inflight=sum(a.inflight for a in agents),
            failed=now_failed - failed,
            agents=len(agents),
            swarm_rate=swarm_rate,
            waiting=waiting,
        )
        print(time.strftime("%H:%M:%S"), line, file=stream, flush=True)
        done, failed, at, delivered = now_done, now_failed, now, now_delivered
