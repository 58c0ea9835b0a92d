"""The whole stock pipeline on the bundled real excerpts, scored against their labels."""

from __future__ import annotations

import importlib

import pytest

import agents
from agents import STOCK_AGENTS, default_swarm
from agents.corpus import load_corpus, load_input
from agents.detect.evaluate import evaluate
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


def test_scores_against_the_labels(report: JobReport) -> None:
    corpus = load_corpus()
    ev = report.evaluation
    assert ev is not None and ev.labelled == len(corpus.labels) >= 200
    assert ev.tp + ev.fn == sum(1 for lb in corpus.labels.values() if lb["is_announcement"])
    # The pipeline decides per document exactly as the detector does on its own.
    rows = [
        {**p, "text": p["body"]} for s in corpus.sources if not s.down for p in s.posts
    ]
    alone = evaluate(rows)
    assert (ev.tp, ev.fp, ev.fn) == (alone.tp, alone.fp, alone.fn)
    assert report.ok and not report.errors


def test_every_announcement_cites_labelled_documents(report: JobReport) -> None:
    corpus = load_corpus()
    for a in report.announcements:
        assert a.doc_ids and set(a.doc_ids) <= set(corpus.labels)
        assert a.project or a.ticker
        assert a.evidence and 0.05 <= a.confidence <= 0.99


def test_retries_circuit_and_task_counts(report: JobReport) -> None:
    # flaky-mirror fails twice; down-mirror three times until its circuit opens.
    assert report.retries == 5
    by_source = {s.source_id: s for s in report.source_stats}
    assert by_source["down-mirror"].skipped == "circuit open"
    assert by_source["flaky-mirror"].attempts == 3 and by_source["flaky-mirror"].fetched > 0
    states = {r.source_id: r.state.value for r in report.reliability}
    assert states["down-mirror"] == "open"
    assert all(s == "closed" for sid, s in states.items() if sid != "down-mirror")
    assert report.tasks["done"] > 0
    assert all(n == 0 for state, n in report.tasks.items() if state != "done")
    assert report.dead_letters == []
    assert [s.stage for s in report.stages] == ["scrape", "score", "validate"]


def test_text_report_lists_everything(report: JobReport) -> None:
    text = render_text(report)
    for a in report.announcements:
        assert (a.ticker or "-") in text and (a.date or "-") in text
    assert "precision" in text and "recall" in text
    assert "Result: OK" in text and "Dead letters: 0" in text


async def test_input_file_in_one_place_with_malformed_lines(tmp_path: object) -> None:
    from pathlib import Path

    path = Path(str(tmp_path)) / "docs.jsonl"
    path.write_text(
        '{"id": "n1", "title": "Binance Will List Lombard (BARD)", '
        '"body": "Trading opens 2025-09-18 14:00 (UTC).", "source": "notices"}\n'
        "not json\n"
        '{"id": "n2", "text": "Bitcoin holds above $75k as inflows slow."}\n'
        '{"text": "no id"}\n'
        '["a", "list"]\n'
        '{"id": "n1", "text": "again"}\n',
        encoding="utf-8",
    )
    corpus = load_input(path)
    assert [str(m) for m in corpus.malformed][1:] == [
        'line 4: missing or empty "id"', "line 5: expected a JSON object, got list",
        "line 6: duplicate id 'n1'",
    ]
    assert str(corpus.malformed[0]).startswith("line 2: invalid JSON")
    async with Swarm(agents=default_swarm()) as swarm:
        report = await run_tge_job(swarm, corpus=corpus, task_timeout=20)
    assert report.ok and report.evaluation is None and len(report.malformed_lines) == 4
    [a] = report.announcements
    assert (a.project, a.ticker, a.date, a.doc_ids) == ("Lombard", "BARD", "2025-09-18", ["n1"])
    assert a.sources == ["notices"]


def test_input_line_not_utf8_is_reported_and_skipped(tmp_path: object) -> None:
    from pathlib import Path

    path = Path(str(tmp_path)) / "docs.jsonl"
    path.write_bytes(
        b'\xef\xbb\xbf{"id": "a", "text": "Lombard (BARD) token trading opens today."}\n'
        b'{"id": "b", "text": "caf\xe9 latin-1"}\n'
        b'{"id": "c", "text": "Bitcoin holds above $75k."}\n'
    )
    corpus = load_input(path)
    assert [str(m) for m in corpus.malformed] == ["line 2: not UTF-8 text: invalid "
                                                   "continuation byte (byte 25)"]
    assert sorted(p["id"] for s in corpus.sources for p in s.posts) == ["a", "c"]


def test_stock_agents_and_factory() -> None:
    assert set(STOCK_AGENTS) == {a.role for a in default_swarm()}
    assert all(issubclass(cls, Agent) and cls.role == role for role, cls in STOCK_AGENTS.items())


@pytest.mark.parametrize(
    "module",
    ["agents", "agents.corpus", "agents.job", "agents.keywords", "agents.messages",
     "agents.performance", "agents.quality", "agents.detect", "agents.detect.dates",
     "agents.detect.evaluate", "agents.detect.extract", "agents.detect.lexicon",
     "agents.detect.model", "agents.detect.fit", "agents.neardup", "agents.breakers",
     "agents.fetch.guard", "agents.fetch.fetcher", "agents.fetch.parse",
     "agents.reliability", "agents.report", "agents.scraping"],
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
