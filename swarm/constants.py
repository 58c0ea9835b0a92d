"""Every Redis key, stream and channel name, and the shared defaults.

Kept in one module (as arq does) so that operators can see at a glance what
queenswarm writes to Redis, and so no two modules spell a name differently.
Keys of one role share the hash tag ``{role}`` so that, on Redis Cluster, all
of a role's streams and keys land in one slot and multi-key scripts work.

Example:
    >>> from swarm import constants
    >>> constants.CHANNEL_QUEEN_COMMANDS
    'swarm:channels:queen-commands'
    >>> constants.task_stream("scraper", 1)
    'swarm:{scraper}:tasks:1'
"""

from __future__ import annotations

from typing import NamedTuple

__all__ = [
    "CHANNELS",
    "CHANNEL_AGENT_COMMUNICATION",
    "CHANNEL_HEALTH_CHECKS",
    "CHANNEL_MEMORY_SYNC",
    "CHANNEL_QUEEN_COMMANDS",
    "CHANNEL_REDIS_INVALIDATE",
    "DEAD_LETTER_MAXLEN",
    "DEFAULT_MAX_ATTEMPTS",
    "DEFAULT_MAX_MESSAGE_BYTES",
    "DEFAULT_VISIBILITY_TIMEOUT",
    "KEY_LIFECYCLE",
    "KEY_PREFIX",
    "PRIORITY_BANDS",
    "REJECTED_MAXLEN",
    "TASK_GROUP",
    "KeyLifecycle",
    "agent_stream",
    "api_idempotency_key",
    "breaker_key",
    "breakers_key",
    "channel_name",
    "dead_letter_stream",
    "delayed_key",
    "directory_key",
    "fenced_key",
    "idempotency_key",
    "inbox_stream",
    "leader_epoch_key",
    "leader_info_key",
    "leader_lease_key",
    "ledger_key",
    "ledger_pattern",
    "llm_budget_key",
    "llm_limit_key",
    "memory_key",
    "rejected_stream",
    "replicas_key",
    "task_stream",
]

KEY_PREFIX = "swarm"

#: Broadcast channels of the design. Pub/sub is at-most-once: nothing that
#: must not be lost travels only on these.
CHANNEL_AGENT_COMMUNICATION = "swarm:channels:agent-communication"
CHANNEL_QUEEN_COMMANDS = "swarm:channels:queen-commands"
CHANNEL_MEMORY_SYNC = "swarm:channels:memory-sync"
CHANNEL_HEALTH_CHECKS = "swarm:channels:health-checks"
#: Redis's own channel of client-side caching invalidations (``CLIENT TRACKING``
#: with ``REDIRECT``); the memory near-cache listens on it. Fixed by Redis.
CHANNEL_REDIS_INVALIDATE = "__redis__:invalidate"
CHANNELS = (
    CHANNEL_AGENT_COMMUNICATION,
    CHANNEL_QUEEN_COMMANDS,
    CHANNEL_MEMORY_SYNC,
    CHANNEL_HEALTH_CHECKS,
)

#: Priority bands for durable streams: a task's priority is clamped to one of
#: these, and consumers read higher bands first (FIFO within a band). Ten
#: bands keep the in-process runtime's strict priority order for 0..9.
PRIORITY_BANDS = tuple(range(9, -1, -1))

DEFAULT_MAX_ATTEMPTS = 3
DEFAULT_VISIBILITY_TIMEOUT = 30.0
DEFAULT_MAX_MESSAGE_BYTES = 1 << 20

#: Consumer group reading every task stream of a role (consumers are agent ids).
TASK_GROUP = "agents"
#: Approximate cap of a role's dead-letter stream (the oldest go first).
DEAD_LETTER_MAXLEN = 100_000
#: Approximate cap of a role's stream of rejected entries.
REJECTED_MAXLEN = 10_000


class KeyLifecycle(NamedTuple):
    """Who owns a kind of key and what ends it (see :data:`KEY_LIFECYCLE`)."""

    owner: str
    end: str
    #: True when each key of the kind carries a TTL once its owner lets go;
    #: False for the few per-swarm, per-role or per-leadership keys whose number
    #: is bounded by configuration (roles, bands, leadership names).
    expires: bool


