"""The docstring examples of the agents package, the CLI, settings and logging run."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = [
    "agents", "agents.corpus", "agents.job", "agents.keywords", "agents.messages",
    "agents.performance", "agents.quality", "agents.reliability", "agents.report",
    "agents.scraping", "agents.detect", "agents.detect.detector", "agents.detect.dates",
    "agents.detect.extract", "agents.detect.evaluate", "agents.detect.lexicon",
    "agents.detect._keys", "agents.neardup", "agents.breakers", "agents.fetch",
    "agents.fetch.guard", "agents.fetch.fetcher", "agents.fetch.parse", "agents.detect.model",
    "agents.detect.fit", "swarm.cli", "swarm.logging", "swarm.settings",
]


@pytest.mark.parametrize("name", MODULES)
def test_doctests(name: str) -> None:
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.failed == 0
    assert result.attempted > 0, f"{name} has no runnable example"
