"""``python -m swarm.agent``: argument parsing and role loading (no server needed)."""

from __future__ import annotations

import pytest

from swarm.agent.cli import load_role, parse_args
from swarm.errors import ConfigError
from tests.redis.crash_agents import CrashWorker


def test_module_class_role_loads() -> None:
    assert load_role("tests.redis.crash_agents:CrashWorker") is CrashWorker


@pytest.mark.parametrize(
    "spec", ["no_such_module:X", "tests.redis.crash_agents:Nope", "os:path", "unknown-stock-role"]
)
def test_bad_roles_are_config_errors(spec: str) -> None:
    with pytest.raises(ConfigError):
        load_role(spec)


def test_arguments() -> None:
    args = parse_args(["m:C", "--replicas", "3", "--concurrency", "5", "--redis", "redis://h:1/2"])
    assert (args.role, args.replicas, args.concurrency, args.redis) == (
        "m:C",
        3,
        5,
        "redis://h:1/2",
    )
    with pytest.raises(SystemExit):
        parse_args(["m:C", "--replicas", "0"])


def test_stock_role_loads_from_the_agents_registry() -> None:
    from agents import STOCK_AGENTS

    for role, cls in STOCK_AGENTS.items():
        assert load_role(role) is cls
