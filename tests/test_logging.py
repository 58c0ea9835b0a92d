"""swarm.logging: JSON and console rendering, level filtering."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator

import pytest
import structlog

from swarm.errors import ConfigError
from swarm.logging import configure_logging


@pytest.fixture(autouse=True)
def reset_structlog() -> Iterator[None]:
    yield
    structlog.reset_defaults()


def test_json_lines_with_level_logger_and_timestamp() -> None:
    out = io.StringIO()
    configure_logging(level="info", json=True, stream=out)
    structlog.get_logger("swarm.test").bind(agent_id="a1").info("started", n=2)
    record = json.loads(out.getvalue())
    assert record["event"] == "started" and record["level"] == "info"
    assert record["agent_id"] == "a1" and record["n"] == 2 and record["logger"] == "swarm.test"
    assert record["timestamp"].endswith("Z")


def test_levels_below_the_threshold_are_no_ops() -> None:
    out = io.StringIO()
    configure_logging(level="warning", json=False, stream=out, timestamps=False)
    log = structlog.get_logger("x").bind()
    log.info("hidden")
    log.debug("hidden too")
    log.warning("shown", k="v")
    text = out.getvalue()
    assert "hidden" not in text and "shown" in text and "k=v" in text
    # make_filtering_bound_logger turns disabled levels into a shared no-op.
    assert type(log).info is type(log).debug


def test_unknown_level() -> None:
    with pytest.raises(ConfigError):
        configure_logging(level="loud")
