"""Data quality: normalisation, rejects, cross-source merge and confidence."""

from __future__ import annotations

import pytest

from agents import DataQualityAgent
from agents.messages import Candidate, QualityReport, ValidateCandidates
from agents.quality import confidence, normalise_date, normalise_ticker
from swarm import Swarm


@pytest.mark.parametrize(
    ("text", "iso"),
    [
        ("2025-03-14", "2025-03-14"), ("March 14, 2025", "2025-03-14"),
        ("Mar 14 2025", "2025-03-14"), ("14 March 2025", "2025-03-14"),
        ("2025-02-30", None), ("Smarch 1, 2025", None), ("soon", None), (None, None),
        ("--09-26", "--09-26"), ("--02-30", None),
    ],
)
def test_normalise_date(text: str, iso: str | None) -> None:
    assert normalise_date(text) == iso


def test_normalise_ticker() -> None:
    assert normalise_ticker("$aur") == "AUR"
    assert normalise_ticker("MEGAYIELDFARMTOKEN") is None
    assert normalise_ticker("1INCH") == "1INCH"
    assert normalise_ticker("2024") is None and normalise_ticker(None) is None


def test_confidence_grows_with_sources_and_drops_on_conflict() -> None:
    one = confidence(sources=1, best=0.8, conflicting=False)
    three = confidence(sources=3, best=0.8, conflicting=False)
    assert one < three <= 0.99
    assert confidence(sources=3, best=0.8, conflicting=True) < three


def cand(doc: str, source: str, *, project: str | None = "Lumen Bridge",
         ticker: str | None = "LMB", date: str | None = "2025-05-22", conf: float = 0.8,
         h: str = "") -> Candidate:
    return Candidate(doc_id=doc, source_id=source, score=5.0, confidence=conf, project=project,
                     ticker=ticker, date=date, evidence=f"evidence {doc}", content_hash=h or doc)


async def test_merges_rejects_and_dedupes() -> None:
    candidates = [
        cand("a1", "a"),
        cand("b1", "b", date="--05-22", conf=0.9),  # no year in that text: agrees with a1
        cand("c1", "c", date="2025-05-23"),
        cand("c2", "c", h="a1"),  # exact re-post of a1 in another source
        cand("p1", "p", project="Lumen Bridge", ticker=None, date=None),  # joins by project
        cand("x1", "x", project="Pyxis", ticker="PYX", date="2025-02-30"),
        cand("x2", "x", project="Mega", ticker="MEGAYIELDFARMTOKEN"),
        cand("x3", "x", project="  ", ticker=None),
    ]
    async with Swarm(agents=[DataQualityAgent()]) as swarm:
        h = await swarm.submit(ValidateCandidates(candidates=candidates))
        await swarm.run_until_idle(timeout=10)
        report: QualityReport = await h.result()
    lumen, pyxis, mega = report.announcements  # tickers, then project-only groups
    assert (lumen.project, lumen.ticker, lumen.date) == ("Lumen Bridge", "LMB", "2025-05-22")
    assert lumen.sources == ["a", "b", "c", "p"] and lumen.conflicting_dates == ["2025-05-23"]
    assert lumen.doc_ids == ["a1", "b1", "c1", "p1"] and lumen.evidence == "evidence b1"
    assert lumen.confidence == confidence(sources=4, best=0.9, conflicting=True)
    # An implausible ticker or date is dropped to None, not a reason to lose the project.
    assert (mega.project, mega.ticker) == ("Mega", None)
    assert (pyxis.ticker, pyxis.date) == ("PYX", None)
    assert report.duplicates == 1
    assert {(r.doc_id, r.reason) for r in report.rejected} == {("x3", "no_subject")}


async def test_near_duplicates_across_sources_count_once() -> None:
    import msgspec

    from agents.neardup import simhash

    text = "Binance will list Lombard (BARD) and open trading for BARD/USDT at 14:00 UTC today."
    near = text.upper().replace("TODAY.", "TODAY!")
    other = "Kodiak has announced the upcoming TGE for its native token, $KDK, on December 23."
    candidates = [
        msgspec.structs.replace(cand("a1", "a"), simhash=simhash(text)),
        msgspec.structs.replace(cand("b1", "b"), simhash=simhash(near)),
        msgspec.structs.replace(
            cand("b2", "b", project="Kodiak", ticker="KDK"), simhash=simhash(other)
        ),
    ]
    async with Swarm(agents=[DataQualityAgent()]) as swarm:
        h = await swarm.submit(ValidateCandidates(candidates=candidates))
        await swarm.run_until_idle(timeout=10)
        report: QualityReport = await h.result()
    assert report.duplicates == 1
    assert [(a.ticker, a.doc_ids) for a in report.announcements] == [
        ("KDK", ["b2"]), ("LMB", ["a1"]),
    ]
