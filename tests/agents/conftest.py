"""Fixtures for the stock-agent tests: small hand-made sources."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from agents.messages import ScrapeSource
from tests.agents.web_server import Site


def post(pid: str, title: str, body: str) -> dict[str, Any]:
    return {"id": pid, "title": title, "body": body, "published": "2025-02-01T00:00:00Z"}


GOOD: tuple[Any, ...] = (
    post("a-1", "Aurora Network ($AUR) TGE", "Token launch on March 14, 2025; airdrop too."),
    post("a-2", "Market wrap", "Bitcoin flat."),
    post("a-3", "aurora network ($aur) tge", "token  launch on march 14, 2025; AIRDROP too."),
    {"id": "a-bad", "title": "no body"},
    "not an object",
)


@pytest.fixture
def sources() -> dict[str, ScrapeSource]:
    return {
        "steady": ScrapeSource(source_id="steady", posts=list(GOOD)),
        "flaky": ScrapeSource(source_id="flaky", posts=list(GOOD[:2]), flaky_failures=2),
        "down": ScrapeSource(source_id="down", posts=list(GOOD[:2]), down=True),
    }


@pytest.fixture
async def sites() -> AsyncIterator[list[Site]]:
    """Ten local sites, one per loopback address 127.0.0.1-10 (ten hosts)."""
    made = [Site(host=f"127.0.0.{n}") for n in range(1, 11)]
    for s in made:
        await s.start()
    yield made
    for s in made:
        await s.stop()
