"""``python -m swarm.queen``: run a bundle's job, or serve the swarm (with its HTTP API).

Everything is built by the assembly layer (:class:`swarm.service.SwarmService`)
from one :class:`~swarm.settings.SwarmSettings`. What runs is a bundle:
``--agents module:factory``, or the installed ``queenswarm.agents`` entry
point named ``default`` (the stock TGE pipeline). Without ``--serve`` the
bundle's job runs to the end with a progress display on standard error and
its report on standard output (``--json`` for machines). ``--serve`` keeps
the swarm up until SIGINT or SIGTERM, then drains; ``--http HOST:PORT``
serves the HTTP API meanwhile.

This is the only module (with :mod:`swarm.agent.cli`) that reads the
environment; command-line options win over it.

Exit codes: 0 success; 1 the job failed, or a server (Redis, Consul,
PostgreSQL) could not be reached, or leadership did not come in time; 2 bad
usage or configuration; 130 interrupted.

Example:
    >>> from swarm.cli import build_parser
    >>> build_parser().parse_args(["--json"]).json
    True
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
from collections.abc import Mapping, Sequence
from typing import TextIO

import msgspec

from swarm import __version__
from swarm.errors import ConfigError, SwarmError, SwarmTimeout, TransportError
from swarm.history import options as history_options
from swarm.logging import configure_logging, redact_text
from swarm.service.assembly import SwarmService
from swarm.service.bundle import Bundle, JobOutcome, load_bundle
from swarm.settings import LOG_LEVELS, SwarmSettings
from swarm.tracing import configure_tracing

__all__ = ["ENVIRONMENT", "build_parser", "fail", "main", "settings_from"]

PROG = "python -m swarm.queen"
#: Variables read (only) by the CLIs.
ENVIRONMENT = (
    "SWARM_REDIS_URL", "SWARM_CONSUL_URL", "SWARM_POSTGRES_URL", "SWARM_AGENTS", "SWARM_HTTP",
    "SWARM_TOKENS_FILE", "SWARM_TOKENS", "SWARM_LOG_LEVEL", "SWARM_LOG_JSON",
    "SWARM_RETENTION", "SWARM_INBOX_MAXLEN", "SWARM_INBOX_TTL", "SWARM_HISTORY_KEEP",
    "SWARM_REDIS_FASTPATH",
    "ANTHROPIC_API_KEY", "ANTHROPIC_BASE_URL", "SWARM_LLM", "SWARM_LLM_MODEL", "SWARM_LLM_RPM",
    "SWARM_LLM_ITPM", "SWARM_LLM_OTPM", "SWARM_LLM_PERIOD", "SWARM_LLM_BUDGETS", "SWARM_LLM_JOB",
)
_DEFAULTS = SwarmSettings()


def build_parser(bundle: Bundle | None = None) -> argparse.ArgumentParser:
    """The argument parser of ``python -m swarm.queen`` (with ``bundle``'s own options)."""
    p = argparse.ArgumentParser(
        prog=PROG,
        description=(
            "Run a queenswarm swarm (embedded in this process unless --redis is given): run "
            "the bundle's job to the end (the stock bundle finds token-generation-event "
            "announcements in a bundled corpus and prints a report), or --serve."
        ),
        epilog=(
            f"Environment (read only here; options win): {', '.join(ENVIRONMENT)}. Exit "
            "codes: 0 success, 1 job failed or a server unreachable, 2 usage or configuration "
            "error, 130 interrupted."
        ),
    )
    p.add_argument("--agents", metavar="MODULE:FACTORY",
                   help="bundle or agents to run (default: the 'queenswarm.agents' entry point)")
    p.add_argument("--no-agents", action="store_true",
                   help="a Queen alone: its agents run in 'python -m swarm.agent' processes")
    p.add_argument("--redis", metavar="URL",
                   help="run on Redis: redis://, rediss://, redis+cluster:// ($SWARM_REDIS_URL)")
    p.add_argument("--consul", metavar="URL",
                   help="register with Consul: consul://[token@]host:port ($SWARM_CONSUL_URL)")
    p.add_argument("--postgres", metavar="DSN",
                   help="durable memory tier and task history: postgresql://... "
                   "($SWARM_POSTGRES_URL)")
    p.add_argument("--http", metavar="HOST:PORT",
                   help="serve the HTTP API (with --serve) on HOST:PORT ($SWARM_HTTP)")
    p.add_argument("--tokens-file", metavar="PATH",
                   help="API tokens, 'ROLE SHA256HEX [NAME]' lines ($SWARM_TOKENS_FILE)")
    p.add_argument("--lease-ttl", type=float, metavar="SECONDS",
                   help=f"TTL of the leadership lease and Consul checks "
                   f"(default: {_DEFAULTS.lease_ttl:g})")
    p.add_argument("--leader-timeout", type=float, metavar="SECONDS",
                   help="longest wait to lead before running a job "
                   f"(default: {_DEFAULTS.leader_timeout:g})")
    p.add_argument("--serve", action="store_true",
                   help="serve until SIGINT/SIGTERM, then drain, instead of running the job")
    p.add_argument("--llm", choices=("auto", "online", "offline"),
                   help="Claude for uncertain documents, synthesis and chat: auto (when "
                        "ANTHROPIC_API_KEY is set, the default), online (require it) or offline")
    p.add_argument("--json", action="store_true", help="print the job's report as JSON")
    p.add_argument("--no-progress", action="store_true",
                   help="no progress display on standard error")
    p.add_argument("--log-level", choices=LOG_LEVELS, help="log level (default: warning)")
    p.add_argument("--log-json", action="store_true", default=None, help="logs as JSON lines")
    p.add_argument("--task-timeout", type=float, metavar="SECONDS",
                   help=f"longest wait for any one task of the job "
                   f"(default: {_DEFAULTS.task_timeout:g})")
    p.add_argument("--drain-timeout", type=float, metavar="SECONDS",
                   help=f"longest wait for in-flight work on shutdown "
                   f"(default: {_DEFAULTS.drain_timeout:g})")
    p.add_argument("--version", action="version", version=f"queenswarm {__version__}")
    history_options.add_options(p, postgres=False)
    if bundle is not None and bundle.add_arguments is not None:
        bundle.add_arguments(p.add_argument_group(f"options of the {bundle.name!r} bundle"))  # type: ignore[arg-type]
    return p


_OPTIONS = (
    ("redis", "redis_url"), ("consul", "consul_url"), ("postgres", "postgres_url"),
    ("agents", "agents"), ("http", "http"), ("tokens_file", "tokens_file"),
    ("lease_ttl", "lease_ttl"), ("leader_timeout", "leader_timeout"),
    ("drain_timeout", "drain_timeout"), ("task_timeout", "task_timeout"),
    ("log_level", "log_level"), ("log_json", "log_json"),
    ("retention", "retention"), ("inbox_maxlen", "inbox_maxlen"), ("inbox_ttl", "inbox_ttl"),
    ("keep", "history_keep"),
)


#: Seconds between the serving Queen's summary lines (on a terminal).
SUMMARY_EVERY = 10.0


def settings_from(args: argparse.Namespace, environ: Mapping[str, str]) -> SwarmSettings:
    """Settings from the environment, overridden by command-line options.

    Raises:
        ConfigError: A value is invalid.
    """
    settings = SwarmSettings.from_env(environ)
    changes: dict[str, object] = {
        field: getattr(args, option) for option, field in _OPTIONS
        if getattr(args, option, None) is not None
    }
    if getattr(args, "llm", None) is not None:
        changes["llm"] = settings.llm.replace(mode=args.llm)
    return settings.replace(**changes) if changes else settings


def fail(prog: str, exc: BaseException, stream: TextIO) -> int:
    """Print the one-line error both CLIs print, and return its exit code.

    2 for bad configuration, 1 for a server that could not be reached (or
    anything else that went wrong at run time).
    """
    # A sink like any log: a DSN password or token in a message is masked.
    text = redact_text(str(exc))
    if isinstance(exc, ConfigError):
        stream.write(f"{prog}: error: {text}\n")
        return 2
    if isinstance(exc, TransportError):
        stream.write(f"{prog}: error: unreachable: {text}\n")
        return 1
    stream.write(f"{prog}: error: {type(exc).__name__}: {text}\n")
    return 1


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


async def _run_job(
    bundle: Bundle, settings: SwarmSettings, args: argparse.Namespace, out: TextIO,
    display: _ProgressDisplay,
) -> int:
    if bundle.job is None:
        raise ConfigError(
            f"bundle {bundle.name!r} has no job to run; serve its agents with --serve"
        )
    service = SwarmService(settings, agents=bundle.make_agents(), say=display.message)
    loop = asyncio.get_running_loop()
    terminated = False
    async with service:
        await service.wait_leading(timeout=settings.leader_timeout)
        args.task_timeout = settings.task_timeout
        run = bundle.job

        async def run_job() -> JobOutcome:
            return await run(service.swarm, args, display)

        job = asyncio.create_task(run_job())

        def terminate() -> None:
            nonlocal terminated
            terminated = True
            job.cancel()

        # SIGTERM stops the job, and the swarm then drains as on a normal exit:
        # in-flight work finishes and the agents leave the directory.
        loop.add_signal_handler(signal.SIGTERM, terminate)
        try:
            outcome = await job
        except asyncio.CancelledError:
            if not terminated:
                raise
            display.close_line()
            display.message("SIGTERM: job stopped; draining")
        finally:
            loop.remove_signal_handler(signal.SIGTERM)
            display.close_line()
    if terminated:
        display.message(
            f"stopped; {len(service.swarm.leftovers)} unfinished tasks left over"
        )
        return 1
    if args.json:
        out.write(msgspec.json.format(msgspec.json.encode(outcome.data), indent=2).decode() + "\n")
    else:
        out.write(outcome.text)
    out.flush()
    if not outcome.ok:
        display.message("job FAILED: some tasks did not complete (see the report)")
    return 0 if outcome.ok else 1


async def _serve(bundle: Bundle, settings: SwarmSettings, display: _ProgressDisplay) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    signals = (signal.SIGINT, signal.SIGTERM)
    for sig in signals:
        loop.add_signal_handler(sig, stop.set)
    try:
        agents = bundle.make_agents() if bundle.name != "queen-only" else []
        service = SwarmService(settings, agents=agents, say=display.message)
        async with service:
            try:
                # A free lease is taken on the first attempt: a Queen alone leads at once.
                await service.leadership.wait_leading(timeout=min(settings.lease_ttl, 2.0))
            except SwarmTimeout:
                pass
            if not service.leadership.leading:
                from swarm.service.leadership import describe_leader

                reads = " and answers reads meanwhile" if service.url else ""
                display.message(
                    f"waiting for leadership: {await describe_leader(service.leadership)}; "
                    f"this Queen stands by, takes over when it stops{reads}"
                )
            display.message(f"ready: serving {service.describe()}; SIGINT/SIGTERM stops")
            summary = None
            if display.tty:
                # A person watches: a line of throughput, in-flight and failures now and then.
                from swarm.summary import print_summaries

                summary = asyncio.create_task(
                    print_summaries(service.runtime, every=SUMMARY_EVERY, stream=display.stream),
                    name="summary",
                )
            try:
                await stop.wait()
            finally:
                if summary is not None:
                    summary.cancel()
                    await asyncio.gather(summary, return_exceptions=True)
            service.begin_drain()
            display.message("signal received; draining")
        display.message(f"stopped; {len(service.swarm.leftovers)} unfinished tasks left over")
    finally:
        for sig in signals:
            loop.remove_signal_handler(sig)
    return 0 if not service.swarm.leftovers else 1


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m swarm.queen``.

    Returns:
        The process exit code (see the module docstring).
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    err = sys.stderr
    first, _ = build_parser().parse_known_args(argv)
    try:
        spec = first.agents or os.environ.get("SWARM_AGENTS") or None
        if first.no_agents:
            if first.agents or not first.serve:
                raise ConfigError("--no-agents serves a Queen alone: use it with --serve, "
                                  "without --agents")
            bundle = Bundle(name="queen-only", agents=list)
        else:
            if spec is not None:
                SwarmSettings(agents=spec)  # the shape is checked before importing anything
            bundle = load_bundle(spec)
    except ConfigError as exc:
        return fail(PROG, exc, err)
    args = build_parser(bundle).parse_args(argv)
    display = _ProgressDisplay(err, enabled=not args.no_progress)
    try:
        settings = settings_from(args, os.environ)
        configure_logging(level=settings.log_level, json=settings.log_json)
        if settings.http is not None and not args.serve:
            raise ConfigError("--http serves the API of a running swarm: use it with --serve")
        # Traces over OTLP when OTEL_EXPORTER_OTLP_ENDPOINT is set; off otherwise.
        tracer_provider = configure_tracing(os.environ, service_name="queenswarm-queen")
        try:
            if args.serve:
                return asyncio.run(_serve(bundle, settings, display))
            return asyncio.run(_run_job(bundle, settings, args, sys.stdout, display))
        finally:
            if tracer_provider is not None:
                tracer_provider.shutdown()  # flushes the spans still batched
    except KeyboardInterrupt:
        display.message("interrupted")
        return 130
    except SwarmError as exc:
        display.close_line()
        return fail(PROG, exc, err)
