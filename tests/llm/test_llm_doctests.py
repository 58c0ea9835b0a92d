"""The docstring examples of the model layer and its uses run."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = [
    "swarm.llm.accounting", "swarm.llm.budget", "swarm.llm.chat", "swarm.llm.client",
    "swarm.llm.errors", "swarm.llm.hygiene", "swarm.llm.limiter", "swarm.llm.settings",
    "agents.classify", "memory.synthesis",
]


@pytest.mark.parametrize("name", MODULES)
def test_doctests(name: str) -> None:
    result = doctest.testmod(importlib.import_module(name),
                             optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0
    assert result.attempted > 0, f"{name} has no runnable example"
