"""``python -m swarm.agent ROLE``: run agents of one role as a process against Redis.

ROLE is ``module:Class`` (an :class:`~swarm.agent.base.Agent` subclass) or the
name of a stock role in ``agents.STOCK_AGENTS`` (a dict of role name to
class), when that registry exists.

SIGTERM (or SIGINT) drains: the agents stop reading, finish and ack what they
run, and leave. SIGKILL loses nothing either: the entries they had read stay
pending in Redis and a live replica's reaper reclaims them after the
visibility timeout.

Built by the assembly layer (:class:`swarm.service.SwarmService`), as the
Queen is. Environment (read here only): ``SWARM_REDIS_URL``, ``SWARM_CONSUL_URL``,
``SWARM_POSTGRES_URL``, ``SWARM_RETENTION``, ``SWARM_INBOX_MAXLEN``, ``SWARM_INBOX_TTL``,
``SWARM_HISTORY_KEEP`` when the options are not given. With ``--postgres`` the tasks
these agents finish go to the task history too (see :mod:`swarm.history`).

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
from collections.abc import Mapping, Sequence
from typing import Any

import structlog

from swarm import __version__
from swarm.agent.base import Agent
from swarm.cli import fail
from swarm.constants import DEFAULT_VISIBILITY_TIMEOUT
from swarm.errors import ConfigError, SwarmError
from swarm.history import options as history_options
from swarm.retry import RetryPolicy
from swarm.service.assembly import SwarmService
from swarm.settings import SwarmSettings, check_positive

__all__ = ["load_role", "main", "parse_args", "run", "settings_of"]

PROG = "python -m swarm.agent"

_log = structlog.get_logger("swarm.agent.cli")

DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Parse the command line."""
    p = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n")[0])
    p.add_argument("role", help="module:Class, or a stock role name from agents.STOCK_AGENTS")
    p.add_argument("--replicas", type=int, default=1, help="agents to run in this process")
    p.add_argument(
        "--redis", default=None,
        help="redis://, rediss:// or redis+cluster:// URL ($SWARM_REDIS_URL)",
    )
    p.add_argument(
        "--postgres", default=None,
        help="durable memory tier for ctx.memory and task history of the tasks run here: "
        "postgresql://... ($SWARM_POSTGRES_URL)",
    )
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
        help="register the agents with Consul: consul://[token@]host:port ($SWARM_CONSUL_URL)",
    )
    p.add_argument(
        "--check-ttl", type=float, default=10.0, help="TTL of each agent's Consul check (s)"
    )
    p.add_argument("--drain-timeout", type=float, default=60.0, help="seconds SIGTERM may drain")
    p.add_argument("--llm", choices=("auto", "online", "offline"),
                   help="ctx.llm: auto (online when ANTHROPIC_API_KEY is set), online, offline")
    p.add_argument("--version", action="version", version=f"queenswarm {__version__}")
    history_options.add_options(p, postgres=False)
    args = p.parse_args(argv)
    if args.replicas < 1:
        p.error("--replicas must be at least 1")
    if args.concurrency is not None and args.concurrency < 1:
        p.error("--concurrency must be at least 1")
    if args.max_attempts is not None and args.max_attempts < 1:
        p.error("--max-attempts must be at least 1")
    for option, value, zero in (
        ("--visibility-timeout", args.visibility_timeout, False),
        ("--check-ttl", args.check_ttl, False),
        ("--drain-timeout", args.drain_timeout, True),
    ):
        try:
            check_positive(option, value, zero=zero)
        except ConfigError as exc:
            p.error(str(exc))
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


def settings_of(args: argparse.Namespace, environ: Mapping[str, str]) -> SwarmSettings:
    """The process's settings: options, then ``SWARM_*`` variables, then defaults.

    Raises:
        ConfigError: A URL or number is invalid (the message names it).
    """
    check_positive("visibility timeout", args.visibility_timeout)
    base = SwarmSettings.from_env(environ)
    return base.replace(
        redis_url=args.redis or base.redis_url or DEFAULT_REDIS_URL,
        consul_url=args.consul or base.consul_url,
        postgres_url=args.postgres or base.postgres_url,
        lease_ttl=args.check_ttl,
        drain_timeout=args.drain_timeout,
        http=None,
        **{
            field: getattr(args, option)
            for option, field in (
                ("retention", "retention"), ("inbox_maxlen", "inbox_maxlen"),
                ("inbox_ttl", "inbox_ttl"), ("keep", "history_keep"),
            )
            if getattr(args, option, None) is not None
        },
        llm=base.llm.replace(mode=args.llm) if getattr(args, "llm", None) else base.llm,
    )


async def run(
    args: argparse.Namespace, *, stop: asyncio.Event | None = None, freeze_gc: bool = False
) -> int:
    """Run the agents until ``stop`` is set (or SIGTERM/SIGINT), then drain.

    ``freeze_gc`` (for a process of its own, as ``main`` runs): once started,
    move every object made so far to the collector's permanent generation.

    Raises:
        ConfigError: Bad role, URL or number.
        TransportError: Redis, Consul or PostgreSQL could not be reached.
    """
    cls = load_role(args.role)
    settings = settings_of(args, os.environ)
    retry = RetryPolicy(max_attempts=args.max_attempts) if args.max_attempts else None
    options: dict[str, Any] = {
        "prefix": args.prefix, "retry_policy": retry, "node_id": args.node_id,
        "visibility_timeout": args.visibility_timeout,
    }
    base = args.agent_id or f"{cls.role}-{socket.gethostname()}-{os.getpid()}"
    agents: list[Agent] = [
        cls(agent_id=base if args.replicas == 1 else f"{base}-{i}", concurrency=args.concurrency)
        for i in range(args.replicas)
    ]
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    service = SwarmService(settings, agents=agents, lead=False, runtime_options=options)
    try:
        async with service:
            _log.info(
                "agents running", role=cls.role, replicas=args.replicas,
                node=service.runtime.node_id,
            )
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
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
    if service.swarm is not None and service.swarm.leftovers:
        _log.warning(
            "stopped with unfinished tasks (they stay in Redis)",
            count=len(service.swarm.leftovers),
        )
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m swarm.agent``.

    Exit codes (as ``python -m swarm.queen``): 0 drained; 1 a server could
    not be reached; 2 bad usage or configuration.
    """
    args = parse_args(argv)
    try:
        return asyncio.run(run(args, freeze_gc=True))
    except SwarmError as exc:
        return fail(PROG, exc, sys.stderr)
