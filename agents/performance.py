"""Performance bottlenecks: summarises stage timings and names the slowest stage.

Every stage result carries its ``elapsed_ms``; the job forwards them as
:class:`~agents.messages.StageTiming` values and this agent reports count,
items, total, p50, p95 and max per stage (nearest-rank percentiles) and the
stage with the highest p95.

Example:
    >>> from agents.performance import percentile
    >>> percentile([1.0, 2.0, 3.0, 4.0], 0.5), percentile([1.0, 2.0, 3.0, 4.0], 0.95)
    (2.0, 4.0)
"""

from __future__ import annotations

import math
from typing import ClassVar

from agents.messages import AnalyzeTimings, PerformanceReport, StageStats, StageTiming
from swarm.agent import Agent, handler

__all__ = ["PerformanceBottleneckAgent", "percentile", "summarise"]


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile of ``values`` (0 when empty)."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(1, math.ceil(q * len(ordered)))
    return ordered[rank - 1]


def summarise(timings: list[StageTiming]) -> PerformanceReport:
    """Per-stage statistics, stages in order of first appearance."""
    by_stage: dict[str, list[StageTiming]] = {}
    for t in timings:
        by_stage.setdefault(t.stage, []).append(t)
    stages = []
    for stage, items in by_stage.items():
        ms = [t.elapsed_ms for t in items]
        stages.append(
            StageStats(
                stage=stage, count=len(items), items=sum(t.items for t in items),
                total_ms=round(sum(ms), 3), p50_ms=round(percentile(ms, 0.5), 3),
                p95_ms=round(percentile(ms, 0.95), 3), max_ms=round(max(ms), 3),
            )
        )
    slowest = max(stages, key=lambda s: s.p95_ms, default=None)
    return PerformanceReport(
        stages=stages,
        slowest_stage=slowest.stage if slowest else "",
        slowest_p95_ms=slowest.p95_ms if slowest else 0.0,
    )


class PerformanceBottleneckAgent(Agent):
    """Reports the slowest stage of a run from its timings."""

    role: ClassVar[str] = "performance_bottlenecks"

    @handler
    async def analyze(self, msg: AnalyzeTimings) -> PerformanceReport:
        """Summarise ``msg.timings``."""
        return summarise(msg.timings)
