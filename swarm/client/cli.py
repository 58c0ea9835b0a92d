"""``queenswarm``: the HTTP API from the command line.

Reads ``SWARM_URL`` (default ``http://127.0.0.1:8080``) and ``SWARM_TOKEN``;
``--url``/``--token`` win. Prints tables for people, ``--json`` for scripts.

Exit codes: 0 success; 1 the task failed, the API refused, or it could not
be reached; 2 bad usage (a malformed ``--url`` or ``--timeout`` too).

Example:
    >>> from swarm.client.cli import build_parser
    >>> args = build_parser().parse_args(["submit", "Greet", '{"name": "bee"}', "--wait", "5"])
    >>> args.command, args.type, args.wait
    ('submit', 'Greet', 5.0)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from collections.abc import Sequence
from typing import Any, TextIO

import msgspec

from swarm import __version__
from swarm.client.errors import ApiRequestError, BadRequest, NotLeader
from swarm.client.http import SwarmClient, result_of
from swarm.errors import ConfigError, SwarmError, TaskError, TransportError
from swarm.service.auth import ROLES, hash_token, new_token

__all__ = ["build_parser", "main"]


def _stamp(at: float | None) -> str:
    return "-" if at is None else time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(at))

PROG = "queenswarm"
DEFAULT_URL = "http://127.0.0.1:8080"


_AGES = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def _when(text: str) -> float:
    """A unix time, or an age ("15m") counted back from now."""
    try:
        if text[-1:] in _AGES:
            age = float(text[:-1]) * _AGES[text[-1]]
            if age >= 0:
                return time.time() - age
        else:
            value = float(text)
            if value >= 0:
                return value
    except ValueError:
        pass
    raise argparse.ArgumentTypeError(
        f"{text!r} is neither a unix time nor an age such as 90s, 15m, 2h or 1d")


def build_parser() -> argparse.ArgumentParser:
    """The parser of ``queenswarm``."""
    p = argparse.ArgumentParser(
        prog=PROG,
        description="Talk to a running swarm's HTTP API (python -m swarm.queen --serve --http).",
        epilog="Environment: SWARM_URL, SWARM_TOKEN. Exit codes: 0 ok, 1 failed or "
        "unreachable, 2 usage.",
    )
    # The global options are accepted after the command too ("queenswarm agents --json"):
    # there they default to SUPPRESS, so an absent one leaves the top-level value alone.
    common = argparse.ArgumentParser(add_help=False)
    for parser, suppress in ((p, False), (common, True)):
        def dflt(value: object, suppress: bool = suppress) -> object:
            return argparse.SUPPRESS if suppress else value

        parser.add_argument("--url", default=dflt(None),
                            help=f"API base URL ($SWARM_URL, default {DEFAULT_URL})")
        parser.add_argument("--token", default=dflt(None), help="bearer token ($SWARM_TOKEN)")
        parser.add_argument("--json", action="store_true", default=dflt(False),
                            help="print JSON instead of tables")
        parser.add_argument("--timeout", type=float, default=dflt(30.0),
                            help="seconds per request (30)")
    p.add_argument("--version", action="version", version=f"queenswarm {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, help: str) -> argparse.ArgumentParser:
        return sub.add_parser(name, help=help, parents=[common])

    s = command("submit", help="submit a task: TYPE and its fields as JSON")
    s.add_argument("type", help="message type name (see 'queenswarm roles')")
    s.add_argument("payload", nargs="?", default="{}", help="JSON object of the message's fields")
    s.add_argument("--to", default="", help="role:NAME, agent:ID or a bare role")
    s.add_argument("--priority", type=int, default=0)
    s.add_argument("--key", help="Idempotency-Key: a repeated submit returns the first task")
    s.add_argument("--wait", type=float, default=0.0,
                   help="wait up to SECONDS for the result and print it")

    for name, text in (("status", "a task's record"), ("result", "wait for a task's result"),
                       ("cancel", "cancel a task that has not started")):
        c = command(name, help=text)
        c.add_argument("task_id")
        if name == "result":
            c.add_argument("--wait", type=float, default=60.0, help="seconds to wait (60)")

    t = command("tasks", help="tasks: live ones newest first, then the task history")
    t.add_argument("--state", choices=("queued", "running", "done", "failed", "dead", "expired"))
    t.add_argument("--type", help="only tasks of this message type")
    t.add_argument("--since", type=_when, metavar="WHEN",
                   help="finished (live: created) at or after WHEN: unix time or an age "
                   "such as 90s, 15m, 2h, 1d")
    t.add_argument("--until", type=_when, metavar="WHEN", help="finished (live: created) "
                   "before WHEN")
    t.add_argument("--limit", type=int, default=20, help="tasks per page (20; at most 1000)")
    t.add_argument("--cursor", help="the next page: the cursor a previous page printed")
    t.add_argument("--all", action="store_true", help="every page (--limit tasks per request)")
    command("agents", help="every agent")
    command("roles", help="roles: replicas, health, queue depth")
    d = command("dlq", help="dead letters; 'dlq redrive ID' or 'dlq redrive --all'")
    d.add_argument("action", nargs="?", choices=("list", "redrive"), default="list")
    d.add_argument("task_id", nargs="?")
    d.add_argument("--all", action="store_true", help="redrive every dead letter")
    r = command("recall", help="recall memories relevant to QUERY")
    r.add_argument("query")
    r.add_argument("-k", type=int, default=5)
    m = command("remember", help="store a memory")
    m.add_argument("namespace")
    m.add_argument("content")
    m.add_argument("--tag", action="append", default=[])
    command("config", help="the live config in force")
    w = command("ready", help="whether the Queen leads, and who does")
    w.add_argument("--wait", type=float, default=0.0,
                   help="keep trying up to SECONDS while the API (or --role) is not up yet")
    w.add_argument("--role", action="append", default=[],
                   help="also wait until this role has a replica (repeatable)")
    w.add_argument("--leading", action="store_true",
                   help="also wait until this Queen leads (not a standby)")
    k = command("token", help="make a token: prints it, and its tokens-file line")
    k.add_argument("role", choices=ROLES)
    k.add_argument("name", nargs="?", default="")
    return p


def _table(rows: list[list[str]], out: TextIO) -> None:
    if not rows:
        return
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for row in rows:
        out.write("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() + "\n")


def _show(value: Any) -> str:
    if isinstance(value, str):
        return value
    return msgspec.json.encode(value).decode()


def _age(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds:.1f}s"


async def _run(args: argparse.Namespace, out: TextIO) -> int:
    url = args.url or os.environ.get("SWARM_URL") or DEFAULT_URL
    token = args.token or os.environ.get("SWARM_TOKEN") or None

    def emit(value: Any) -> None:
        out.write(msgspec.json.format(msgspec.json.encode(value), indent=2).decode() + "\n")

    async with SwarmClient(url, token=token, timeout=args.timeout) as client:
        cmd = args.command
        if cmd == "submit":
            try:
                payload = json.loads(args.payload)
            except json.JSONDecodeError as exc:
                raise BadRequest(0, "invalid-json", f"payload is not JSON: {exc}", {}) from None
            if not isinstance(payload, dict):
                raise BadRequest(0, "invalid-json", "payload must be a JSON object", {})
            sub = await client.submit(
                args.type, payload, to=args.to, priority=args.priority,
                idempotency_key=args.key, wait=args.wait or None,
            )
            if args.json:
                emit(sub)
            elif sub.task is not None and sub.task.state in ("done",):
                out.write(f"{sub.task_id} done: {_show(sub.task.result)}\n")
            elif sub.task is not None:
                result_of(sub.task)
            else:
                again = " (idempotent replay)" if sub.replayed else ""
                out.write(f"{sub.task_id} {sub.state}{again}\n")
            return 0
        if cmd in ("status", "result", "cancel"):
            if cmd == "status":
                view = await client.status(args.task_id)
            elif cmd == "cancel":
                view = await client.cancel(args.task_id)
            else:
                view = await client.wait(args.task_id, timeout=args.wait)
            if args.json:
                emit(view)
                return 0 if view.state in ("queued", "running", "done") else 1
            if cmd == "result":
                out.write(_show(result_of(view)) + "\n")
                return 0
            _table([["TASK", "TYPE", "STATE", "ATTEMPTS", "AGENT", "ERROR"],
                    [view.task_id, view.type, view.state, str(view.attempts),
                     view.agent_id or "-", view.error or ""]], out)
            return 0
        if cmd == "tasks":
            filters: dict[str, Any] = {"state": args.state, "type": args.type,
                                       "since": args.since, "until": args.until}
            cursor: str | None = args.cursor
            if args.all:
                tasks = [t async for t in client.iter_tasks(page=args.limit, **filters)]
                cursor = None
            else:
                page = await client.tasks(limit=args.limit, cursor=cursor, **filters)
                tasks, cursor = page.tasks, page.cursor
            if args.json:
                emit(tasks if args.all else page)
                return 0
            _table([["TASK", "TYPE", "STATE", "ATTEMPTS", "FINISHED", "ERROR"]] + [
                [t.task_id, t.type, t.state, str(t.attempts), _stamp(t.finished_at),
                 t.error or ""] for t in tasks
            ], out)
            if cursor is not None:
                out.write(f"more: --cursor {cursor}\n")
            return 0
        if cmd == "agents":
            agents = await client.agents()
            if args.json:
                emit(agents)
            else:
                _table([["AGENT", "ROLE", "STATE", "INFLIGHT", "CAPACITY", "HEALTHY"]] + [
                    [a.agent_id, a.role, a.state, str(a.inflight), str(a.capacity),
                     "-" if a.healthy is None else ("yes" if a.healthy else "NO")]
                    for a in agents
                ], out)
            return 0
        if cmd == "roles":
            roles = await client.roles()
            if args.json:
                emit(roles)
            else:
                _table([["ROLE", "REPLICAS", "HEALTHY", "QUEUED", "OLDEST", "TYPES"]] + [
                    [r.role, str(len(r.replicas)), str(r.healthy), str(sum(r.queue.values())),
                     _age(r.oldest_waiting), ", ".join(r.types)]
                    for r in roles
                ], out)
            return 0
        if cmd == "dlq":
            if args.action == "redrive":
                if not args.task_id and not args.all:
                    raise BadRequest(0, "usage", "dlq redrive needs a task id or --all", {})
                moved = await client.redrive(None if args.all else args.task_id)
                if args.json:
                    emit(moved)
                else:
                    out.write(f"redriven: {len(moved)} {' '.join(moved)}".rstrip() + "\n")
                return 0
            dead = await client.dead_letters()
            if args.json:
                emit(dead)
            else:
                _table([["TASK", "TYPE", "ATTEMPTS", "ERROR"]] + [
                    [d.task_id, d.type, str(d.attempts), d.error] for d in dead
                ], out)
            return 0
        if cmd == "recall":
            hits = await client.recall(args.query, k=args.k)
            if args.json:
                emit(hits)
            else:
                _table([["SCORE", "ID", "NAMESPACE", "CONTENT"]] + [
                    [f"{h.score:.2f}", h.memory.id, h.memory.namespace, h.memory.content[:80]]
                    for h in hits
                ], out)
            return 0
        if cmd == "remember":
            memory_id = await client.remember(args.namespace, args.content, tags=args.tag)
            emit({"id": memory_id}) if args.json else out.write(memory_id + "\n")
            return 0
        if cmd == "config":
            emit(await client.config())
            return 0
        if cmd == "ready":
            ready = await _ready(client, args.wait, args.role, leading=args.leading)
            if args.json:
                emit(ready)
            else:
                leader = ready.leader
                who = f"{leader.queen_id} {leader.url}".strip() if leader else "unknown"
                out.write(f"{ready.status} (queen {ready.queen_id}; leader: {who})\n")
            return 0 if ready.status != "draining" else 1
    raise AssertionError(cmd)


async def _ready(client: SwarmClient, wait: float, roles: list[str], *, leading: bool) -> Any:
    """``client.ready()`` once ``roles`` have replicas (and it leads), for up to ``wait`` s."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait
    while True:
        try:
            ready = await client.ready()
            present = {r.role for r in await client.roles() if r.replicas} if roles else set()
            missing = sorted(set(roles) - present)
            if not missing and (ready.status == "leading" or not leading):
                return ready
            if loop.time() >= deadline:
                what = f"no replica of {', '.join(missing)}" if missing else "not leading"
                raise SwarmError(f"{what} after {wait:g} s")
        except TransportError:
            if loop.time() >= deadline:
                raise
        # A server still starting has no event to wait on from here: retry shortly.
        await asyncio.sleep(0.2)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``queenswarm`` console script."""
    args = build_parser().parse_args(argv)
    err = sys.stderr
    if args.command == "token":
        secret = new_token()
        name = args.name or args.role
        sys.stdout.write(
            f"token: {secret}\n"
            f"tokens-file line: {args.role} {hash_token(secret)} {name}\n"
        )
        return 0
    try:
        return asyncio.run(_run(args, sys.stdout))
    except TaskError as exc:
        err.write(f"{PROG}: {exc}\n")
        return 1
    except NotLeader as exc:
        url = exc.leader_url
        where = f" (the leader is at {url})" if url and url not in exc.detail else ""
        err.write(f"{PROG}: error: {exc.detail}{where}\n")
        return 1
    except ApiRequestError as exc:
        field = f" [{exc.field}]" if isinstance(exc, BadRequest) and exc.field else ""
        err.write(f"{PROG}: error: {exc.status or ''} {exc.code}{field}: {exc.detail}\n"
                  .replace(":  ", ": ").replace("error:  ", "error: "))
        return 2 if exc.status == 0 else 1
    except ConfigError as exc:
        err.write(f"{PROG}: error: {exc}\n")
        return 2
    except SwarmError as exc:
        err.write(f"{PROG}: error: {exc}\n")
        return 1
    except KeyboardInterrupt:
        return 130
