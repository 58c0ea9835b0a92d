"""State shared by the parts of the Redis runtime: clients, keys, replicas, deliveries.

:class:`~swarm.redis.runtime.RedisRuntime` is composed of parts that each own
one concern (intake, consumer, settlement, reaper, results, directory); they
all reach Redis, the ledger and the local replicas through one :class:`Core`.

Example:
    >>> from swarm.redis.core import role_of
    >>> role_of("swarm:{scraper}:tasks:1")
    'scraper'
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from swarm import constants as C
from swarm import metrics
from swarm.codec import Codec
from swarm.errors import RuntimeClosed
from swarm.history.settings import DEFAULT_INBOX_MAXLEN, HistorySettings
from swarm.ledger import TaskRecord
from swarm.messages import Envelope
from swarm.metrics import RoleMeters, role_meters
from swarm.redis.connections import RedisClients
from swarm.redis.ledger import RedisLedger
from swarm.redis.settings import RedisSettings
from swarm.redis.streams import PipelineBatcher
from swarm.retry import RetryPolicy
from swarm.tasks import TaskSet

if TYPE_CHECKING:
    from swarm.agent.base import Agent
    from swarm.agent.context import AgentContext
    from swarm.history.writer import HistoryWriter
    from swarm.runtime import Subscription

__all__ = [
    "BANDS",
    "INBOX_MAXLEN",
    "Core",
    "Delivery",
    "Replica",
    "check_cancelled",
    "role_of",
]

#: Priority bands, best first.
BANDS = tuple(sorted(C.PRIORITY_BANDS, reverse=True))
#: Approximate length an inbox stream is capped at by default (its reader
#: trims what it has read; see ``HistorySettings.inbox_maxlen``).
INBOX_MAXLEN = DEFAULT_INBOX_MAXLEN


def check_cancelled() -> None:
    """Re-raise a cancellation that redis-py turned into a connection error.

    A cancel that lands while redis-py tears down a connection can surface as
    ``ConnectionError``/``TimeoutError``; a loop that retries on those would
    then never end, and ``TaskSet.close`` would wait forever.
    """
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


def role_of(stream: str) -> str:
    """The role of a task stream (every task stream name carries it as the hash tag)."""
    return stream[stream.index("{") + 1 : stream.index("}")]


@dataclass(slots=True, eq=False)
class Delivery:
    """One task entry read by a replica, from its acceptance to its settlement."""

    envelope: Envelope
    entry_id: bytes
    stream: str
    record: TaskRecord | None = None
    running: asyncio.Future[Any] | None = None
    started_at: float = 0.0
    agent_id: str | None = None
    read_at: float = 0.0
    lease_until: float = 0.0
    worker: asyncio.Task[Any] | None = None
    interrupted: str | None = None
    #: Read before (Redis's delivery counter is past one): its attempt comes
    #: from the ledger, which knows whether an earlier delivery started.
    redelivered: bool = False
    #: Ledger key, set when a "running" mark was queued for a first delivery.
    record_key: str = ""
    #: Set while a settle script holding that mark is built
    #: (see :func:`~swarm.redis.bulk.queue_settle`).
    mark: object = None


@dataclass(slots=True, eq=False)
class Replica:
    """A locally registered agent: its streams, queue of read entries and workers."""

    agent: Agent
    context: AgentContext
    streams: list[str]
    queue: asyncio.Queue[Delivery] = field(default_factory=asyncio.Queue)
    assigned: int = 0
    inflight: dict[str, Delivery] = field(default_factory=dict)
    workers: list[asyncio.Task[None]] = field(default_factory=list)
    reader: asyncio.Task[None] | None = None
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    settled: asyncio.Event = field(default_factory=asyncio.Event)
    dead: bool = False
    subscriptions: list[Subscription] = field(default_factory=list)
    #: A suspect delivery running alone (see ``Consumer``), or None.
    alone: Delivery | None = None
    #: Set while no suspect runs alone.
    shared_turn: asyncio.Event = field(default_factory=asyncio.Event)
    #: Deliveries between the check for a suspect and their entry in ``inflight``.
    starting: int = 0
    #: Set when nothing is starting or in flight.
    quiet: asyncio.Event = field(default_factory=asyncio.Event)
    #: The recipient of a task sent to this agent (its own stream's entries).
    direct: str = field(init=False)
    #: The recipient of a task sent to the role (the band streams' entries).
    shared: str = field(init=False)

    def __post_init__(self) -> None:
        self.shared_turn.set()
        self.quiet.set()
        self.direct = f"agent:{self.agent.agent_id}"
        self.shared = f"role:{self.agent.role}"

    @property
    def free(self) -> int:
        return self.agent.concurrency - self.assigned

    @property
    def role(self) -> str:
        return self.agent.role


class Core:
    """Clients, names and local replicas shared by the runtime's parts.

    Args:
        settings: Connection settings.
        clients: Clients, or None until the runtime connects.
        prefix: Key prefix.
        codec: Message codec.
        retry_policy: Backoff between attempts.
        visibility_timeout: Seconds a delivery may run before it is taken back.
        node_id: Id of this runtime (names its inbox).
        ledger_ttl: Seconds a finished task's record stays in Redis.
        block_ms: Milliseconds one blocking stream read waits.
        history: Retention, inbox bounds and the task history.
    """

    def __init__(
        self,
        *,
        settings: RedisSettings,
        clients: RedisClients | None,
        prefix: str,
        codec: Codec,
        retry_policy: RetryPolicy,
        visibility_timeout: float,
        node_id: str,
        ledger_ttl: int,
        block_ms: int,
        history: HistorySettings | None = None,
    ) -> None:
        self.settings = settings
        self.clients = clients
        self.prefix = prefix
        self.codec = codec
        self.retry = retry_policy
        self.visibility_timeout = visibility_timeout
        self.node_id = node_id
        self.ledger_ttl = ledger_ttl
        self.block_ms = block_ms
        self.history = history if history is not None else HistorySettings()
        self.inbox_maxlen = self.history.inbox_maxlen
        #: Takes every finished record this node settles (set on start).
        self.writer: HistoryWriter | None = None
        #: A task's ledger key is this plus its id (as ``RedisLedger.key`` makes it).
        self.ledger_prefix = C.ledger_key("", prefix)
        self._ledger: RedisLedger | None = None
        if clients is not None:
            self._ledger = RedisLedger(redis=clients.commands, prefix=prefix, ttl=ledger_ttl)
        # Cached: the client type check goes through a Protocol's slow isinstance.
        self.cluster = clients is not None and clients.cluster
        self.batcher: PipelineBatcher | None = None
        self.replicas: dict[str, Replica] = {}
        self.roles_seen: set[str] = set()
        self.tasks = TaskSet(f"redis-runtime:{node_id}")
        #: Whether every supervised loop of the process is running steadily
        #: (the runtime adds its broadcaster's); heartbeats report it.
        self.healthy: Callable[[], bool] = lambda: self.tasks.healthy
        self._meters: dict[str, RoleMeters] = {}

    def meters(self, stream: str) -> RoleMeters | None:
        """The metrics of the role a task stream belongs to (one dict lookup per task).

        None while per-task metrics are off (:func:`swarm.metrics.record_task_metrics`).
        """
        if not metrics.RECORD_TASKS:
            return None
        m = self._meters.get(stream)
        if m is None:
            m = self._meters[stream] = role_meters(role_of(stream))
        return m

    def connected(self, clients: RedisClients) -> None:
        """Adopt the clients the runtime connected (and make the ledger and batcher)."""
        self.clients = clients
        self.cluster = clients.cluster
        if self._ledger is None:
            self._ledger = RedisLedger(
                redis=clients.commands, prefix=self.prefix, ttl=self.ledger_ttl
            )
        self.batcher = PipelineBatcher(clients.commands)

    @property
    def ledger(self) -> RedisLedger:
        if self._ledger is None:
            raise RuntimeClosed("the Redis ledger is available once the runtime started")
        return self._ledger

    @property
    def redis(self) -> Any:
        # Typed Any: redis-py's stubs type replies as ``bytes | str`` unions,
        # while our clients always run with ``decode_responses=False``.
        assert self.clients is not None
        return self.clients.commands

    @property
    def blocking(self) -> Any:
        assert self.clients is not None
        return self.clients.blocking

    @property
    def batch(self) -> PipelineBatcher:
        assert self.batcher is not None
        return self.batcher

    @property
    def inbox(self) -> str:
        """This node's inbox stream (its submitters' results)."""
        return C.inbox_stream(self.node_id, self.prefix)

    def wake_role(self, role: str) -> None:
        """Wake the readers of a role's local replicas (one may read now)."""
        for r in self.replicas.values():
            if r.role == role:
                r.wake.set()
