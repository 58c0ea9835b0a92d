"""Prometheus metrics of the swarm: one flat list of definitions.

Every process keeps its own registry (prometheus-client's default one) and
serves it at ``/metrics`` (see :mod:`swarm.exposition`); no multiprocess mode.
Names follow Prometheus conventions: base units in the name, ``_total`` on
counters, and bounded label sets (roles, states, reasons, tiers; never a task id).

What changes per task is counted per role (:func:`role_meters`) in plain
numbers, exported when scraped. What can be read from Redis (queue depth,
oldest waiting age, replicas by health) is not kept here at all:
:class:`swarm.exposition.SwarmCollector` reads it when scraped.

Example:
    >>> from swarm.metrics import REJECTED, role_meters
    >>> REJECTED.labels(reason="malformed").inc()
    >>> role_meters("doc-role").started += 1
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterator

from prometheus_client import REGISTRY, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

__all__ = [
    "BACKGROUND_RESTARTS",
    "DUPLICATE_SETTLEMENTS",
    "FAST_BUCKETS",
    "FENCED_REFUSED",
    "FENCE_RECONCILED",
    "HANDLER_SECONDS",
    "HISTORY_DROPPED",
    "HISTORY_FAILURES",
    "HISTORY_WRITTEN",
    "LEADER_CHANGES",
    "LEADER_EPOCH",
    "LLM_CALLS",
    "LLM_COST",
    "LLM_FALLBACKS",
    "LLM_TOKENS",
    "LLM_TOOLS_REFUSED",
    "MEMORY_SECONDS",
    "RECORD_TASKS",
    "REDIS_ROUNDTRIP_SECONDS",
    "REJECTED",
    "TASKS_DEAD",
    "TASKS_FINISHED",
    "TASKS_STARTED",
    "TASKS_SUBMITTED",
    "TASK_BUCKETS",
    "TASK_LATENCY_SECONDS",
    "TASK_METRICS",
    "TASK_RETRIES",
    "Histo",
    "RoleMeters",
    "memory_histo",
    "record_task_metrics",
    "role_meters",
    "task_totals",
]

# Handlers run from milliseconds (lookups) to minutes (scrapes, LLM calls).
TASK_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0, 30.0, 120.0)
# Loopback round trips take tens of microseconds; a congested server, many ms.
FAST_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05, 0.25, 1.0)

# -- tasks --------------------------------------------------------------------
# Counted per task, so kept in plain numbers per role (RoleMeters) and exported
# by TASK_METRICS when scraped: a prometheus-client child's inc() takes a lock
# and costs ~1 us, an observe() ~2.5 us, against ~45 us of CPU per task in an
# agent process.
TASKS_SUBMITTED = "swarm_tasks_submitted"
TASKS_STARTED = "swarm_tasks_started"
TASKS_FINISHED = "swarm_tasks_finished"
HANDLER_SECONDS = "swarm_task_handler_duration_seconds"
TASK_LATENCY_SECONDS = "swarm_task_latency_seconds"
# Memory reads are the hottest path of all: kept as plain numbers too.
MEMORY_SECONDS = "swarm_memory_operation_duration_seconds"
TASK_RETRIES = Counter("swarm_task_retries_total", "Task attempts that failed and were retried")
TASKS_DEAD = Counter("swarm_tasks_dead_lettered_total", "Tasks moved to the dead-letter queue")
REJECTED = Counter(
    "swarm_messages_rejected_total",
    "Messages rejected (malformed, oversized, foreign, failing subscriber)",
    ["reason"],
)

# -- infrastructure -------------------------------------------------------------
REDIS_ROUNDTRIP_SECONDS = Histogram(
    "swarm_redis_roundtrip_duration_seconds",
    "Round trip of one pipelined batch of Redis commands",
    buckets=FAST_BUCKETS,
)
BACKGROUND_RESTARTS = Counter(
    "swarm_background_task_restarts_total",
    "Background loops restarted after an unexpected error",
    ["task"],
)
FENCED_REFUSED = Counter(
    "swarm_fenced_writes_refused_total",
    "Writes refused because they carried a stale leadership epoch",
    ["name"],
)
FENCE_RECONCILED = Counter(
    "swarm_fence_reconciled_total", "Fenced writes reconciled after a leadership change"
)
DUPLICATE_SETTLEMENTS = Counter(
    "swarm_duplicate_settlements_total",
    "Settlements of a task that had already reached a final state",
)
LEADER_EPOCH = Gauge(
    "swarm_leader_epoch", "Leadership epoch held by this process (0: not leading)", ["name"]
)
LEADER_CHANGES = Counter(
    "swarm_leader_changes_total", "Leadership acquired or lost by this process", ["name"]
)

HISTORY_WRITTEN = Counter(
    "swarm_history_records_written_total", "Finished task records written to the task history"
)
HISTORY_FAILURES = Counter(
    "swarm_history_write_failures_total", "Batches of the task history that failed to write"
)
HISTORY_DROPPED = Counter(
    "swarm_history_records_dropped_total",
    "Finished records dropped from a full history buffer (PostgreSQL down too long)",
)

# -- model layer (swarm.llm): tokens and cost per model and role, refused tool calls,
# fallbacks to the deterministic path.
LLM_TOKENS = Counter(
    "swarm_llm_tokens",
    "Model tokens by kind (input, output, cache_write, cache_read)",
    ["kind", "model", "role"],
)
LLM_COST = Counter("swarm_llm_cost_usd", "Model spend in US dollars", ["model", "role"])
LLM_CALLS = Counter(
    "swarm_llm_calls",
    "Model calls by outcome (ok, budget, rate_limited, overloaded, rejected, invalid)",
    ["model", "role", "outcome"],
)
LLM_TOOLS_REFUSED = Counter(
    "swarm_llm_tool_calls_refused",
    "Tool calls the model made outside the call's allow-list (refused, not run)",
    ["role", "tool"],
)
LLM_FALLBACKS = Counter(
    "swarm_llm_fallbacks", "Call sites that ran their deterministic path", ["site", "reason"]
)


class Histo:
    """A histogram's buckets and sum as plain numbers (``le`` bounds, +Inf last)."""

    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.sum = 0.0

    def observe(self, value: float) -> None:
        """Count one observation."""
        self.counts[bisect_left(self.bounds, value)] += 1
        self.sum += value

    def buckets(self) -> list[tuple[str, float]]:
        """Cumulative ``(le, count)`` pairs, as the exposition format wants them."""
        out: list[tuple[str, float]] = []
        total = 0
        for bound, count in zip(self.bounds, self.counts, strict=False):
            total += count
            out.append((repr(float(bound)), total))
        out.append(("+Inf", total + self.counts[-1]))
        return out


