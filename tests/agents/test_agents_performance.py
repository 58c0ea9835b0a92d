"""Performance bottlenecks: percentiles and the slowest stage."""

from __future__ import annotations

from agents import PerformanceBottleneckAgent
from agents.messages import AnalyzeTimings, PerformanceReport, StageTiming
from agents.performance import percentile
from swarm import Swarm


def test_percentile_nearest_rank() -> None:
    values = [float(v) for v in range(1, 21)]
    assert percentile(values, 0.5) == 10.0
    assert percentile(values, 0.95) == 19.0
    assert percentile([], 0.95) == 0.0


async def test_reports_slowest_stage_by_p95() -> None:
    timings = [StageTiming(stage="scrape", elapsed_ms=ms, items=10) for ms in (1.0, 2.0, 3.0)]
    timings += [StageTiming(stage="score", elapsed_ms=ms, items=5) for ms in (0.5, 9.0)]
    async with Swarm(agents=[PerformanceBottleneckAgent()]) as swarm:
        h = await swarm.submit(AnalyzeTimings(timings=timings))
        await swarm.run_until_idle(timeout=10)
        report: PerformanceReport = await h.result()
    assert [s.stage for s in report.stages] == ["scrape", "score"]
    scrape, score = report.stages
    assert (scrape.count, scrape.items, scrape.total_ms, scrape.p50_ms, scrape.max_ms) == (
        3, 30, 6.0, 2.0, 3.0,
    )
    assert (report.slowest_stage, report.slowest_p95_ms) == ("score", 9.0)
    assert score.p95_ms == 9.0
