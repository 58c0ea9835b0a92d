"""A serving process's one-line summary, every few seconds, for a person at a terminal.

Example:
    >>> from swarm.summary import summary_line
    >>> summary_line(seconds=10.0, finished=250, inflight=3, failed=1, agents=2)
    'last 10s: 25.0 tasks/s, 3 in flight, 1 failed, 2 agents'
"""

from __future__ import annotations

import asyncio
import time
from typing import Any, TextIO

from swarm.metrics import task_totals

__all__ = ["print_summaries", "summary_line"]


def summary_line(*, seconds: float, finished: int, inflight: int, failed: int, agents: int) -> str:
    """The summary of the last ``seconds``."""
    rate = finished / seconds if seconds > 0 else 0.0
    return (
        f"last {seconds:.0f}s: {rate:.1f} tasks/s, {inflight} in flight, {failed} failed, "
        f"{agents} agents"
    )


async def print_summaries(runtime: Any, *, every: float, stream: TextIO) -> None:
    """Print :func:`summary_line` every ``every`` seconds, until cancelled.

    Counts what this process finished (every final state) and failed (final
    states other than done), from :mod:`swarm.metrics`.
    """
    done, failed = task_totals()
    at = time.monotonic()
    while True:
        await asyncio.sleep(every)
        now_done, now_failed = task_totals()
        now = time.monotonic()
        agents = runtime.agents()
        line = summary_line(
            seconds=now - at,
            finished=(now_done - done) + (now_failed - failed),
            inflight=sum(a.inflight for a in agents),
            failed=now_failed - failed,
            agents=len(agents),
        )
        print(time.strftime("%H:%M:%S"), line, file=stream, flush=True)
        done, failed, at = now_done, now_failed, now
