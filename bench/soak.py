"""Soak: a fixed task rate through agent processes, one SIGKILLed and restarted every 2 minutes.

Runs a private ``redis-server`` (no persistence, a free port: its memory and
keys are this run's alone), ``--agents`` agent processes (``python -m
swarm.agent``, the history on ``--postgres`` when given), and a submitter (this
process) sending the work unit (a ~200-byte dict, a dict result, checked) at
``--rate`` tasks/s. Every ``--sample`` seconds it records Redis
``used_memory``, ``DBSIZE``, the keys without a TTL, and each process's RSS
and open file descriptors. At the end it prints the slope per minute of each
series and the drift from minute ``--warmup`` to the end (the fit's end value
against its value at the warm-up), then stops everything, waits one TTL (the
longest of the inbox TTL and the retention) and lists every key left: none
may belong to a departed process.

Run::

    .venv/bin/python bench/soak.py --minutes 30 [--rate 60] [--postgres DSN]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg  # type: ignore[import-untyped]
from redis.asyncio import Redis

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(Path(__file__).resolve().parent)]

from bench_redis import start_server, wait_ready  # noqa: E402
from soak_agent import SoakAgent, expected, payload  # noqa: E402

from swarm.envelopes import task_envelope  # noqa: E402
from swarm.errors import SwarmError  # noqa: E402
from swarm.history import HistorySettings  # noqa: E402
from swarm.redis import RedisRuntime, RedisSettings  # noqa: E402
from swarm.redis.directory import KEEP_ALIVE_MS  # noqa: E402
from swarm.runtime import result_of  # noqa: E402


@dataclass
class Sample:
    t: float
    used_memory: int
    dbsize: int
    no_ttl: int
    rss: dict[str, int] = field(default_factory=dict)
    fds: dict[str, int] = field(default_factory=dict)


def proc_stats(pid: int) -> tuple[int, int]:
    """(RSS in bytes, open fds) of a process, or (0, 0) if it is gone."""
    try:
        with open(f"/proc/{pid}/status") as f:
            rss = next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmRSS:"))
        fds = len(os.listdir(f"/proc/{pid}/fd"))
    except (OSError, StopIteration):
        return 0, 0
    return rss, fds


async def keys_without_ttl(r: Redis) -> tuple[int, list[bytes]]:
    names = [k async for k in r.scan_iter(count=2000)]
    missing: list[bytes] = []
    for i in range(0, len(names), 2000):
        pipe = r.pipeline(transaction=False)
        for k in names[i : i + 2000]:
            pipe.pttl(k)
        for k, ttl in zip(names[i : i + 2000], await pipe.execute(), strict=True):
            if ttl == -1:
                missing.append(k)
    return len(missing), missing


def slope_per_minute(points: list[tuple[float, float]]) -> tuple[float, float, float]:
    """Least-squares (slope per minute, fit at the first x, fit at the last x)."""
    xs = [p[0] / 60 for p in points]
    ys = [p[1] for p in points]
    if len(xs) < 2:
        return 0.0, ys[0] if ys else 0.0, ys[-1] if ys else 0.0
    fit = statistics.linear_regression(xs, ys)
    return fit.slope, fit.intercept + fit.slope * xs[0], fit.intercept + fit.slope * xs[-1]


class Agents:
    """The agent processes, by slot; a killed one is restarted in its slot."""

    def __init__(self, url: str, prefix: str, count: int, extra: list[str]) -> None:
        self.url, self.prefix, self.extra = url, prefix, extra
        self.logs = tempfile.mkdtemp(prefix="soak-agents-")
        self.procs: list[subprocess.Popen[bytes]] = []
        self.ids: list[str] = []
        self.departed: list[str] = []
        self.serial = 0
        for _ in range(count):
            self.procs.append(self._spawn())

    def _spawn(self) -> subprocess.Popen[bytes]:
        self.serial += 1
        agent_id = f"soak-{self.serial}"
        self.ids.append(agent_id)
        env = dict(os.environ, PYTHONPATH=f"{ROOT}:{ROOT / 'bench'}")
        return subprocess.Popen(
            [sys.executable, "-m", "swarm.agent", "soak_agent:SoakAgent", "--redis", self.url,
             "--prefix", self.prefix, "--concurrency", "32", "--agent-id", agent_id,
             "--visibility-timeout", "10", *self.extra],
            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=self._log(agent_id),
        )

    def _log(self, agent_id: str) -> Any:
        # A file, not a pipe nobody reads: a full pipe would stall the agent.
        return open(Path(self.logs) / f"{agent_id}.log", "wb")

    def kill_and_restart(self, slot: int) -> None:
        proc = self.procs[slot]
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        self.departed.append(self.ids[slot])
        self.ids.pop(slot)
        new = self._spawn()
        self.ids.insert(slot, self.ids.pop())
        self.procs[slot] = new

    def stop(self) -> None:
        for p in self.procs:
            p.send_signal(signal.SIGTERM)
        for p in self.procs:
            try:
                p.wait(timeout=60)
            except subprocess.TimeoutExpired:
                p.kill()
        self.departed += self.ids


async def wait_for_agents(runtime: RedisRuntime, n: int) -> None:
    deadline = time.monotonic() + 60
    while True:
        info = (await runtime.directory()).get(SoakAgent.role)
        if info is not None and len(info.replicas) >= n:
            return
        if time.monotonic() > deadline:
            raise SystemExit("the agent processes did not register")
        await asyncio.sleep(0.2)


async def soak(args: argparse.Namespace) -> dict[str, Any]:
    server, url, _directory = start_server()
    await wait_ready(url)
    prefix = "soak"
    # One database for the agents' memory tier and the task history, as the
    # CLIs take it (the history in its own schema, queenswarm_history).
    history = HistorySettings.from_dsn(args.postgres, retention=args.retention)
    extra = ["--retention", str(args.retention)]
    if args.postgres:
        extra += ["--postgres", args.postgres]
    started_at = time.time()
    r = Redis.from_url(url)
    agents = Agents(url, prefix, args.agents, extra)
    runtime = RedisRuntime(settings=RedisSettings.from_dsn(url), prefix=prefix, history=history)
    await runtime.start()
    await wait_for_agents(runtime, args.agents)
    samples: list[Sample] = []
    sent = ok = bad = lost = dup = 0
    inflight: set[asyncio.Task[None]] = set()
    duration = args.minutes * 60
    t0 = time.monotonic()

    async def one(n: int) -> None:
        nonlocal ok, bad, lost, dup
        env = task_envelope(runtime.codec, payload(n), "soak", 3, reply_to=runtime.node_id)
        try:
            task_id = await runtime.submit(env)
            record = await runtime.wait(task_id, timeout=180)
            value = result_of(runtime.codec, record)
        except (SwarmError, TimeoutError):
            lost += 1
            return
        if value == expected(n):
            ok += 1
        else:
            bad += 1
        if record.executions > 1:
            dup += 1

    async def sampler() -> None:
        while True:
            t = time.monotonic() - t0
            info = await r.info("memory")
            n_missing, _ = await keys_without_ttl(r)
            s = Sample(t, int(info["used_memory"]), int(await r.dbsize()), n_missing)
            for name, pid in [("submitter", os.getpid()), ("redis", server.pid)] + [
                (f"agent{i}", p.pid) for i, p in enumerate(agents.procs)
            ]:
                s.rss[name], s.fds[name] = proc_stats(pid)
            samples.append(s)
            print(
                f"{t / 60:6.2f} min  used_memory {s.used_memory / 1e6:7.2f} MB"
                f"  dbsize {s.dbsize:6d}"
                f"  no-ttl {s.no_ttl:4d}  sent {sent}  ok {ok}  lost {lost}  bad {bad}  dup {dup}"
                f"  rss(sub) {s.rss['submitter'] / 1e6:.1f} MB  fds(sub) {s.fds['submitter']}",
                flush=True,
            )
            await asyncio.sleep(args.sample)

    sampling = asyncio.create_task(sampler())
    next_kill = args.kill_every
    slot = 0
    try:
        while True:
            now = time.monotonic() - t0
            if now >= duration:
                break
            due = int(now * args.rate)
            while sent < due:
                task = asyncio.create_task(one(sent))
                inflight.add(task)
                task.add_done_callback(inflight.discard)
                sent += 1
            if now >= next_kill:
                next_kill += args.kill_every
                agents.kill_and_restart(slot % args.agents)
                print(f"{now / 60:6.2f} min  killed and restarted agent slot {slot % args.agents}")
                slot += 1
            await asyncio.sleep(0.02)
        if inflight:
            await asyncio.wait(inflight, timeout=240)
    finally:
        sampling.cancel()
        await asyncio.gather(sampling, return_exceptions=True)
    await runtime.stop()
    agents.stop()
    history_rows = None
    if args.postgres:
        # The agents flushed their history writers as they stopped.
        conn = await asyncpg.connect(history.dsn)
        try:
            history_rows = await conn.fetchval(
                f'SELECT count(*) FROM "{history.schema}".task_history WHERE created_at >= $1',
                started_at,
            )
        finally:
            await conn.close()
    # One TTL after the run: the longest of the inboxes', the finished records'
    # and the agents' keep-alive (their streams and heartbeats, should no
    # replica be left to bury the last one killed).
    wait_for = max(history.inbox_ttl, args.retention, KEEP_ALIVE_MS / 1000) + 10
    print(f"stopped; waiting {wait_for:.0f} s (one TTL) before listing the keys left", flush=True)
    await asyncio.sleep(wait_for)
    left = sorted(k.decode() for k in [k async for k in r.scan_iter(count=2000)])
    n_missing, missing = await keys_without_ttl(r)
    await r.aclose()
    server.terminate()
    server.wait()

    warm = [s for s in samples if s.t >= args.warmup * 60]
    series: dict[str, list[tuple[float, float]]] = {
        "used_memory (bytes)": [(s.t, s.used_memory) for s in warm],
        "dbsize (keys)": [(s.t, s.dbsize) for s in warm],
        "keys without TTL": [(s.t, s.no_ttl) for s in warm],
    }
    for name in warm[0].rss if warm else ():
        if name.startswith("agent"):
            continue  # agents restart: their series are reported per lifetime below
        series[f"RSS {name} (bytes)"] = [(s.t, s.rss[name]) for s in warm]
        series[f"fds {name}"] = [(s.t, s.fds[name]) for s in warm]
    # Agents: the mean over the live processes (each slot restarts every few minutes).
    series["RSS agents mean (bytes)"] = [
        (s.t, statistics.mean(v for k, v in s.rss.items() if k.startswith("agent"))) for s in warm
    ]
    series["fds agents mean"] = [
        (s.t, statistics.mean(v for k, v in s.fds.items() if k.startswith("agent"))) for s in warm
    ]
    report: dict[str, Any] = {
        "minutes": args.minutes,
        "rate": args.rate,
        "agents": args.agents,
        "kill_every_s": args.kill_every,
        "retention_s": args.retention,
        "postgres": bool(args.postgres),
        "sent": sent,
        "ok": ok,
        "bad": bad,
        "lost": lost,
        "duplicates": dup,
        "killed": len(agents.departed) - args.agents,
        "history_rows": history_rows,
        "series": {},
        "keys_left": left,
        "keys_left_without_ttl": [k.decode() for k in missing],
    }
    print(f"\nsent {sent} ok {ok} bad {bad} lost {lost} duplicates {dup}"
          f" history rows {history_rows}")
    title = f"series (minute {args.warmup:g} to end)"
    print(f"{title:<34}{'slope/min':>14}{'start':>14}{'end':>14}{'drift':>9}")
    for name, points in series.items():
        if not points:
            continue
        slope, start, end = slope_per_minute(points)
        drift = (end - start) / start * 100 if start else 0.0
        report["series"][name] = {"slope_per_min": slope, "start": start, "end": end,
                                  "drift_pct": drift}
        print(f"{name:<34}{slope:>14.1f}{start:>14.0f}{end:>14.0f}{drift:>8.1f}%")
    departed = [k for k in left if any(a in k for a in agents.departed) or "inbox-" in k]
    print(f"\nkeys left one TTL after the run: {len(left)} ({n_missing} without TTL)")
    for k in left:
        print(f"  {k}")
    print(f"keys of departed processes left: {len(departed)}")
    print(f"agent logs: {agents.logs}")
    report["departed_keys_left"] = departed
    return report


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--minutes", type=float, default=30.0, help="duration of the load")
    p.add_argument("--rate", type=float, default=60.0, help="tasks per second")
    p.add_argument("--agents", type=int, default=3, help="agent processes")
    p.add_argument("--kill-every", type=float, default=120.0, help="seconds between SIGKILLs")
    p.add_argument("--retention", type=float, default=120.0, help="seconds finished records stay")
    p.add_argument("--warmup", type=float, default=5.0, help="minutes before drift is measured")
    p.add_argument("--sample", type=float, default=10.0, help="seconds between samples")
    p.add_argument(
        "--postgres", default=None,
        help="PostgreSQL DSN (the agents' --postgres: memory tier and task history)",
    )
    p.add_argument("--json", default=None, help="write the report as JSON here")
    args = p.parse_args()
    report = asyncio.run(soak(args))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
