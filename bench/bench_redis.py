"""Benchmark: RedisRuntime vs a raw redis-py Streams request/reply loop, over loopback Redis.

One Queen process (this script) and one agent process (``python -m swarm.agent``,
or this script with ``--raw-worker`` for the raw loop). Measured in the same run:

* pipelined: ``--tasks`` no-op tasks (~200 B envelopes), 100 in flight;
* sequential: one task at a time (``--sequential-tasks``);
* Redis memory per queued task with ``--queued`` tasks submitted and no agent
  running (ledger record + stream entry), from ``INFO memory``;
* fast path on vs off: pipelined tasks/s of a Queen and an agent on redis-py
  internals (:mod:`swarm.redis.fastpath`) and of a pair on redis-py's public
  API (``fastpath=False``, the agent with ``SWARM_REDIS_FASTPATH=0``), in
  interleaved rounds (``--fastpath-rounds`` of ``--fastpath-tasks``), medians
  compared; the public path must keep at least half the fast path's rate
  (``--fastpath-only`` runs just this phase).

By default a private ``redis-server`` (no persistence) is started on a free
port, so other clients of a shared server do not disturb the figures.

With ``BENCH_CPU=1`` (private server only) the pipelined phases also print the
CPU time per task of each process (Queen, agent or raw worker, redis-server,
from ``/proc``) and the server's ``INFO commandstats`` per task: figures that
hold on a busy host, unlike the rates.

Run::

    /work/venv/bin/python bench/bench_redis.py [--tasks 20000] [--redis URL]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from redis.asyncio import Redis

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(Path(__file__).resolve().parent)]

from swarm import Agent, Message, handler  # noqa: E402
from swarm.ledger import TaskState  # noqa: E402
from swarm.messages import Envelope, Kind, new_id  # noqa: E402
from swarm.redis import RedisRuntime, RedisSettings  # noqa: E402

IN_FLIGHT = 100
BODY = "x" * 120  # with the envelope's ids and fields: ~200 B on the wire


class Noop(Message):
    body: str


class NoopAgent(Agent):
    role = "bench_noop"

    @handler
    async def noop(self, msg: Noop) -> None:
        return None


# -- raw redis-py Streams request/reply -------------------------------------
RAW_REQ = "bench-raw:req"
RAW_REP = "bench-raw:rep"
RAW_GROUP = "g"


async def raw_worker(url: str) -> None:
    """Serve the raw loop: XREADGROUP a batch, XADD the replies and XACK, in one pipeline."""
    r = Redis.from_url(url)
    try:
        await r.xgroup_create(RAW_REQ, RAW_GROUP, id="0", mkstream=True)
    except Exception:
        pass
    while True:
        got = await r.xreadgroup(RAW_GROUP, "w", {RAW_REQ: ">"}, count=IN_FLIGHT, block=1000)
        if not got:
            continue
        pipe = r.pipeline(transaction=False)
        ids = []
        for _key, items in got:
            for entry_id, fields in items:
                ids.append(entry_id)
                pipe.xadd(RAW_REP, {"id": fields[b"id"], "r": b"\xc0"})
        pipe.xack(RAW_REQ, RAW_GROUP, *ids)
        await pipe.execute()


class RawClient:
    def __init__(self, r: Redis) -> None:
        self.r = r
        self.last = b"$"
        self.waiters: dict[bytes, asyncio.Future[None]] = {}
        self.outbox: list[tuple[bytes, bytes]] = []
        self.wake = asyncio.Event()

    async def start(self) -> None:
        info = await self.r.xrevrange(RAW_REP, count=1)
        self.last = info[0][0] if info else b"0-0"

    async def reader(self) -> None:
        me = asyncio.current_task()
        # redis-py can swallow a cancel that lands during a blocking read.
        while me is None or not me.cancelling():
            got = await self.r.xread({RAW_REP: self.last}, count=1000, block=1000)
            for _key, items in got or ():
                for entry_id, fields in items:
                    self.last = entry_id
                    fut = self.waiters.pop(fields[b"id"], None)
                    if fut is not None and not fut.done():
                        fut.set_result(None)

    async def writer(self) -> None:
        # Batched: every request queued since the last round trip goes in one pipeline.
        while True:
            await self.wake.wait()
            self.wake.clear()
            while self.outbox:
                batch, self.outbox = self.outbox, []
                pipe = self.r.pipeline(transaction=False)
                for rid, payload in batch:
                    pipe.xadd(RAW_REQ, {"id": rid, "p": payload})
                await pipe.execute()

    async def call(self, payload: bytes) -> None:
        rid = new_id().encode()
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.waiters[rid] = fut
        self.outbox.append((rid, payload))
        self.wake.set()
        await fut


# -- measurement ------------------------------------------------------------
async def run_pipelined(call: object, n: int) -> tuple[float, list[float]]:
    assert callable(call)
    sem = asyncio.Semaphore(IN_FLIGHT)
    lat: list[float] = []

    async def one() -> None:
        async with sem:
            t0 = time.perf_counter()
            await call()
            lat.append(time.perf_counter() - t0)

    t0 = time.perf_counter()
    await asyncio.gather(*(one() for _ in range(n)))
    return n / (time.perf_counter() - t0), lat


async def run_sequential(call: object, n: int) -> tuple[float, list[float]]:
    assert callable(call)
    lat = []
    t0 = time.perf_counter()
    for _ in range(n):
        t1 = time.perf_counter()
        await call()
        lat.append(time.perf_counter() - t1)
    return n / (time.perf_counter() - t0), lat


def pct(lat: list[float], q: float) -> float:
    return statistics.quantiles(lat, n=100)[int(q) - 1] * 1e6 if len(lat) > 1 else 0.0


def row(name: str, rate: float, lat: list[float]) -> str:
    return f"{name:<34} {rate:>10.0f} {pct(lat, 50):>10.0f} {pct(lat, 99):>10.0f}"


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far, from ``/proc``."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def io_counts(pid: int) -> dict[str, int]:
    """Read/write syscalls and bytes of a process so far, from ``/proc``."""
    out = {}
    for line in Path(f"/proc/{pid}/io").read_text().splitlines():
        name, _, value = line.partition(":")
        out[name] = int(value)
    return out


class CpuProbe:
    """CPU per task of the processes of one pipelined phase, and Redis commands per task."""

    def __init__(self, r: Redis, pids: dict[str, int]) -> None:
        self.r = r
        self.pids = pids
        self.before: dict[str, float] = {}

    async def __aenter__(self) -> CpuProbe:
        await self.r.config_resetstat()
        self.before = {name: cpu_seconds(pid) for name, pid in self.pids.items()}
        self.io_before = {name: io_counts(pid) for name, pid in self.pids.items()}
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.after = {name: cpu_seconds(pid) for name, pid in self.pids.items()}
        self.io_after = {name: io_counts(pid) for name, pid in self.pids.items()}
        self.stats = await self.r.info("commandstats")

    def report(self, name: str, n: int) -> list[str]:
        per = {k: (self.after[k] - self.before[k]) / n * 1e6 for k in self.pids}
        lines = [f"{name}: CPU us/task " + ", ".join(f"{k} {v:.0f}" for k, v in per.items())
                 + f", total {sum(per.values()):.0f}"]
        for k in self.pids:
            d = {f: (self.io_after[k][f] - self.io_before[k][f]) / n
                 for f in ("syscr", "rchar", "syscw", "wchar")}
            lines.append(f"  {k:<6} per task: reads {d['syscr']:.3f} ({d['rchar']:.0f} B), "
                         f"writes {d['syscw']:.3f} ({d['wchar']:.0f} B)")
        for cmd, st in sorted(self.stats.items()):
            if cmd in ("cmdstat_config", "cmdstat_info"):
                continue
            lines.append(f"  {cmd[8:]:<12} calls/task {st['calls'] / n:7.3f}  "
                         f"usec/call {st['usec_per_call']:8.2f}  "
                         f"usec/task {st['usec'] / n:7.2f}")
        return lines


def start_server() -> tuple[subprocess.Popen[bytes], str, str]:
    binary = shutil.which("redis-server")
    if binary is None:
        raise SystemExit("redis-server not found; pass --redis URL")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    directory = tempfile.mkdtemp(prefix="bench-redis-")
    proc = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
         "--dir", directory],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    return proc, f"redis://127.0.0.1:{port}/0", directory


async def wait_ready(url: str) -> None:
    r = Redis.from_url(url)
    for _ in range(100):
        try:
            await r.ping()
            await r.aclose()
            return
        except Exception:
            await asyncio.sleep(0.05)
    raise SystemExit("redis-server did not start")


async def wait_for_agent(queen: RedisRuntime) -> None:
    # Polling with a deadline: the agent process has no way to signal us but Redis.
    deadline = time.monotonic() + 30
    while True:
        info = (await queen.directory()).get(NoopAgent.role)
        if info is not None and info.replicas:
            return
        if time.monotonic() > deadline:
            raise SystemExit("the agent process did not register")
        await asyncio.sleep(0.1)


def spawn(args: list[str], url: str, **extra_env: str) -> subprocess.Popen[bytes]:
    env = dict(os.environ, PYTHONPATH=f"{ROOT}:{Path(__file__).resolve().parent}", **extra_env)
    profile = os.environ.get("BENCH_PROFILE_AGENT")
    if profile and args[:1] == ["-m"]:
        args = ["-m", "cProfile", "-o", profile, *args]
    return subprocess.Popen(
        [sys.executable, *args], cwd=ROOT, env=env,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )


async def fastpath_phase(url: str, args: argparse.Namespace) -> list[str]:
    """Pipelined tasks/s on the fast path and on redis-py's public API, rounds interleaved."""
    msg = Noop(body=BODY)
    pairs: dict[str, tuple[RedisRuntime, subprocess.Popen[bytes], str]] = {}
    rates: dict[str, list[float]] = {"on": [], "off": []}
    try:
        for mode, fast in (("on", True), ("off", False)):
            prefix = f"bench-fp{mode}-{os.urandom(4).hex()}"
            queen = RedisRuntime(settings=RedisSettings.from_dsn(url, fastpath=fast), prefix=prefix)
            await queen.start()
            agent = spawn(
                ["-m", "swarm.agent", "bench_redis:NoopAgent", "--redis", url, "--prefix",
                 prefix, "--concurrency", str(IN_FLIGHT)], url,
                SWARM_REDIS_FASTPATH="1" if fast else "0",
            )
            pairs[mode] = (queen, agent, prefix)
            await wait_for_agent(queen)
        calls = {
            mode: (lambda q=queen: q.send(msg, to=f"role:{NoopAgent.role}", sender="bench"))
            for mode, (queen, _, _) in pairs.items()
        }
        for call in calls.values():
            await run_pipelined(call, 1000)  # warm-up
        for _ in range(args.fastpath_rounds):
            for mode, call in calls.items():
                rates[mode].append((await run_pipelined(call, args.fastpath_tasks))[0])
    finally:
        r = Redis.from_url(url)
        for queen, agent, prefix in pairs.values():
            agent.terminate()
            agent.wait()
            await queen.stop(drain=False)
            keys = [k async for k in r.scan_iter(match=f"{prefix}:*", count=5000)]
            for i in range(0, len(keys), 5000):
                await r.delete(*keys[i : i + 5000])
        await r.aclose()
    on, off = statistics.median(rates["on"]), statistics.median(rates["off"])
    ratio = off / on
    lines = [
        f"fast path on vs off ({args.fastpath_rounds} interleaved rounds of "
        f"{args.fastpath_tasks} tasks, {IN_FLIGHT} in flight; median tasks/s):",
        f"  fast path on : {on:10.0f}   rounds {[round(x) for x in rates['on']]}",
        f"  fast path off: {off:10.0f}   rounds {[round(x) for x in rates['off']]}",
        f"  public/fast: {ratio:.2f}x (must be >= 0.50)",
    ]
    if ratio < 0.5:
        lines.append("  FAIL: the public path fell below half the fast path")
    return lines


