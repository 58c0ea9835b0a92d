"""``python -m swarm.queen``: run the swarm and its bundled job, or serve until signalled.

With no server configured the swarm is embedded (one process,
:class:`~swarm.inprocess.InProcessRuntime`); it runs the agents made by
``--agents module:factory`` (default ``agents:default_swarm``), runs the
bundled TGE job end to end with a progress display on standard error, prints
the report on standard output (``--json`` for a machine-readable one) and
exits 0 when every task ended ``done``. ``--serve`` keeps the agents running
until SIGINT or SIGTERM, then drains.

This is the only module that reads the environment (``SWARM_REDIS_URL``,
``SWARM_CONSUL_URL``, ``SWARM_AGENTS``, ``SWARM_LOG_LEVEL``,
``SWARM_LOG_JSON``); command-line options win over it.

Exit codes: 0 success; 1 the job failed (a task failed, expired or was
dead-lettered, or a stage could not run); 2 bad usage or configuration
(including ``--redis``/``--consul`` when their modules are not installed);
130 interrupted.

Example:
    >>> from swarm.cli import build_parser
    >>> build_parser().parse_args(["--json"]).json
    True
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import os
import signal
import sys
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any, TextIO

import msgspec

from swarm import __version__
from swarm.agent.base import Agent
from swarm.errors import ConfigError, SwarmError
from swarm.logging import configure_logging
from swarm.runtime import Runtime
from swarm.settings import DEFAULT_AGENTS, LOG_LEVELS, SwarmSettings
from swarm.swarm import Swarm

__all__ = ["build_parser", "load_agents", "main", "make_runtime", "settings_from"]

PROG = "python -m swarm.queen"


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``python -m swarm.queen``."""
    p = argparse.ArgumentParser(
        prog=PROG,
        description=(
            "Run a queenswarm swarm (embedded in this process unless --redis is given) and "
            "the bundled TGE job: find token-generation-event announcements in a bundled "
            "corpus end to end and print a report. --serve keeps the agents running instead."
        ),
        epilog=(
            "Environment (read only here; options win): SWARM_REDIS_URL, SWARM_CONSUL_URL, "
            "SWARM_AGENTS, SWARM_LOG_LEVEL, SWARM_LOG_JSON. Exit codes: 0 success, 1 job "
            "failed, 2 usage or configuration error, 130 interrupted."
        ),
    )
    p.add_argument(
        "--agents",
        metavar="MODULE:FACTORY",
        help=f"callable returning the agents to run (default: {DEFAULT_AGENTS})",
    )
    p.add_argument("--redis", metavar="URL", help="run on Redis at URL (needs swarm.redis)")
    p.add_argument("--consul", metavar="URL", help="register with Consul at URL (needs discovery)")
    p.add_argument(
        "--lease-ttl",
        type=float,
        default=DISCOVERY_TTL,
        metavar="SECONDS",
        help=f"TTL of the Queen's leadership lease and Consul checks (default: {DISCOVERY_TTL:g})",
    )
    p.add_argument(
        "--serve",
        action="store_true",
        help="serve until SIGINT/SIGTERM, then drain, instead of running the bundled job",
    )
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument(
        "--no-progress", action="store_true", help="no progress display on standard error"
    )
    p.add_argument("--log-level", choices=LOG_LEVELS, help="log level (default: warning)")
    p.add_argument("--log-json", action="store_true", default=None, help="logs as JSON lines")
    p.add_argument(
        "--task-timeout",
        type=float,
        default=60.0,
        metavar="SECONDS",
        help="longest wait for any one task of the job (default: 60)",
    )
    p.add_argument(
        "--drain-timeout",
        type=float,
        default=30.0,
        metavar="SECONDS",
        help="longest wait for in-flight work on shutdown (default: 30)",
    )
    p.add_argument("--version", action="version", version=f"queenswarm {__version__}")
    return p


def settings_from(args: argparse.Namespace, environ: Mapping[str, str]) -> SwarmSettings:
    """Settings from the environment, overridden by command-line options.

    Raises:
        ConfigError: A value is invalid.
    """
    settings = SwarmSettings.from_env(environ)
    changes: dict[str, object] = {}
    for option, field in (
        ("redis", "redis_url"),
        ("consul", "consul_url"),
        ("agents", "agents"),
        ("log_level", "log_level"),
        ("log_json", "log_json"),
    ):
        value = getattr(args, option)
        if value is not None:
            changes[field] = value
    return settings.replace(**changes) if changes else settings


