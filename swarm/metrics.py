"""Prometheus metrics of the runtime.

Only rare events are counted on the hot path (rejections, retries, dead
letters); per-state task counts are read from the ledger when scraped.

Example:
    >>> from swarm.metrics import REJECTED
    >>> REJECTED.labels(reason="malformed").inc()
"""

from __future__ import annotations

from prometheus_client import Counter

__all__ = [
    "BACKGROUND_RESTARTS",
    "DUPLICATE_SETTLEMENTS",
    "FENCED_REFUSED",
    "REJECTED",
    "TASKS_DEAD",
    "TASK_RETRIES",
]

REJECTED = Counter(
    "swarm_messages_rejected_total",
    "Messages rejected (malformed, oversized, foreign, failing subscriber)",
    ["reason"],
)
TASK_RETRIES = Counter("swarm_task_retries_total", "Task attempts that failed and were retried")
TASKS_DEAD = Counter("swarm_tasks_dead_lettered_total", "Tasks moved to the dead-letter queue")
FENCED_REFUSED = Counter(
    "swarm_fenced_writes_refused_total",
    "Writes refused because they carried a stale leadership epoch",
    ["name"],
)

# Delivery contract (issue 12).
BACKGROUND_RESTARTS = Counter(
    "swarm_background_task_restarts_total",
    "Long-running background loops restarted after an unexpected error",
    ["task"],
)
DUPLICATE_SETTLEMENTS = Counter(
    "swarm_duplicate_settlements_total",
    "Settlements of a task already in a final state (only its entry was acked)",
)
