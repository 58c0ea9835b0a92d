"""The whole stock pipeline on the bundled corpus, checked against its ground truth."""

from __future__ import annotations

import importlib

import pytest

import agents
from agents import STOCK_AGENTS, default_swarm
from agents.corpus import load_corpus, load_ground_truth
from agents.job import JobReport, run_tge_job
from agents.report import render_text
from swarm import Agent, Swarm


@pytest.fixture(scope="module")
def report() -> JobReport:
    import asyncio

    async def run() -> JobReport:
        async with Swarm(agents=default_swarm()) as swarm:
            return await run_tge_job(swarm, task_timeout=20)

    return asyncio.run(run())


def test_finds_exactly_the_ground_truth(report: JobReport) -> None:
    truth = load_ground_truth()
    found = {(a.project, a.symbol, a.date) for a in report.announcements}
    assert found == truth.announcements
    assert report.ok and not report.errors


def test_decoys_and_rejects(report: JobReport) -> None:
    truth = load_ground_truth()
    used = {d for a in report.announcements for d in a.doc_ids}
    assert not used & truth.decoys
    assert {r.doc_id: r.reason for r in report.rejected} == truth.rejects


def test_malformed_entries_are_counted_per_source(report: JobReport) -> None:
    truth = load_ground_truth()
    reported = {
        (s.source_id, mid) for s in report.source_stats for mid in s.malformed_ids
    }
    for source_id, entry_id in truth.malformed:
        if entry_id is not None:
            assert (source_id, entry_id) in reported
    assert sum(s.malformed for s in report.source_stats) == len(truth.malformed)


def test_reposts_are_deduplicated(report: JobReport) -> None:
    truth = load_ground_truth()
    corpus = load_corpus()
    used = {d for a in report.announcements for d in a.doc_ids}
    for dup in truth.duplicates:
        source = corpus.source(dup.rsplit("-dup", 1)[0])
        posts = {p["id"]: p for p in source.posts if isinstance(p, dict) and "id" in p}
        twins = {pid for pid, p in posts.items() if p.get("body") == posts[dup]["body"]}
        assert len(twins) == 2 and len(twins & used) == 1


def test_retries_circuit_and_task_counts(report: JobReport) -> None:
    # chainbeat fails once, bitforum twice, ghost-feed three times until its circuit opens.
    assert report.retries == 6
    by_source = {s.source_id: s for s in report.source_stats}
    assert by_source["ghost-feed"].skipped == "circuit open"
    assert by_source["chainbeat"].attempts == 2 and by_source["bitforum"].attempts == 3
    states = {r.source_id: r.state.value for r in report.reliability}
    assert states["ghost-feed"] == "open"
    assert all(s == "closed" for sid, s in states.items() if sid != "ghost-feed")
    assert report.tasks["done"] > 0
    assert all(n == 0 for state, n in report.tasks.items() if state != "done")
    assert report.dead_letters == []
    assert [s.stage for s in report.stages] == ["scrape", "score", "validate"]
    assert report.slowest_stage in {"scrape", "score", "validate"}


def test_text_report_lists_everything(report: JobReport) -> None:
    text = render_text(report)
    for a in report.announcements:
        assert a.symbol in text and a.project in text and a.date in text
    assert "Result: OK" in text and "Dead letters: 0" in text


def test_stock_agents_and_factory() -> None:
    assert set(STOCK_AGENTS) == {a.role for a in default_swarm()}
    assert all(issubclass(cls, Agent) and cls.role == role for role, cls in STOCK_AGENTS.items())


@pytest.mark.parametrize(
    "module",
    ["agents", "agents.corpus", "agents.job", "agents.keywords", "agents.messages",
     "agents.performance", "agents.quality", "agents.reliability", "agents.report",
     "agents.scraping"],
)
def test_all_is_sorted_and_complete(module: str) -> None:
    mod = importlib.import_module(module)
    names = mod.__all__
    # ruff's RUF022 order (the CI check): CONSTANTS, then Classes, then functions.
    assert names == sorted(names, key=lambda n: (not n.isupper(), not n[:1].isupper(), n))
    public = {
        n for n, v in vars(mod).items()
        if not n.startswith("_") and getattr(v, "__module__", module) == module
        and not isinstance(v, type(agents))
    }
    assert public <= set(names) | {"annotations"}, public - set(names)


def test_a_report_covers_its_own_job_only() -> None:
    # Issue 12: repeated runs on one ledger reported done=45, then 90, then 135.
    import asyncio

    async def run_twice() -> tuple[JobReport, JobReport, int]:
        async with Swarm(agents=default_swarm()) as swarm:
            first = await run_tge_job(swarm, task_timeout=20)
            second = await run_tge_job(swarm, task_timeout=20)
            total = sum((await swarm.queen.counts()).values())
            return first, second, total

    first, second, total = asyncio.run(run_twice())
    # Sequential jobs' reports split the ledger between them, none counts twice.
    assert sum(first.tasks.values()) + sum(second.tasks.values()) == total
    assert 0 < second.tasks["done"] == sum(second.tasks.values()) < total
    assert second.ok and second.dead_letters == []
