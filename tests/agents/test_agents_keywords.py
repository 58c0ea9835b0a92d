"""Keyword precision: scoring, negation in a context window, extraction."""

from __future__ import annotations

import pytest

from agents import KeywordPrecisionAgent
from agents.keywords import score_text
from agents.messages import Document, ScoreDocuments, ScoreResult
from swarm import Swarm


def test_announcement_is_a_candidate_with_extracted_fields() -> None:
    s = score_text(
        "Kelp Finance (KELP) announces token generation event for 20 March 2025",
        "The $KELP token launch follows; an airdrop is planned.",
    )
    assert s.is_candidate
    assert (s.project, s.symbol, s.date_text) == ("Kelp Finance", "KELP", "20 March 2025")
    assert {"token generation event", "token launch", "airdrop"} <= set(s.phrases)


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
    assert not score_text(title, body).is_candidate


def test_negative_outside_the_window_does_not_cancel() -> None:
    filler = " ".join(["word"] * 30)
    body = f"Old rumours were wrong. {filler} Nimbus (NMB) TGE on April 2, 2025, token launch."
    s = score_text("Nimbus Protocol news", body)
    assert s.is_candidate and s.symbol == "NMB"


def test_needs_symbol_and_date() -> None:
    assert not score_text("Big TGE soon", "A token generation event and token launch.").is_candidate


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
    assert (c.doc_id, c.project, c.symbol) == ("d1", "Orbiter DAO", "ORBT")
    assert c.date_text == "May 9, 2025"
