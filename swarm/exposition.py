"""Serving ``/metrics``: the process's registry plus what is read from Redis when scraped.

:class:`SwarmCollector` exports the gauges that are never kept by hand: each
role's queue depth and oldest waiting age per priority band, delayed retries,
dead letters and replicas by health state (from Redis, read when scraped), and
the in-flight tasks of this process's agents. :func:`metrics_handler` is an
aiohttp handler (prometheus-client's, from :mod:`prometheus_client.aiohttp`)
that first refreshes it; :func:`serve_metrics` runs it on a port of its own,
as ``python -m swarm.agent ... --metrics HOST:PORT`` does.

Example:
    >>> import asyncio
    >>> from swarm.exposition import parse_address
    >>> parse_address("127.0.0.1:9100"), parse_address(":0"), parse_address("[::1]:9100")
    (('127.0.0.1', 9100), ('0.0.0.0', 0), ('::1', 9100))
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable, Iterator
from typing import Any

import structlog
from aiohttp import web
from prometheus_client import REGISTRY
from prometheus_client.aiohttp import make_aiohttp_handler
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from swarm.agent.base import AgentState
from swarm.errors import ConfigError, SwarmError
from swarm.redis.queues import QueueStats

__all__ = ["SwarmCollector", "metrics_handler", "parse_address", "serve_metrics"]

_log = structlog.get_logger("swarm.metrics")

#: Replica states that take work.
HEALTHY = frozenset({AgentState.READY.value, AgentState.BUSY.value})


class SwarmCollector(Collector):
    """Gauges computed at scrape time from a runtime (and Redis, for a Redis runtime).

    Call :meth:`refresh` (async) before each collection; :func:`metrics_handler`
    does.

    Args:
        runtime: The runtime whose agents, directory and queues are exported.
        timeout: Seconds a refresh may take before the scrape is served
            without the Redis-backed gauges.
    """

    def __init__(self, runtime: Any, *, timeout: float = 2.0) -> None:
        self.runtime = runtime
        self.timeout = timeout
        self._queues: list[QueueStats] = []
        self._roles: dict[str, dict[str, int]] = {}
        self._ok = True
        self._took = 0.0
        self._lock = asyncio.Lock()

    async def refresh(self) -> None:
        """Read the directory and the queues now (one scrape at a time)."""
        async with self._lock:
            started = time.perf_counter()
            try:
                async with asyncio.timeout(self.timeout):
                    queues = getattr(self.runtime, "queues", None)
                    if queues is None:
                        directory = await self.runtime.directory()
                        self._queues = []
                    else:
                        # Two independent reads: in flight together.
                        directory, self._queues = await asyncio.gather(
                            self.runtime.directory(), queues()
                        )
                self._roles = {
                    name: _count_states(info.replicas) for name, info in directory.items()
                }
                self._ok = True
            except (SwarmError, TimeoutError) as exc:
                self._ok = False
                _log.warning("metrics refresh failed", error=str(exc) or type(exc).__name__)
            self._took = time.perf_counter() - started

    def collect(self) -> Iterator[Metric]:
        depth = GaugeMetricFamily(
            "swarm_queue_depth",
            "Tasks waiting for delivery, by role and priority band",
            labels=["role", "priority"],
        )
        age = GaugeMetricFamily(
            "swarm_queue_oldest_age_seconds",
            "Age of the oldest task waiting for delivery, by role and priority band",
            labels=["role", "priority"],
        )
        delayed = GaugeMetricFamily(
            "swarm_queue_delayed", "Tasks waiting for their retry backoff, by role", labels=["role"]
        )
        dead = GaugeMetricFamily(
            "swarm_dead_letters", "Tasks in the dead-letter stream, by role", labels=["role"]
        )
        delivered = CounterMetricFamily(
            "swarm_queue_delivered",
            "Tasks ever handed to a role's agents (from Redis: the whole swarm's)",
            labels=["role"],
        )
        for q in self._queues:
            # The default band always, others while they hold work: ten bands
            # of fifty roles would otherwise be a thousand series of zeros.
            for band, n in q.waiting.items():
                if n or band == 0:
                    depth.add_metric([q.role, str(band)], n)
                    age.add_metric([q.role, str(band)], q.oldest_age.get(band, 0.0))
            delayed.add_metric([q.role], q.delayed)
            dead.add_metric([q.role], q.dead)
            delivered.add_metric([q.role], q.delivered)
        replicas = GaugeMetricFamily(
            "swarm_role_replicas",
            "Replicas with a fresh heartbeat, by role and lifecycle state",
            labels=["role", "state"],
        )
        healthy = GaugeMetricFamily(
            "swarm_role_healthy_replicas",
            "Replicas taking work (ready or busy), by role",
            labels=["role"],
        )
        for role, states in sorted(self._roles.items()):
            for state, n in sorted(states.items()):
                replicas.add_metric([role, state], n)
            healthy.add_metric([role], sum(states.get(s, 0) for s in HEALTHY))
        inflight = GaugeMetricFamily(
            "swarm_agent_inflight_tasks",
            "Tasks an agent of this process is running",
            labels=["role", "agent"],
        )
        local = GaugeMetricFamily(
            "swarm_agents",
            "Agents of this process, by role and lifecycle state",
            labels=["role", "state"],
        )
        counts: dict[tuple[str, str], int] = {}
        for agent in self.runtime.agents():
            inflight.add_metric([agent.role, agent.agent_id], agent.inflight)
            key = (agent.role, agent.state.value)
            counts[key] = counts.get(key, 0) + 1
        for (role, state), n in sorted(counts.items()):
            local.add_metric([role, state], n)
        up = GaugeMetricFamily(
            "swarm_metrics_refresh_ok",
            "1 if the scrape-time read of the directory and queues succeeded",
        )
        up.add_metric([], 1.0 if self._ok else 0.0)
        took = GaugeMetricFamily(
            "swarm_metrics_refresh_duration_seconds",
            "Time the scrape-time read of the directory and queues took",
        )
        took.add_metric([], self._took)
        yield from (
            depth,
            age,
            delayed,
            dead,
            delivered,
            replicas,
            healthy,
            inflight,
            local,
            up,
            took,
        )


def _count_states(replicas: Iterable[Any]) -> dict[str, int]:
    out: dict[str, int] = {}
    for r in replicas:
        out[r.state] = out.get(r.state, 0) + 1
    return out


class _Both(Collector):
    """The process registry followed by the runtime's scrape-time gauges."""

    def __init__(self, *collectors: Collector) -> None:
        self._collectors = collectors

    def collect(self) -> Iterator[Metric]:
        for c in self._collectors:
            yield from c.collect()