def load_agents(spec: str) -> list[Agent]:
    """Import ``module:factory`` and call it for the agents to run.

    Raises:
        ConfigError: The module or attribute is missing, or it did not give agents.
    """
    module_name, _, attr = spec.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(f"cannot import agents module {module_name!r}: {exc}") from exc
    factory = getattr(module, attr, None)
    if not callable(factory):
        raise ConfigError(f"{spec!r}: {module_name} has no callable {attr!r}")
    made = factory()
    agents = [made] if isinstance(made, Agent) else list(made)
    if not agents or not all(isinstance(a, Agent) for a in agents):
        raise ConfigError(f"{spec!r} must return a non-empty list of Agent instances")
    return agents


def _optional(module: str, names: tuple[str, ...], option: str) -> list[Any]:
    try:
        mod = importlib.import_module(module)
        return [getattr(mod, name) for name in names]
    except (ImportError, AttributeError) as exc:
        raise ConfigError(
            f"{option} needs the {module!r} module ({', '.join(names)}), which is not "
            f"available in this installation: {exc}"
        ) from exc


def make_runtime(settings: SwarmSettings, *, discovery: Any = None) -> Runtime | None:
    """The runtime the settings ask for; ``None`` for Swarm's embedded default.

    Args:
        settings: Where Redis is, if anywhere.
        discovery: The service registry handed to agents' contexts.

    Raises:
        ConfigError: ``--redis`` given but the Redis runtime is not available.
    """
    if settings.redis_url is not None:
        runtime_cls, redis_settings = _optional(
            "swarm.redis", ("RedisRuntime", "RedisSettings"), "--redis"
        )
        # Fenced: a task this Queen stamps with a stale epoch is refused in Redis.
        runtime: Runtime = runtime_cls(
            settings=redis_settings.from_dsn(settings.redis_url),
            discovery=discovery,
            fence=LEADERSHIP,
        )
        return runtime
    if discovery is not None:
        from swarm.inprocess import InProcessRuntime

        return InProcessRuntime(discovery=discovery)
    return None


def _check_options(settings: SwarmSettings) -> None:
    """Fail fast (exit 2) when an option needs a module this installation lacks."""
    if settings.redis_url is not None:
        _optional("swarm.redis", ("RedisRuntime", "RedisSettings"), "--redis")
    if settings.consul_url is not None:
        _optional("discovery", ("open_registry", "register_agents", "QueenDiscovery"), "--consul")


#: Default TTL of the Consul checks of this process's agents and of the Queen's lease.
DISCOVERY_TTL = 10.0
#: Name of the Queens' leadership (its epoch fences their writes).
LEADERSHIP = "queen"


@contextlib.asynccontextmanager
async def _session(
    agents: list[Agent],
    settings: SwarmSettings,
    args: argparse.Namespace,
    display: _ProgressDisplay,
) -> AsyncIterator[Swarm]:
    """A running swarm: registry, runtime, agents and, with shared servers, leadership."""
    registry: Any = None
    if settings.consul_url is not None:
        (open_registry,) = _optional("discovery", ("open_registry",), "--consul")
        registry = await open_registry(settings.consul_url)
    try:
        runtime = make_runtime(settings, discovery=registry)
        display.message(f"starting {_describe(agents, runtime)}")
        swarm = Swarm(agents=agents, runtime=runtime, drain_timeout=args.drain_timeout)
        async with swarm:
            if registry is None and settings.redis_url is None:
                yield swarm  # embedded: one process, nothing to lead
                return
            async with _leadership(swarm, settings, registry, display, ttl=args.lease_ttl):
                yield swarm
    finally:
        if registry is not None:
            await registry.close()


@contextlib.asynccontextmanager
async def _leadership(
    swarm: Swarm,
    settings: SwarmSettings,
    registry: Any,
    display: _ProgressDisplay,
    *,
    ttl: float,
) -> AsyncIterator[None]:
    """Lead before dispatching: several Queens may run, one acts.

    With Consul the Queens elect on a session lock, and the Queen also routes by
    health and applies live config; with only Redis, on a Redis lease. The
    epoch stamps every task; on Redis it also raises the fence that refuses a
    deposed Queen's dispatches where they land.
    """
    names = ("register_agents", "QueenDiscovery", "LeaderElector", "RedisLease", "FencedWriter")
    register_agents, queen_discovery, leader_elector, redis_lease, fenced_writer = _optional(
        "discovery", names, "--consul"
    )
    redis_clients: Any = None
    try:
        fence: Any = None
        lease: Any = None
        if settings.redis_url is not None:
            clients_cls, redis_settings = _optional(
                "swarm.redis", ("RedisClients", "RedisSettings"), "--redis"
            )
            rs = redis_settings.from_dsn(settings.redis_url)
            redis_clients = await clients_cls.connect(rs)
            fence = fenced_writer(
                redis=redis_clients.commands, name=LEADERSHIP, prefix=rs.key_prefix
            )
            lease = redis_lease(redis=redis_clients.commands, prefix=rs.key_prefix)

        async def on_elected(leadership: Any) -> None:
            if fence is not None:
                await fence.advance(leadership.epoch)

        wired: Any
        if registry is not None:
            await register_agents(registry, swarm.agents, ttl=ttl)
            wired = queen_discovery(
                queen=swarm.queen,
                registry=registry,
                ttl=ttl,
                live_config=True,
                on_elected=on_elected,
            )
            elector = wired.elector
        else:
            wired = elector = leader_elector(
                election=lease,
                name=LEADERSHIP,
                holder=swarm.queen.queen_id,
                ttl=ttl,
                on_elected=on_elected,
            )
            swarm.queen.intake.epoch = elector.current
        await wired.start()
        try:
            display.message("waiting for leadership")
            await elector.wait_leading(timeout=None)
            display.message(f"leading with epoch {elector.epoch}")
            yield
        finally:
            await wired.close()
    finally:
        if redis_clients is not None:
            await redis_clients.close()


