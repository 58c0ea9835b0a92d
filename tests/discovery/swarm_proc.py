"""A small process for the multi-process discovery tests.

``agent``: register one instance with the Consul (test) server and heartbeat.
``queen``: register, campaign for leadership and "dispatch" tasks through
epoch-fenced Redis writes while leading. Both print one JSON event per line
on stdout (logs go to stderr) and stop gracefully on SIGTERM.

Usage::

    python -m tests.discovery.swarm_proc agent --consul 127.0.0.1:8500 --id w1 --role worker
    python -m tests.discovery.swarm_proc queen --consul 127.0.0.1:8500 --redis redis://... --id q1
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
from typing import Any

import structlog

from discovery import (
    ConsulRegistry,
    ConsulSettings,
    FencedWriter,
    LeaderElector,
    Leadership,
    ServiceInstance,
)
from discovery.redis_lease import FENCED_REFUSED
from swarm.constants import fenced_key
from swarm.errors import FencingError


def emit(event: str, **fields: Any) -> None:
    print(json.dumps({"event": event, **fields}), flush=True)


def settings(args: argparse.Namespace) -> ConsulSettings:
    host, _, port = args.consul.rpartition(":")
    return ConsulSettings(host=host, port=int(port), prefix=args.prefix,
                          session_ttl=args.session_ttl, lock_delay=args.lock_delay, wait=2.0)


async def run_agent(args: argparse.Namespace, stop: asyncio.Event) -> None:
    registry = ConsulRegistry(settings=settings(args))
    await registry.start()
    await registry.register(ServiceInstance(role=args.role, id=args.id), ttl=args.ttl)
    emit("registered", id=args.id)
    await stop.wait()
    await registry.close()
    emit("stopped", id=args.id)


async def run_queen(args: argparse.Namespace, stop: asyncio.Event) -> None:
    import redis.asyncio as aioredis

    client = aioredis.Redis.from_url(args.redis)
    registry = ConsulRegistry(settings=settings(args))
    await registry.start()
    # Registered with a TTL check, so the leadership session dies with the process.
    await registry.register(ServiceInstance(role="queen", id=args.id), ttl=args.ttl)
    writer = FencedWriter(redis=client, name="queen", prefix=args.prefix)
    dispatched = fenced_key("queen", "dispatched", args.prefix)

    async def elected(lease: Leadership) -> None:
        await writer.advance(lease.epoch)
        emit("elected", id=args.id, epoch=lease.epoch)

    async def lost(lease: Leadership) -> None:
        emit("lost", id=args.id, epoch=lease.epoch)

    elector = LeaderElector(election=registry, name="queen", holder=args.id, ttl=args.session_ttl,
                            retry_interval=0.1, on_elected=elected, on_lost=lost)
    await elector.start()
    emit("started", id=args.id)
    while not stop.is_set():
        if not elector.leading:
            await asyncio.sleep(0.05)
            continue
        epoch = elector.epoch
        task = f"t{await client.hlen(dispatched)}"
        emit("dispatching", id=args.id, epoch=epoch, task=task)
        await asyncio.sleep(0.1)  # the dispatch itself: a window a pause can fall into
        try:
            new = await writer.execute("HSETNX", dispatched, task, f"{args.id}:{epoch}",
                                       epoch=epoch)
        except FencingError as exc:
            emit("refused", id=args.id, epoch=epoch, task=task, error=str(exc),
                 count=FENCED_REFUSED.labels(name="queen")._value.get())
            continue
        emit("dispatched" if new else "duplicate", id=args.id, epoch=epoch, task=task)
    await elector.close()
    await registry.close()
    await client.aclose()
    emit("stopped", id=args.id)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=["agent", "queen"])
    parser.add_argument("--consul", required=True)
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--id", required=True)
    parser.add_argument("--role", default="worker")
    parser.add_argument("--prefix", default="swarm")
    parser.add_argument("--ttl", type=float, default=1.0, help="check TTL")
    parser.add_argument("--session-ttl", type=float, default=1.0)
    parser.add_argument("--lock-delay", type=float, default=0.5)
    args = parser.parse_args()
    structlog.configure(logger_factory=structlog.PrintLoggerFactory(sys.stderr))

    async def run() -> None:
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        await (run_agent if args.mode == "agent" else run_queen)(args, stop)

    asyncio.run(run())


if __name__ == "__main__":
    main()
