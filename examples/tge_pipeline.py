"""Run the stock TGE pipeline programmatically and print what it found.

Run: ``python examples/tge_pipeline.py``. The same job backs ``python -m swarm.queen``;
this shows how to drive it from code, with a second scraper replica and a
progress callback of your own.
"""

import asyncio

from agents import ScrapingEfficiencyAgent, default_swarm
from agents.job import run_tge_job
from swarm import Swarm


def show(stage: str, done: int, total: int, detail: str) -> None:
    print(f"  {stage:<8} {done}/{total}  {detail}")


async def main() -> None:
    agents = [*default_swarm(), ScrapingEfficiencyAgent(concurrency=2)]
    async with Swarm(agents=agents) as swarm:
        report = await run_tge_job(swarm, progress=show)
    print(f"\n{len(report.announcements)} TGE announcements ({report.elapsed_s:.2f}s):")
    for a in report.announcements:
        print(f"  {a.date or '-':<10}  {a.ticker or '-':<6} {a.project or '-':<18} "
              f"confidence {a.confidence:.2f}"
              f"  sources: {', '.join(a.sources)}")
    print(f"rejected: {[(r.doc_id, r.reason) for r in report.rejected]}")
    print(f"slowest stage: {report.slowest_stage}; retries: {report.retries}; ok: {report.ok}")


if __name__ == "__main__":
    asyncio.run(main())