#: Every kind of key queenswarm writes, by the function naming it: its owner
#: and its end. Nothing a process writes outlives it without a TTL or a
#: bound; a test fails when a name function is added without an entry here.
KEY_LIFECYCLE: dict[str, KeyLifecycle] = {
    "task_stream": KeyLifecycle(
        "the role's agents (consumer group 'agents')",
        "entries deleted as acked, acked leftovers trimmed by the reaper; one per role and band",
        False,
    ),
    "dead_letter_stream": KeyLifecycle(
        "operators (dead_letters / redrive)",
        f"entries leave on redrive; capped at about {DEAD_LETTER_MAXLEN} entries per role",
        False,
    ),
    "delayed_key": KeyLifecycle(
        "the retry promoter of every node running the role",
        "members leave when due; Redis deletes the empty set",
        False,
    ),
    "inbox_stream": KeyLifecycle(
        "the submitting node that reads it",
        "entries trimmed as read; a TTL (inbox_ttl) its reader renews, so it expires after it",
        True,
    ),
    "ledger_key": KeyLifecycle(
        "the task",
        "live (queued, running): none; final: a TTL of the retention, then the task history",
        True,
    ),
    "idempotency_key": KeyLifecycle("the task that claimed it", "TTL (the retention)", True),
    "directory_key": KeyLifecycle(
        "the swarm", "one hash, one field per role (bounded by the roles)", False
    ),
    "leader_lease_key": KeyLifecycle("the leader", "PX TTL of the lease", True),
    "leader_epoch_key": KeyLifecycle(
        "the leadership", "one counter per leadership name (the fence must outlive leaders)", False
    ),
    "fenced_key": KeyLifecycle(
        "the leader's application writes",
        "whatever TTL the writer sets (the runtime writes none)",
        True,
    ),
    "memory_key": KeyLifecycle("the memory hot tier", "TTL of the hot tier", True),
    "api_idempotency_key": KeyLifecycle(
        "the HTTP API request that claimed it", "TTL (24 h)", True
    ),
    "llm_budget_key": KeyLifecycle(
        "the model layer's budget (swarm.llm.budget)", "TTL past the budget's period", True
    ),
    "llm_limit_key": KeyLifecycle(
        "the model layer's rate limiter (swarm.llm.limiter)",
        "PX TTL set by the limiter's script (its window, or the API's pause)",
        True,
    ),
    "leader_info_key": KeyLifecycle(
        "the leading Queen", "one per leadership name, overwritten by each new leader", False
    ),
    "agent_stream": KeyLifecycle(
        "its agent",
        "deleted when the agent leaves, or when a reaper buries it (no heartbeat for 30 s; "
        "tasks still in it are dead-lettered); a TTL of 90 s its heartbeats renew is the backstop",
        True,
    ),
    "rejected_stream": KeyLifecycle(
        "operators", f"capped at about {REJECTED_MAXLEN} entries per role", False
    ),
    "replicas_key": KeyLifecycle(
        "the role's agents (one field each, their heartbeat)",
        "a field leaves with its agent or its burial; a TTL of 90 s every heartbeat renews "
        "ends the hash once no agent of the role is left",
        True,
    ),
    "breaker_key": KeyLifecycle(
        "the api_reliability role's replicas (agents.breakers.RedisBreakers)",
        "a TTL (breaker_ttl, 7 days by default) every recorded fetch renews: an idle host's "
        "breaker expires",
        True,
    ),
    "breakers_key": KeyLifecycle(
        "the api_reliability role's replicas (agents.breakers.RedisBreakers)",
        "the same TTL, renewed with each breaker; members whose hash expired are skipped",
        True,
    ),
}


def task_stream(role: str, band: int, prefix: str = KEY_PREFIX) -> str:
    """Stream holding the durable tasks of one role and priority band."""
    return f"{prefix}:{{{role}}}:tasks:{band}"


def dead_letter_stream(role: str, prefix: str = KEY_PREFIX) -> str:
    """Stream of the tasks of one role that exhausted their attempts."""
    return f"{prefix}:{{{role}}}:dead"


def delayed_key(role: str, prefix: str = KEY_PREFIX) -> str:
    """Sorted set of tasks waiting for their retry backoff, scored by due time."""
    return f"{prefix}:{{{role}}}:delayed"


def inbox_stream(node_id: str, prefix: str = KEY_PREFIX) -> str:
    """Stream of results addressed to one submitting node (a Queen or an agent process)."""
    return f"{prefix}:{{inbox-{node_id}}}:results"


def ledger_key(task_id: str, prefix: str = KEY_PREFIX) -> str:
    """Hash holding the ledger record of one task."""
    return f"{prefix}:ledger:{task_id}"


