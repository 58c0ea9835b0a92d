"""Data quality: normalisation, rejects, cross-source merge and confidence."""

from __future__ import annotations

import pytest

from agents import DataQualityAgent
from agents.messages import Candidate, QualityReport, ValidateCandidates
from agents.quality import confidence, normalise_date, normalise_symbol
from swarm import Swarm


@pytest.mark.parametrize(
    ("text", "iso"),
    [
        ("2025-03-14", "2025-03-14"), ("March 14, 2025", "2025-03-14"),
        ("Mar 14 2025", "2025-03-14"), ("14 March 2025", "2025-03-14"),
        ("2025-02-30", None), ("Smarch 1, 2025", None), ("soon", None),
    ],
)
def test_normalise_date(text: str, iso: str | None) -> None:
    assert normalise_date(text) == iso


def test_normalise_symbol() -> None:
    assert normalise_symbol("$aur") == "AUR"
    assert normalise_symbol("MEGAYIELDFARMTOKEN") is None
    assert normalise_symbol("1INCHX") is None


def test_confidence_grows_with_sources_and_drops_on_conflict() -> None:
    one = confidence(sources=1, best_score=7.0, conflicting=False)
    three = confidence(sources=3, best_score=7.0, conflicting=False)
    assert one < three <= 0.99
    assert confidence(sources=3, best_score=7.0, conflicting=True) < three


def cand(doc: str, source: str, *, project: str = "Lumen Bridge", symbol: str = "LMB",
         date: str = "May 22, 2025", score: float = 7.0, h: str = "") -> Candidate:
    return Candidate(doc_id=doc, source_id=source, score=score, project=project, symbol=symbol,
                     date_text=date, content_hash=h or doc)


async def test_merges_rejects_and_dedupes() -> None:
    candidates = [
        cand("a1", "a", date="2025-05-22"),
        cand("b1", "b"),
        cand("c1", "c", date="May 23, 2025"),
        cand("c2", "c", h="a1"),  # exact re-post of a1 in another source
        cand("x1", "x", project="Pyxis", symbol="PYX", date="2025-02-30"),
        cand("x2", "x", project="Mega", symbol="MEGAYIELDFARMTOKEN"),
        cand("x3", "x", project="  ", symbol="GHST"),
    ]
    async with Swarm(agents=[DataQualityAgent()]) as swarm:
        h = await swarm.submit(ValidateCandidates(candidates=candidates))
        await swarm.run_until_idle(timeout=10)
        report: QualityReport = await h.result()
    [a] = report.announcements
    assert (a.project, a.symbol, a.date) == ("Lumen Bridge", "LMB", "2025-05-22")
    assert a.sources == ["a", "b", "c"] and a.conflicting_dates == ["2025-05-23"]
    assert a.confidence == confidence(sources=3, best_score=7.0, conflicting=True)
    assert report.duplicates == 1
    assert {(r.doc_id, r.reason) for r in report.rejected} == {
        ("x1", "invalid_date"), ("x2", "invalid_symbol"), ("x3", "missing_project"),
    }