class RoleMeters:
    """What is counted per task for one role: plain numbers, exported when scraped."""

    __slots__ = ("done", "finished", "handler", "latency", "role", "started", "submitted")

    def __init__(self, role: str) -> None:
        self.role = role
        self.submitted = 0
        self.started = 0
        #: Tasks finished "done" (the common case, a field of its own).
        self.done = 0
        #: Tasks finished in other final states.
        self.finished: dict[str, int] = {}
        self.handler = Histo(TASK_BUCKETS)
        self.latency = Histo(TASK_BUCKETS)

    def done_in(self, latency: float, handler: float) -> None:
        """Count a task done: its end-to-end latency and its handler's time (one call)."""
        self.done += 1
        h = self.latency
        h.counts[bisect_left(h.bounds, latency)] += 1
        h.sum += latency
        h = self.handler
        h.counts[bisect_left(h.bounds, handler)] += 1
        h.sum += handler

    def finish(self, state: str, latency: float) -> None:
        """Count a final state other than "done", and its end-to-end latency."""
        self.finished[state] = self.finished.get(state, 0) + 1
        self.latency.observe(latency)


_ROLES: dict[str, RoleMeters] = {}

#: Whether runtimes count each task (see :func:`record_task_metrics`).
RECORD_TASKS = True


def record_task_metrics(on: bool) -> None:
    """Turn per-task counting (submitted, started, finished, durations) on or off.

    On by default; off saves the few hundred nanoseconds per task it costs.
    """
    global RECORD_TASKS
    RECORD_TASKS = on


def role_meters(role: str) -> RoleMeters:
    """The meters of ``role`` (made on first use)."""
    meters = _ROLES.get(role)
    if meters is None:
        meters = _ROLES[role] = RoleMeters(role)
    return meters


def task_totals() -> tuple[int, int]:
    """Tasks this process finished: ``(done, in other final states)``, over every role."""
    done = failed = 0
    for m in list(_ROLES.values()):
        done += m.done
        failed += sum(m.finished.values())
    return done, failed


_MEMORY: dict[tuple[str, str], Histo] = {}


def memory_histo(op: str, tier: str) -> Histo:
    """The duration histogram of memory operation ``op`` served by ``tier``."""
    h = _MEMORY.get((op, tier))
    if h is None:
        h = _MEMORY[op, tier] = Histo(FAST_BUCKETS)
    return h


class _TaskMetrics(Collector):
    """Exports every role's :class:`RoleMeters` as Prometheus families."""

    def collect(self) -> Iterator[Metric]:
        roles = list(_ROLES.values())
        submitted = CounterMetricFamily(
            TASKS_SUBMITTED, "Tasks accepted for delivery, by target role", labels=["role"]
        )
        started = CounterMetricFamily(
            TASKS_STARTED, "Task deliveries whose handler started, by role", labels=["role"]
        )
        finished = CounterMetricFamily(
            TASKS_FINISHED,
            "Tasks that reached a final state (done, failed, dead, expired), by role",
            labels=["role", "state"],
        )
        handler = HistogramMetricFamily(
            HANDLER_SECONDS, "Time a handler ran, by role", labels=["role"]
        )
        latency = HistogramMetricFamily(
            TASK_LATENCY_SECONDS,
            "End-to-end time from submission to a final state, by role",
            labels=["role"],
        )
        for m in roles:
            # Only what this process did: a Queen submitting to fifty roles
            # exports fifty submission counters, not fifty idle histograms.
            if m.submitted:
                submitted.add_metric([m.role], m.submitted)
            if not (m.started or m.done or m.finished):
                continue
            started.add_metric([m.role], m.started)
            finished.add_metric([m.role, "done"], m.done)
            for state, n in sorted(m.finished.items()):
                finished.add_metric([m.role, state], n)
            handler.add_metric([m.role], m.handler.buckets(), m.handler.sum)
            latency.add_metric([m.role], m.latency.buckets(), m.latency.sum)
        memory = HistogramMetricFamily(
            MEMORY_SECONDS,
            "Memory coordinator operations and their duration, by operation and serving tier",
            labels=["op", "tier"],
        )
        for (op, tier), h in sorted(_MEMORY.items()):
            memory.add_metric([op, tier], h.buckets(), h.sum)
        yield from (submitted, started, finished, handler, latency, memory)


TASK_METRICS = _TaskMetrics()
REGISTRY.register(TASK_METRICS)
