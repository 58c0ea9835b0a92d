"""``python -m swarm.agent``: argument parsing and role loading (no server needed)."""

from __future__ import annotations

import asyncio
import gc

import pytest

from swarm import Agent
from swarm.agent.cli import load_role, parse_args, run
from swarm.errors import ConfigError
from tests.redis.crash_agents import CrashWorker
from tests.redis.runtime_support import cleanup, new_prefix, redis_client
from tests.servers import require_redis


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


class Idle(Agent):
    role = "cli_idle"


@pytest.mark.integration
@pytest.mark.parametrize("freeze", [False, True])
async def test_a_process_of_its_own_freezes_its_startup_objects(freeze: bool) -> None:
    # ``main`` (a process of its own) moves the objects made at startup out of
    # the collector's reach once the agents run; ``run`` alone leaves the
    # collector as it is (e.g. in a test process like this one).
    url = require_redis()
    redis = await redis_client()
    prefix = new_prefix()
    stop = asyncio.Event()
    stop.set()  # start, register, then drain and leave at once
    args = parse_args([f"{__name__}:Idle", "--redis", url, "--prefix", prefix])
    gc.unfreeze()
    try:
        assert await asyncio.wait_for(run(args, stop=stop, freeze_gc=freeze), 30) == 0
        assert (gc.get_freeze_count() > 0) is freeze
    finally:
        gc.unfreeze()
        await cleanup(redis, prefix)
        await redis.aclose()
