"""``python -m swarm.agent ROLE``: run agents of one role as a process against Redis.

ROLE is ``module:Class`` (an :class:`~swarm.agent.base.Agent` subclass) or the
name of a stock role in ``agents.STOCK_AGENTS`` (a dict of role name to
class), when that registry exists.

SIGTERM (or SIGINT) drains: the agents stop reading, finish and ack what they
run, and leave. SIGKILL loses nothing either: the entries they had read stay
pending in Redis and a live replica's reaper reclaims them after the
visibility timeout.

Environment (read here only): ``SWARM_REDIS_URL`` when ``--redis`` is not given.

Example:
    >>> from swarm.agent.cli import parse_args
    >>> args = parse_args(["mypkg.mod:Worker", "--replicas", "2"])
    >>> args.role, args.replicas, args.concurrency
    ('mypkg.mod:Worker', 2, None)
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import importlib
import os
import signal
import socket
import sys
from collections.abc import Sequence
from typing import Any

import structlog

from swarm import __version__
from swarm.agent.base import Agent
from swarm.constants import DEFAULT_VISIBILITY_TIMEOUT
from swarm.errors import ConfigError, SwarmError
from swarm.redis.runtime import RedisRuntime
from swarm.redis.settings import RedisSettings
from swarm.retry import RetryPolicy

__all__ = ["load_role", "main", "parse_args", "run"]

_log = structlog.get_logger("swarm.agent.cli")

DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Parse the command line."""
    p = argparse.ArgumentParser(prog="python -m swarm.agent", description=__doc__.split("\n")[0])
    p.add_argument("role", help="module:Class, or a stock role name from agents.STOCK_AGENTS")
    p.add_argument("--replicas", type=int, default=1, help="agents to run in this process")
    p.add_argument("--redis", default=None, help="redis:// or rediss:// URL ($SWARM_REDIS_URL)")
    p.add_argument("--concurrency", type=int, default=None, help="tasks each agent runs at once")
    p.add_argument("--prefix", default=None, help="Redis key prefix (default: the URL's)")
    p.add_argument(
        "--visibility-timeout",
        type=float,
        default=DEFAULT_VISIBILITY_TIMEOUT,
        help="seconds before an unacked task is redelivered",
    )
    p.add_argument("--max-attempts", type=int, default=None, help="attempts before dead-letter")
    p.add_argument(
        "--agent-id",
        default=None,
        help="base of the agent ids (stable ids let a restart re-read its own pending tasks)",
    )
    p.add_argument("--node-id", default=None, help="runtime node id (default: random)")
    p.add_argument(
        "--consul",
        default=None,
        help="register the agents with Consul at this URL ($SWARM_CONSUL_URL)",
    )
    p.add_argument(
        "--check-ttl", type=float, default=10.0, help="TTL of each agent's Consul check (s)"
    )
    p.add_argument("--drain-timeout", type=float, default=60.0, help="seconds SIGTERM may drain")
    p.add_argument("--version", action="version", version=f"queenswarm {__version__}")
    args = p.parse_args(argv)
    if args.replicas < 1:
        p.error("--replicas must be at least 1")
    if args.concurrency is not None and args.concurrency < 1:
        p.error("--concurrency must be at least 1")
    return args


def load_role(spec: str) -> type[Agent]:
    """Resolve ``module:Class`` or a stock role name to an Agent class.

    Raises:
        ConfigError: Nothing by that name, or not an Agent subclass.
    """
    if ":" in spec:
        module_name, _, attr = spec.partition(":")
        try:
            obj = getattr(importlib.import_module(module_name), attr)
        except (ImportError, AttributeError) as exc:
            raise ConfigError(f"cannot load agent class {spec!r}: {exc}") from exc
    else:
        try:
            stock = importlib.import_module("agents").STOCK_AGENTS
        except (ImportError, AttributeError):
            stock = {}
        obj = stock.get(spec)
        if obj is None:
            known = ", ".join(sorted(stock)) or "none"
            raise ConfigError(f"unknown role {spec!r} (stock roles: {known}); use module:Class")
    if not (isinstance(obj, type) and issubclass(obj, Agent)):
        raise ConfigError(f"{spec!r} is not an Agent subclass")
    return obj


async def run(
    args: argparse.Namespace, *, stop: asyncio.Event | None = None, freeze_gc: bool = False
) -> int:
    """Run the agents until ``stop`` is set (or SIGTERM/SIGINT), then drain.

    ``freeze_gc`` (for a process of its own, as ``main`` runs): once started,
    move every object made so far to the collector's permanent generation.
    """
    cls = load_role(args.role)
    url = args.redis or os.environ.get("SWARM_REDIS_URL") or DEFAULT_REDIS_URL
    settings = RedisSettings.from_dsn(url)
    retry = RetryPolicy(max_attempts=args.max_attempts) if args.max_attempts else None
    consul_url = args.consul or os.environ.get("SWARM_CONSUL_URL")
    registry: Any = None
    if consul_url:
        from discovery import open_registry

        registry = await open_registry(consul_url)
    runtime = RedisRuntime(
        settings=settings,
        prefix=args.prefix,
        retry_policy=retry,
        visibility_timeout=args.visibility_timeout,
        node_id=args.node_id,
        discovery=registry,
    )
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    base = args.agent_id or f"{cls.role}-{socket.gethostname()}-{os.getpid()}"
    await runtime.start()
    try:
        agents: list[Agent] = []
        for i in range(args.replicas):
            agent_id = base if args.replicas == 1 else f"{base}-{i}"
            agents.append(cls(agent_id=agent_id, concurrency=args.concurrency))
            await runtime.register(agents[-1])
        if registry is not None:
            from discovery import register_agents

            # Heartbeats run in the registry's own tasks: handler load cannot starve them.
            await register_agents(registry, agents, ttl=args.check_ttl)
        _log.info("agents running", role=cls.role, replicas=args.replicas, node=runtime.node_id)
        if freeze_gc:
            # Startup's objects (modules, the runtime, the agents) live as long
            # as the process: kept out of the collector, the full collections
            # that task traffic triggers do not traverse them each time (about
            # half of the collection time per task of this process).
            gc.collect()
            gc.freeze()
        await stop.wait()
        _log.info("draining", role=cls.role)
    finally:
        if registry is not None:
            await registry.close()  # deregisters first: the Queen stops routing here
        leftovers = await runtime.stop(drain=True, timeout=args.drain_timeout)
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
    if leftovers:
        _log.warning("stopped with unfinished tasks (they stay in Redis)", count=len(leftovers))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m swarm.agent``."""
    args = parse_args(argv)
    try:
        return asyncio.run(run(args, freeze_gc=True))
    except SwarmError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