class _ProgressDisplay:
    """One rewritten status line on a terminal, plain lines otherwise."""

    def __init__(self, stream: TextIO, *, enabled: bool) -> None:
        self.stream = stream
        self.enabled = enabled
        self.tty = _isatty(stream)
        self._open_line = False

    def __call__(self, stage: str, done: int, total: int, detail: str) -> None:
        if not self.enabled:
            return
        text = f"[{stage} {done}/{total}] {detail}"
        if self.tty:
            self.stream.write(f"\r\x1b[K{text}")
            self._open_line = True
        else:
            self.stream.write(text + "\n")
        self.stream.flush()

    def message(self, text: str) -> None:
        self.close_line()
        self.stream.write(f"queenswarm: {text}\n")
        self.stream.flush()

    def close_line(self) -> None:
        if self._open_line:
            self.stream.write("\n")
            self._open_line = False


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def _describe(agents: list[Agent], runtime: Runtime | None) -> str:
    roles = sorted({a.role for a in agents})
    where = type(runtime).__name__ if runtime is not None else "InProcessRuntime (embedded)"
    return f"{len(agents)} agents ({', '.join(roles)}) on {where}"


async def _run_job(
    agents: list[Agent],
    settings: SwarmSettings,
    args: argparse.Namespace,
    out: TextIO,
    display: _ProgressDisplay,
) -> int:
    from agents.job import run_tge_job
    from agents.report import render_text

    async with _session(agents, settings, args, display) as swarm:
        try:
            report = await run_tge_job(swarm, progress=display, task_timeout=args.task_timeout)
        finally:
            display.close_line()
    if args.json:
        out.write(msgspec.json.format(msgspec.json.encode(report), indent=2).decode() + "\n")
    else:
        out.write(render_text(report))
    out.flush()
    if not report.ok:
        display.message("job FAILED: some tasks did not complete (see the report)")
    return 0 if report.ok else 1


async def _serve(
    agents: list[Agent],
    settings: SwarmSettings,
    args: argparse.Namespace,
    display: _ProgressDisplay,
) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    signals = (signal.SIGINT, signal.SIGTERM)
    for sig in signals:
        loop.add_signal_handler(sig, stop.set)
    try:
        async with _session(agents, settings, args, display) as swarm:
            display.message(
                f"ready: serving {_describe(agents, swarm.runtime)}; SIGINT/SIGTERM stops"
            )
            await stop.wait()
            display.message("signal received; draining")
        display.message(f"stopped; {len(swarm.leftovers)} unfinished tasks left over")
    finally:
        for sig in signals:
            loop.remove_signal_handler(sig)
    return 0 if not swarm.leftovers else 1


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m swarm.queen`` and the ``queenswarm`` script.

    Returns:
        The process exit code (see the module docstring).
    """
    args = build_parser().parse_args(argv)
    err = sys.stderr
    display = _ProgressDisplay(err, enabled=not args.no_progress)
    try:
        settings = settings_from(args, os.environ)
        configure_logging(level=settings.log_level, json=settings.log_json)
        agents = load_agents(settings.agents)
        _check_options(settings)
    except ConfigError as exc:
        err.write(f"{PROG}: error: {exc}\n")
        return 2
    try:
        if args.serve:
            return asyncio.run(_serve(agents, settings, args, display))
        return asyncio.run(_run_job(agents, settings, args, sys.stdout, display))
    except ConfigError as exc:
        err.write(f"{PROG}: error: {exc}\n")
        return 2
    except KeyboardInterrupt:
        display.message("interrupted")
        return 130
    except SwarmError as exc:
        display.message(f"error: {type(exc).__name__}: {exc}")
        return 1
