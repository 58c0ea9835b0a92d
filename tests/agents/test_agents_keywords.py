"""Keyword precision: the detector as a stage, passing on announcements with their fields."""

from __future__ import annotations

import pytest

from agents import KeywordPrecisionAgent
from agents.keywords import candidate
from agents.messages import Document, ScoreDocuments, ScoreResult
from swarm import Swarm


def doc(title: str, body: str, published: str = "") -> Document:
    return Document(doc_id="d", source_id="s", title=title, body=body, published=published)


def test_announcement_is_a_candidate_with_extracted_fields() -> None:
    c = candidate(doc(
        "Kelp Finance (KELP) announces token generation event for 20 March 2025",
        "The $KELP token launch follows; an airdrop is planned.",
    ))
    assert c is not None
    assert (c.project, c.ticker, c.date) == ("Kelp Finance", "KELP", "2025-03-20")
    assert {"token generation event", "token launch", "airdrop"} <= set(c.phrases)
    assert 0.5 < c.confidence < 1.0 and c.evidence


@pytest.mark.parametrize(
    ("title", "body"),
    [
        ("Zephyr Labs TGE rumours denied", "Zephyr Labs (ZPH) TGE on April 30, 2025 is not real."),
        ("Weekly wrap", "A fake Nimbus (NMB) airdrop and TGE on April 2, 2025 is a phishing scam."),
        ("Helix update", "Helix (HLX) postponed its token generation event of May 1, 2025."),
        ("What is a TGE?", "A token generation event is when a token is minted."),
        ("Aurora Network (AUR) news", "Team shipped a wallet on March 14, 2025."),
    ],
)
def test_decoys_are_not_candidates(title: str, body: str) -> None:
    assert candidate(doc(title, body)) is None


def test_ticker_and_date_are_fields_not_conditions() -> None:
    c = candidate(doc("Nimbus TGE is tomorrow", "The Nimbus token goes live.", "2025-04-01"))
    assert c is not None and (c.project, c.ticker, c.date) == ("Nimbus", None, "2025-04-02")


async def test_agent_returns_only_candidates() -> None:
    docs = [
        Document(doc_id="d1", source_id="s", title="Orbiter DAO (ORBT) TGE",
                 body="Token launch on May 9, 2025."),
        Document(doc_id="d2", source_id="s", title="Gas fees fall", body="Cheap blocks."),
    ]
    async with Swarm(agents=[KeywordPrecisionAgent()]) as swarm:
        h = await swarm.submit(ScoreDocuments(documents=docs))
        await swarm.run_until_idle(timeout=10)
        result: ScoreResult = await h.result()
    assert (result.scored, result.dismissed) == (2, 1)
    [c] = result.candidates
    assert (c.doc_id, c.project, c.ticker, c.date) == ("d1", "Orbiter DAO", "ORBT", "2025-05-09")
