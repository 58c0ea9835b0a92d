"""Fixtures for the stock-agent tests: small hand-made corpora."""

from __future__ import annotations

from typing import Any

import pytest

from agents.corpus import Corpus, SourceSpec


def post(pid: str, title: str, body: str) -> dict[str, Any]:
    return {"id": pid, "title": title, "body": body, "published": "2025-02-01T00:00:00Z"}


@pytest.fixture
def tiny_corpus() -> Corpus:
    good = (
        post("a-1", "Aurora Network ($AUR) TGE", "Token launch on March 14, 2025; airdrop too."),
        post("a-2", "Market wrap", "Bitcoin flat."),
        post("a-3", "aurora network ($aur) tge", "token  launch on march 14, 2025; AIRDROP too."),
        {"id": "a-bad", "title": "no body"},
        "not an object",
    )
    return Corpus(
        (
            SourceSpec(id="steady", name="Steady", kind="news", posts=good),
            SourceSpec(id="flaky", name="Flaky", kind="news", posts=good[:2], flaky_failures=2),
            SourceSpec(id="down", name="Down", kind="news", posts=good[:2], down=True),
        )
    )
