"""Scraping efficiency agent: parsing, malformed entries, dedupe, retries, circuit."""

from __future__ import annotations

import pytest

from agents import ApiReliabilityAgent, ScrapingEfficiencyAgent
from agents.messages import ScrapeResult, ScrapeSource
from swarm import RetryPolicy, Swarm, TaskFailed, TaskState

FAST = RetryPolicy(max_attempts=4, base_delay=0.001, max_delay=0.01)


async def test_parses_counts_malformed_and_dedupes(sources: dict[str, ScrapeSource]) -> None:
    scraper = ScrapingEfficiencyAgent(reliability_role=None)
    async with Swarm(agents=[scraper], retry_policy=FAST) as swarm:
        h = await swarm.submit(sources["steady"])
        await swarm.run_until_idle(timeout=10)
        result: ScrapeResult = await h.result()
    st = result.stats
    assert (st.fetched, st.parsed, st.malformed, st.duplicates) == (5, 3, 2, 1)
    assert st.malformed_ids == ["a-bad", "steady#4"]
    # a-3 differs from a-1 only in case and spacing: the same content hash.
    assert [d.doc_id for d in result.documents] == ["a-1", "a-2"]
    assert len({d.content_hash for d in result.documents}) == 2
    assert scraper.stats["steady"] == st


async def test_flaky_source_is_retried_until_it_answers(sources: dict[str, ScrapeSource]) -> None:
    scraper = ScrapingEfficiencyAgent(reliability_role=None)
    async with Swarm(agents=[scraper], retry_policy=FAST) as swarm:
        h = await swarm.submit(sources["flaky"], max_attempts=4)
        await swarm.run_until_idle(timeout=10)
        result: ScrapeResult = await h.result()
        record = await h.status()
    assert result.stats.attempts == 3
    assert record is not None and record.attempts == 3 and record.state is TaskState.DONE
    assert len(result.documents) == 2


async def test_down_source_opens_the_circuit_and_is_skipped(
    sources: dict[str, ScrapeSource],
) -> None:
    scraper = ScrapingEfficiencyAgent()
    reliability = ApiReliabilityAgent(failure_threshold=3, cooldown=3600.0)
    async with Swarm(agents=[scraper, reliability], retry_policy=FAST) as swarm:
        h = await swarm.submit(sources["down"], max_attempts=4)
        await swarm.run_until_idle(timeout=10)
        result: ScrapeResult = await h.result()
    assert result.stats.skipped == "circuit open"
    assert result.stats.attempts == 4 and result.documents == []
    breaker = reliability.breakers["down"]
    assert (breaker.successes, breaker.failures, breaker.state.value) == (0, 3, "open")


async def test_unknown_kind_fails_without_retries() -> None:
    scraper = ScrapingEfficiencyAgent(reliability_role=None)
    async with Swarm(agents=[scraper], retry_policy=FAST) as swarm:
        h = await swarm.submit(ScrapeSource(source_id="nowhere", kind="gopher"))
        await swarm.run_until_idle(timeout=10)
        with pytest.raises(TaskFailed, match="unsupported kind 'gopher'"):
            await h.result()
        record = await h.status()
    assert record is not None and record.attempts == 1
