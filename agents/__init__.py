"""The stock specialists of the TGE-monitoring swarm, and a factory for the whole swarm.

Five roles form a pipeline that finds token-generation-event announcements in
scraped sources (the bundled corpus; offline and deterministic):

* ``scraping_efficiency``: fetch and parse sources, per-source stats, dedupe;
* ``keyword_precision``: score documents, extract project, symbol and date;
* ``api_reliability``: per-source success counts and circuit breakers;
* ``performance_bottlenecks``: stage timings, p95, slowest stage;
* ``data_quality``: validate, normalise and merge candidates into announcements.

Example:
    >>> from agents import STOCK_AGENTS, default_swarm
    >>> sorted(STOCK_AGENTS)  # doctest: +NORMALIZE_WHITESPACE
    ['api_reliability', 'data_quality', 'keyword_precision',
     'performance_bottlenecks', 'scraping_efficiency']
    >>> sorted({a.role for a in default_swarm()}) == sorted(STOCK_AGENTS)
    True
"""

from __future__ import annotations

from agents.job import DeadLetterInfo, Evaluation, JobReport, Progress, run_tge_job
from agents.keywords import KeywordPrecisionAgent
from agents.performance import PerformanceBottleneckAgent
from agents.quality import DataQualityAgent
from agents.reliability import ApiReliabilityAgent
from agents.scraping import ScrapingEfficiencyAgent
from swarm.agent import Agent

# Modules kept as namespaces (``agents.messages.ScrapeSource``), not re-exported.
_NAMESPACE_MODULES = (
    "app", "breakers", "classify", "corpus", "detect", "fetch", "keywords", "messages",
    "neardup", "performance", "quality", "reliability", "report", "scraping",
)

__all__ = [
    "STOCK_AGENTS",
    "ApiReliabilityAgent",
    "DataQualityAgent",
    "DeadLetterInfo",
    "Evaluation",
    "JobReport",
    "KeywordPrecisionAgent",
    "PerformanceBottleneckAgent",
    "Progress",
    "ScrapingEfficiencyAgent",
    "default_swarm",
    "run_tge_job",
]

#: Role name -> agent class of every stock specialist.
STOCK_AGENTS: dict[str, type[Agent]] = {
    cls.role: cls
    for cls in (
        ApiReliabilityAgent,
        DataQualityAgent,
        KeywordPrecisionAgent,
        PerformanceBottleneckAgent,
        ScrapingEfficiencyAgent,
    )
}


def default_swarm() -> list[Agent]:
    """One instance of each stock role, scrapers and scorers with room to run in parallel.

    The reliability agent keeps its breakers in process here; give it
    ``store=RedisBreakers(...)`` (:mod:`agents.breakers`) for replicas that share them.
    """
    return [
        ScrapingEfficiencyAgent(concurrency=4),
        KeywordPrecisionAgent(concurrency=4),
        ApiReliabilityAgent(concurrency=8),
        PerformanceBottleneckAgent(),
        DataQualityAgent(),
    ]