def idempotency_key(key: str, prefix: str = KEY_PREFIX) -> str:
    """String mapping an idempotency key to the task id that claimed it."""
    return f"{prefix}:idem:{key}"


def directory_key(prefix: str = KEY_PREFIX) -> str:
    """Hash mapping each role to the message types its agents handle."""
    return f"{prefix}:directory"


def leader_lease_key(name: str, prefix: str = KEY_PREFIX) -> str:
    """String holding the token of the current holder of leadership ``name`` (SET NX PX)."""
    return f"{prefix}:{{leader-{name}}}:lease"


def leader_epoch_key(name: str, prefix: str = KEY_PREFIX) -> str:
    """Counter of leadership ``name``'s epochs (fencing tokens), incremented on each acquisition."""
    return f"{prefix}:{{leader-{name}}}:epoch"


def api_idempotency_key(key: str, prefix: str = KEY_PREFIX) -> str:
    """String holding the request fingerprint an HTTP ``Idempotency-Key`` was first used with."""
    return f"{prefix}:api-idempotency:{key}"


def leader_info_key(name: str, prefix: str = KEY_PREFIX) -> str:
    """String holding who leads ``name`` (JSON: Queen id, API URL, epoch), set on election."""
    return f"{prefix}:{{leader-{name}}}:info"


def fenced_key(name: str, key: str, prefix: str = KEY_PREFIX) -> str:
    """A key written only by the holder of leadership ``name`` through the fenced-write script.

    It shares the leadership's hash tag, so the script that compares the
    writer's epoch with :func:`leader_epoch_key` touches one cluster slot.
    """
    return f"{prefix}:{{leader-{name}}}:fenced:{key}"


def memory_key(memory_id: str, prefix: str = KEY_PREFIX) -> str:
    """Hash caching one memory in the Redis hot tier (expires with the hot TTL).

    All memory keys share the hash tag ``{memory}`` so that, on Redis Cluster,
    multi-key scripts over memories stay possible; the hot tier is a cache.
    """
    return f"{prefix}:{{memory}}:m:{memory_id}"


def agent_stream(role: str, agent_id: str, prefix: str = KEY_PREFIX) -> str:
    """Stream of the tasks aimed at one agent id (``agent:<id>``), in its role's slot."""
    return f"{prefix}:{{{role}}}:agent:{agent_id}"


def rejected_stream(role: str, prefix: str = KEY_PREFIX) -> str:
    """Stream where malformed, oversized or foreign entries of a role's streams are moved aside."""
    return f"{prefix}:{{{role}}}:rejected"


def replicas_key(role: str, prefix: str = KEY_PREFIX) -> str:
    """Hash of a role's live replicas (agent id to heartbeat record)."""
    return f"{prefix}:{{{role}}}:replicas"


def ledger_pattern(prefix: str = KEY_PREFIX) -> str:
    """SCAN pattern matching every ledger record key."""
    return f"{prefix}:ledger:*"


def channel_name(topic: str, prefix: str = KEY_PREFIX) -> str:
    """Pub/sub channel of a topic: the topic itself under the default prefix.

    A runtime with its own key prefix (a test, a second swarm on one server)
    gets its own channels too, so its commands do not reach other swarms.
    """
    return topic if prefix == KEY_PREFIX else f"{prefix}:{topic}"


def llm_limit_key(model: str, kind: str, prefix: str = KEY_PREFIX) -> str:
    """Rate-limiter state of one model: ``kind`` is ``requests``, ``input``, ``output``
    (GCRA theoretical arrival times) or ``pause`` (the API said wait until then).
    One hash tag per model, so the limiter's one script touches one slot."""
    return f"{prefix}:{{llm-{model}}}:rl:{kind}"


def llm_budget_key(scope: str, period: str, unit: str, prefix: str = KEY_PREFIX) -> str:
    """Spend (``unit``: usd or tokens) of one budget scope in one period (a UTC day or a job).
    Every budget key shares the ``{llm-budget}`` hash tag: one call checks several at once."""
    return f"{prefix}:{{llm-budget}}:{scope}:{period}:{unit}"


def breaker_key(role: str, name: str, prefix: str = KEY_PREFIX) -> str:
    """Hash of one circuit breaker of a role (state, counters), shared by its replicas."""
    return f"{prefix}:{{{role}}}:breaker:{name}"


def breakers_key(role: str, prefix: str = KEY_PREFIX) -> str:
    """Set of the breaker hashes of a role."""
    return f"{prefix}:{{{role}}}:breakers"