async def bench(args: argparse.Namespace) -> None:
    url = args.redis
    server = None
    if url is None:
        server, url, directory = start_server()
        await wait_ready(url)
    if args.fastpath_only:
        try:
            lines = await fastpath_phase(url, args)
            print(f"server {url}")
            print("\n".join(lines))
            if any("FAIL" in line for line in lines):
                raise SystemExit(1)
            return
        finally:
            if server is not None:
                server.terminate()
                server.wait()
                shutil.rmtree(directory, ignore_errors=True)
    prefix = f"bench-{os.urandom(4).hex()}"
    results = []
    cpu = os.environ.get("BENCH_CPU") == "1" and server is not None
    cpu_lines: list[str] = []
    try:
        # Raw loop first, in its own worker process.
        r = Redis.from_url(url)
        await r.delete(RAW_REQ, RAW_REP)
        await r.xgroup_create(RAW_REQ, RAW_GROUP, id="0", mkstream=True)
        raw_proc = spawn([__file__, "--raw-worker", "--redis", url], url)
        raw = RawClient(r)
        await raw.start()
        reader = asyncio.create_task(raw.reader())
        writer = asyncio.create_task(raw.writer())
        payload = b"\x81\xa4body\xd9\x78" + BODY.encode()
        call_raw = lambda: raw.call(payload)  # noqa: E731
        await run_pipelined(call_raw, 1000)  # warm-up
        if cpu:
            assert server is not None
            pids = {"client": os.getpid(), "worker": raw_proc.pid, "redis": server.pid}
            async with CpuProbe(r, pids) as probe:
                raw_p = await run_pipelined(call_raw, args.tasks)
            cpu_lines += probe.report("raw Streams", args.tasks)
        else:
            raw_p = await run_pipelined(call_raw, args.tasks)
        raw_s = await run_sequential(call_raw, args.sequential_tasks)
        for task in (reader, writer):
            task.cancel()
        await asyncio.gather(reader, writer, return_exceptions=True)
        raw_proc.terminate()
        raw_proc.wait()

        settings = RedisSettings.from_dsn(url)
        queen = RedisRuntime(settings=settings, prefix=prefix)
        await queen.start()
        agent = spawn(
            ["-m", "swarm.agent", "bench_redis:NoopAgent", "--redis", url, "--prefix", prefix,
             "--concurrency", str(IN_FLIGHT)], url,
        )
        await wait_for_agent(queen)
        msg = Noop(body=BODY)
        env_size = len(queen.codec.encode(Envelope(
            id=new_id(), kind=Kind.TASK, type=Noop.type_name, sender="bench",
            recipient=f"role:{NoopAgent.role}", payload=queen.codec.encode_payload(msg),
            created_at=time.time(), reply_to=queen.node_id,
        )))
        call_swarm = lambda: queen.send(msg, to=f"role:{NoopAgent.role}", sender="bench")  # noqa: E731
        await run_pipelined(call_swarm, 1000)  # warm-up
        profile = os.environ.get("BENCH_PROFILE_QUEEN")
        if profile:
            import cProfile

            prof = cProfile.Profile()
            prof.enable()
        if cpu:
            assert server is not None
            pids = {"queen": os.getpid(), "agent": agent.pid, "redis": server.pid}
            async with CpuProbe(r, pids) as probe:
                sw_p = await run_pipelined(call_swarm, args.tasks)
            cpu_lines += probe.report("RedisRuntime", args.tasks)
        else:
            sw_p = await run_pipelined(call_swarm, args.tasks)
        if profile:
            prof.disable()
            prof.dump_stats(profile)
        sw_s = await run_sequential(call_swarm, args.sequential_tasks)
        agent.terminate()
        agent.wait()

        # Memory per queued task: no agent runs, so everything stays queued.
        await r.execute_command("MEMORY", "PURGE")
        before = int((await r.info("memory"))["used_memory"])
        for i in range(0, args.queued, 1000):
            await asyncio.gather(*(
                queen.submit(Envelope(
                    id=new_id(), kind=Kind.TASK, type=Noop.type_name, sender="bench",
                    recipient=f"role:{NoopAgent.role}", payload=queen.codec.encode_payload(msg),
                    created_at=time.time(), reply_to=queen.node_id,
                ))
                for _ in range(min(1000, args.queued - i))
            ))
        after = int((await r.info("memory"))["used_memory"])
        counts = await queen.ledger.counts()
        assert counts.get(TaskState.QUEUED, 0) == args.queued, counts
        per_task = (after - before) / args.queued
        await queen.stop(drain=False)
        keys = [k async for k in r.scan_iter(match=f"{prefix}:*", count=5000)]
        for i in range(0, len(keys), 5000):
            await r.delete(*keys[i : i + 5000])
        await r.delete(RAW_REQ, RAW_REP)
        await r.aclose()
        results = [
            row(f"raw Streams, {IN_FLIGHT} in flight", *raw_p),
            row(f"RedisRuntime, {IN_FLIGHT} in flight", *sw_p),
            row("raw Streams, sequential", *raw_s),
            row("RedisRuntime, sequential", *sw_s),
        ]
        print(f"tasks: {args.tasks} pipelined, {args.sequential_tasks} sequential; "
              f"envelope {env_size} B; server {url}")
        print(f"{'':<34} {'tasks/s':>10} {'p50 us':>10} {'p99 us':>10}")
        for line in results:
            print(line)
        print(f"pipelined ratio runtime/raw: {sw_p[0] / raw_p[0]:.2f}x")
        print(f"sequential p50 ratio runtime/raw: {pct(sw_s[1], 50) / pct(raw_s[1], 50):.2f}x")
        print(f"Redis memory per queued task ({args.queued} queued, ledger + stream): "
              f"{per_task:.0f} B")
        for line in cpu_lines:
            print(line)
        fp_lines = await fastpath_phase(url, args)
        print("\n".join(fp_lines))
    finally:
        if server is not None:
            server.terminate()
            server.wait()
            shutil.rmtree(directory, ignore_errors=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--redis", default=None, help="use this server instead of a private one")
    p.add_argument("--tasks", type=int, default=20_000)
    p.add_argument("--sequential-tasks", type=int, default=20_000)
    p.add_argument("--queued", type=int, default=100_000)
    p.add_argument("--fastpath-tasks", type=int, default=10_000)
    p.add_argument("--fastpath-rounds", type=int, default=3)
    p.add_argument("--fastpath-only", action="store_true", help="only the fast path on/off phase")
    p.add_argument("--raw-worker", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.raw_worker:
        asyncio.run(raw_worker(args.redis))
        return
    asyncio.run(bench(args))


if __name__ == "__main__":
    main()
