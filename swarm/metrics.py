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
    "HISTORY_DROPPED",
    "HISTORY_FAILURES",
    "HISTORY_WRITTEN",
    "LLM_CALLS",
    "LLM_COST",
    "LLM_FALLBACKS",
    "LLM_TOKENS",
    "LLM_TOOLS_REFUSED",
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

# Model layer (swarm.llm): tokens and cost per model and role, refused tool calls,
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