def metrics_handler(runtime: Any | None = None) -> Any:
    """An aiohttp handler serving the process's metrics (and ``runtime``'s gauges)."""
    if runtime is None:
        return make_aiohttp_handler(REGISTRY)
    collector = SwarmCollector(runtime)
    inner = make_aiohttp_handler(_Both(REGISTRY, collector))

    async def handle(request: web.Request) -> web.StreamResponse:
        await collector.refresh()
        return await inner(request)

    return handle


def parse_address(spec: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[v6]:PORT``; an empty host is every interface).

    Raises:
        ConfigError: Not of that form.
    """
    host, sep, port = spec.rpartition(":")
    if not sep or not port.isdigit() or int(port) > 65535:
        raise ConfigError(f"expected HOST:PORT, got {spec!r}")
    host = host.strip("[]") or "0.0.0.0"
    return host, int(port)


async def serve_metrics(runtime: Any, address: str) -> tuple[web.AppRunner, str]:
    """Serve ``/metrics`` for ``runtime`` at ``address`` (``HOST:PORT``).

    Returns:
        The runner (``await runner.cleanup()`` to stop) and the URL it serves.

    Raises:
        ConfigError: Bad address, or it cannot be bound.
    """
    host, port = parse_address(address)
    app = web.Application()
    app.router.add_get("/metrics", metrics_handler(runtime))
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    try:
        await site.start()
    except OSError as exc:
        await runner.cleanup()
        raise ConfigError(f"cannot serve metrics on {address}: {exc.strerror or exc}") from exc
    addresses = runner.addresses
    bound = addresses[0][1] if addresses else port
    shown = f"[{host}]" if ":" in host else host
    return runner, f"http://{shown}:{bound}/metrics"
