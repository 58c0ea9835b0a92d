"""RedisRuntime: the Runtime Protocol on Redis Streams, for agents in many processes.

Delivery (the contract of :mod:`swarm.runtime`, as :class:`~swarm.inprocess.InProcessRuntime`):

* a task goes to the stream of its role and priority band
  (:func:`~swarm.constants.task_stream`), or to the stream of one agent id
  (:func:`~swarm.constants.agent_stream`); one consumer group per role
  stream, the consumer name is the agent id;
* an agent first re-reads its own pending entries (``XREADGROUP`` from id
  ``0``), then new ones (``>``), best band first, via one Lua script;
* an entry is acked (and deleted) only after its handler returned and the
  ledger recorded the outcome; a failure is acked together with a ``ZADD``
  of the next attempt to the role's delayed set, which any node promotes
  back to the stream when due (so retries survive restarts);
* a reaper ``XAUTOCLAIM``\\ s entries idle past the visibility timeout to a
  live local replica; the entry's delivery count (from ``XPENDING``) adds to
  its attempt, so a task that keeps killing its process is bounded too;
* past ``max_attempts`` the entry moves to the role's dead-letter stream and
  is acked in one script; :meth:`RedisRuntime.redrive` moves it back;
* results go to the submitting node's inbox stream and wake ``wait()``;
  ``wait()`` reads the ledger first, so a reconnected submitter still gets them.

Broadcast (pub/sub, at-most-once) goes through
:class:`~swarm.redis.broadcast.RedisBroadcaster`.

Example:
    >>> import asyncio, os
    >>> from redis.asyncio import Redis
    >>> from swarm import Agent, Message, handler
    >>> from swarm.redis.runtime import RedisRuntime
    >>> class Triple(Message):
    ...     n: int
    >>> class Tripler(Agent):
    ...     @handler
    ...     async def triple(self, msg: Triple) -> int:
    ...         return msg.n * 3
    >>> async def demo():  # doctest: +SKIP
    ...     redis = Redis.from_url(os.environ.get("SWARM_TEST_REDIS_URL", "redis://127.0.0.1:6379/0"))
    ...     runtime = RedisRuntime(redis=redis, prefix="doc-" + os.urandom(4).hex())
    ...     await runtime.start()
    ...     await runtime.register(Tripler())
    ...     result = await runtime.send(Triple(n=14), sender="me")
    ...     await runtime.stop()
    ...     return result
    >>> asyncio.run(demo())  # doctest: +SKIP
    42
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import msgspec
import structlog
from redis.exceptions import RedisError, ResponseError

from swarm import constants as C
from swarm.agent.base import AgentState
from swarm.agent.context import AgentContext, TaskContext
from swarm.codec import Codec
from swarm.envelopes import broadcast_envelope, task_envelope
from swarm.errors import (
    DecodeError,
    EncodeError,
    FencingError,
    MessageTooLarge,
    NoRouteError,
    Reject,
    RuntimeClosed,
    SwarmTimeout,
    TransportError,
)
from swarm.ledger import TaskRecord, TaskState
from swarm.messages import Command, CommandAction, Envelope, Kind, Message, new_id
from swarm.metrics import FENCED_REFUSED, REJECTED, TASK_RETRIES, TASKS_DEAD
from swarm.redis.connections import AnyRedis, RedisClients
from swarm.redis.ledger import DEFAULT_LEDGER_TTL, RedisLedger, record_from_hash
from swarm.redis.settings import RedisSettings
from swarm.redis.streams import (
    ACK,
    DEAD,
    FETCH,
    ORPHANS,
    PROMOTE,
    RECLAIM,
    REDRIVE,
    REJECT,
    REQUEUE,
    RETRY,
    TRIM,
    Pipeline,
    PipelineBatcher,
    StreamEntry,
    band_of,
    ensure_group,
    parse_entries,
    use_hiredis_packer,
)
from swarm.retry import RetryPolicy
from swarm.routing import Router
from swarm.runtime import DeadLetter, EventCallback, ReplicaInfo, RoleInfo, Subscription, result_of
from swarm.tasks import TaskSet
from swarm.tracing import handler_span

if TYPE_CHECKING:
    from swarm.agent.base import Agent

__all__ = ["Broadcaster", "RedisRuntime"]

_log = structlog.get_logger("swarm.redis.runtime")

_RECORD_ENCODER = msgspec.msgpack.Encoder()
_RECORD_DECODER = msgspec.msgpack.Decoder(TaskRecord)
_BANDS = tuple(sorted(C.PRIORITY_BANDS, reverse=True))
_INBOX_MAXLEN = 100_000
_REJECTED_MAXLEN = 10_000
_HEARTBEAT = 1.0
_STALE_AFTER = 5.0
_TRIM_EVERY = 30.0


def _check_cancelled() -> None:
    """Re-raise a cancellation that redis-py turned into a connection error.

    A cancel that lands while redis-py tears down a connection can surface as
    ``ConnectionError``/``TimeoutError``; a loop that retries on those would
    then never end, and ``TaskSet.close`` would wait forever.
    """
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


class Broadcaster(Protocol):
    """What the runtime needs of a pub/sub broadcaster (see ``RedisBroadcaster``)."""

    async def start(self) -> None:
        """Connect."""
        ...

    async def stop(self) -> None:
        """Close every subscription."""
        ...

    async def publish(self, channel: str, envelope: Envelope) -> Any:
        """Publish an envelope (at-most-once)."""
        ...

    async def subscribe(self, channel: str, callback: EventCallback) -> Subscription:
        """Call ``callback`` with every envelope published on ``channel``."""
        ...


class _ReplicaBeat(msgspec.Struct, array_like=True):
    state: str
    inflight: int
    capacity: int
    node: str
    at: float


@dataclass(slots=True, eq=False)
class _Delivery:
    envelope: Envelope
    entry_id: bytes
    stream: str
    record: TaskRecord | None = None
    running: asyncio.Future[list[Any]] | None = None
    started_at: float = 0.0
    agent_id: str | None = None
    read_at: float = 0.0
    lease_until: float = 0.0
    worker: asyncio.Task[Any] | None = None
    interrupted: str | None = None


@dataclass(slots=True, eq=False)
class _Replica:
    agent: Agent
    context: AgentContext
    streams: list[str]
    queue: asyncio.Queue[_Delivery] = field(default_factory=asyncio.Queue)
    assigned: int = 0
    inflight: dict[str, _Delivery] = field(default_factory=dict)
    workers: list[asyncio.Task[None]] = field(default_factory=list)
    reader: asyncio.Task[None] | None = None
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    settled: asyncio.Event = field(default_factory=asyncio.Event)
    dead: bool = False
    subscriptions: list[Subscription] = field(default_factory=list)

    @property
    def free(self) -> int:
        return self.agent.concurrency - self.assigned

    @property
    def role(self) -> str:
        return self.agent.role


class RedisRuntime:
    """Runs agents against Redis with at-least-once task delivery across processes.

    Args:
        settings: Connection settings (used when neither ``clients`` nor
            ``redis`` is given; default ``redis://127.0.0.1:6379/0``).
        clients: Existing commands/pub-sub/blocking clients (not closed on stop).
        redis: One existing client used for everything (not closed on stop).
        codec: Message codec (default: 1 MiB limit).
        retry_policy: Backoff between attempts, and the default attempt bound.
        visibility_timeout: Seconds a delivery may run (or sit unacked after
            its agent died) before it is taken back and redelivered.
        node_id: Id of this runtime; its inbox receives its submitters'
            results. Reuse it after a restart to keep reading the same inbox.
        memory: Memory coordinator handed to agents' contexts.
        discovery: Service registry handed to agents' contexts.
        prefix: Key prefix (default: the settings' ``key_prefix``); tests
            isolate themselves with a random one.
        broadcaster: Pub/sub broadcaster (default: a ``RedisBroadcaster``).
        ledger_ttl: Seconds a task record outlives its last write.
        block_time: Seconds one blocking stream read waits.
        fence: Name of the leadership whose epoch fences submissions (e.g.
            ``"queen"``): a task stamped with an older epoch than the one in
            Redis is refused (:class:`~swarm.errors.FencingError`, counted in
            ``swarm_fenced_writes_refused_total``). Unstamped tasks (epoch 0)
            and agents' own sends pass.
    """

    def __init__(
        self,
        *,
        settings: RedisSettings | None = None,
        clients: RedisClients | None = None,
        redis: AnyRedis | None = None,
        codec: Codec | None = None,
        retry_policy: RetryPolicy | None = None,
        visibility_timeout: float = C.DEFAULT_VISIBILITY_TIMEOUT,
        node_id: str | None = None,
        memory: Any = None,
        discovery: Any = None,
        prefix: str | None = None,
        broadcaster: Broadcaster | None = None,
        ledger_ttl: int = DEFAULT_LEDGER_TTL,
        block_time: float | None = None,
        fence: str | None = None,
    ) -> None:
        if visibility_timeout <= 0:
            raise ValueError("visibility_timeout must be positive")
        if clients is None and redis is not None:
            clients = RedisClients.from_clients(redis, settings=settings)
        self._settings = clients.settings if clients is not None else settings or RedisSettings()
        self._clients = clients
        self._owns_clients = clients is None
        self.prefix = prefix if prefix is not None else self._settings.key_prefix
        self._codec = codec or Codec()
        self._retry = retry_policy or RetryPolicy()
        self.visibility_timeout = visibility_timeout
        self._node_id = node_id or f"node-{new_id()[-10:]}"
        self.memory = memory
        self.discovery = discovery
        self.fence = fence
        self._fence_key = C.leader_epoch_key(fence, self.prefix) if fence else None
        self._broadcaster = broadcaster
        self._owns_broadcaster = broadcaster is None
        self._ledger_ttl = ledger_ttl
        self._block_ms = int(
            1000 * (block_time if block_time is not None else min(self._settings.block_time, 2.0))
        )
        self._ledger: RedisLedger | None = (
            RedisLedger(redis=clients.commands, prefix=self.prefix, ttl=ledger_ttl)
            if clients is not None
            else None
        )
        self._batcher: PipelineBatcher | None = None
        self._router = Router()
        self._replicas: dict[str, _Replica] = {}
        self._waiters: dict[str, list[asyncio.Future[TaskRecord]]] = {}
        self._pending: dict[str, Envelope] = {}
        self._idle = asyncio.Event()
        self._idle.set()
        self._dir_cache: dict[str, RoleInfo] | None = None
        self._dir_at = 0.0
        self._dir_lock = asyncio.Lock()
        self._roles_seen: set[str] = set()
        self._inbox_ready = asyncio.Event()
        self._tasks = TaskSet(f"redis-runtime:{self._node_id}")
        self._started = False
        self._closed = False
        self._halting = False

    # -- Runtime Protocol properties -------------------------------------
    @property
    def node_id(self) -> str:
        return self._node_id

    @property
    def codec(self) -> Codec:
        return self._codec

    @property
    def ledger(self) -> RedisLedger:
        if self._ledger is None:
            raise RuntimeClosed("the Redis ledger is available once the runtime started")
        return self._ledger

    @property
    def retry_policy(self) -> RetryPolicy:
        return self._retry

    @retry_policy.setter
    def retry_policy(self, policy: RetryPolicy) -> None:
        self._retry = policy

    @property
    def outstanding(self) -> int:
        """Tasks submitted through this runtime not yet in a final state."""
        return len(self._pending)

    @property
    def _redis(self) -> Any:
        # Typed Any: redis-py's stubs type replies as ``bytes | str`` unions,
        # while our clients always run with ``decode_responses=False``.
        assert self._clients is not None
        return self._clients.commands

    @property
    def _blocking(self) -> Any:
        assert self._clients is not None
        return self._clients.blocking

    @property
    def _cluster(self) -> bool:
        return self._clients is not None and self._clients.cluster

    @property
    def _batch(self) -> PipelineBatcher:
        assert self._batcher is not None
        return self._batcher

    # -- lifecycle --------------------------------------------------------
    async def start(self) -> None:
        if self._started:
            return
        if self._clients is None:
            self._clients = await RedisClients.connect(self._settings)
            clients = (self._clients.commands, self._clients.blocking)
            for client in {id(c): c for c in clients}.values():
                use_hiredis_packer(client)
        if self._ledger is None:
            self._ledger = RedisLedger(
                redis=self._clients.commands, prefix=self.prefix, ttl=self._ledger_ttl
            )
        if self._broadcaster is None:
            from swarm.redis.broadcast import RedisBroadcaster

            self._broadcaster = RedisBroadcaster(clients=self._clients, codec=self._codec)
        if self._owns_broadcaster:
            await self._broadcaster.start()
        self._started = True
        self._batcher = PipelineBatcher(self._clients.commands)
        self._tasks.spawn(self._batcher.run(), name="batcher")
        last = await self._redis.xrevrange(self._inbox, count=1)
        self._tasks.spawn(self._inbox_reader(last[0][0] if last else b"0-0"), name="inbox")
        self._tasks.spawn(self._reaper(), name="reaper")
        self._tasks.spawn(self._promoter(), name="promoter")
        self._tasks.spawn(self._heartbeat(), name="heartbeat")
        await self.subscribe(C.CHANNEL_QUEEN_COMMANDS, self._on_command)

    async def stop(self, *, drain: bool = True, timeout: float | None = None) -> list[Envelope]:
        if self._halting or not self._started:
            self._closed = True
            return []
        self._closed = True
        deadline = None if timeout is None else time.monotonic() + timeout
        if drain:
            try:
                async with asyncio.timeout(timeout):
                    await self._idle.wait()
            except TimeoutError:
                _log.warning("drain timed out", outstanding=len(self._pending))
        self._halting = True
        for rep in list(self._replicas.values()):
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            if drain:
                await self._drain(rep, left)
            await self._remove(rep, reason="shutdown", requeue=True)
        leftovers = list(self._pending.values())
        for waiters in self._waiters.values():
            for fut in waiters:
                if not fut.done():
                    fut.cancel()
        await self._tasks.close()
        if self._broadcaster is not None and self._owns_broadcaster:
            await self._broadcaster.stop()
        if self._owns_clients and self._clients is not None:
            await self._clients.close()
        return leftovers

    async def stop_when_idle(self, *, timeout: float | None = None) -> None:
        try:
            async with asyncio.timeout(timeout):
                await self._idle.wait()
        except TimeoutError:
            raise SwarmTimeout(f"{len(self._pending)} tasks still outstanding") from None
        await self.stop()

    # -- agents -----------------------------------------------------------
    async def register(self, agent: Agent) -> None:
        if self._closed:
            raise RuntimeClosed("runtime is stopping")
        if not self._started:
            await self.start()
        if agent.agent_id in self._replicas:
            raise ValueError(f"agent id {agent.agent_id!r} is already registered")
        role = agent.role
        streams = [C.agent_stream(role, agent.agent_id, self.prefix)]
        streams += [C.task_stream(role, band, self.prefix) for band in _BANDS]
        for stream in streams:
            await ensure_group(self._redis, stream, C.TASK_GROUP)
        dkey = C.directory_key(self.prefix)
        known = await self._redis.hget(dkey, role)
        types = set(agent.capabilities)
        if known:
            types |= set(known.decode().split())
        await self._redis.hset(dkey, role, " ".join(sorted(types)))
        ctx = AgentContext(
            runtime=self,
            agent_id=agent.agent_id,
            role=role,
            memory=self.memory,
            discovery=self.discovery,
        )
        await agent.startup(ctx)
        rep = _Replica(agent=agent, context=ctx, streams=streams)
        rep.settled.set()
        for i in range(agent.concurrency):
            rep.workers.append(self._tasks.spawn(self._worker(rep), name=f"{agent.agent_id}:{i}"))
        for topic in agent.subscriptions:
            rep.subscriptions.append(await self.subscribe(topic, self._event_callback(rep)))
        self._replicas[agent.agent_id] = rep
        self._roles_seen.add(role)
        await self._beat([rep])
        self._dir_cache = None
        rep.reader = self._tasks.spawn(self._reader(rep), name=f"{agent.agent_id}:reader")

    async def unregister(self, agent_id: str, *, drain: bool = True) -> None:
        rep = self._replicas.get(agent_id)
        if rep is None:
            return
        if drain:
            await self._drain(rep, None)
        await self._remove(rep, reason="unregistered", requeue=True)

    async def kill(self, agent_id: str) -> None:
        """Simulate a crash of one agent: it stops at once and acks nothing.

        Its unacked entries stay pending in Redis until a replica's reaper
        reclaims them after the visibility timeout (or the same agent id
        registers again and re-reads them). For tests and chaos drills; the
        agent's ``on_stop`` does not run.
        """
        rep = self._replicas.get(agent_id)
        if rep is None:
            raise KeyError(agent_id)
        rep.agent.state = AgentState.FAILED
        held = [d.envelope.id for d in rep.inflight.values()]
        await self._remove(rep, reason="killed", requeue=False)
        # What a supervisor would see: the work is back to waiting. The entries
        # themselves stay pending until a replica claims them (its heartbeat
        # is gone) or the same agent id comes back and re-reads them.
        ledger = self.ledger
        for task_id in held:
            await ledger.update(task_id, TaskState.QUEUED, error="agent crashed")

    async def _drain(self, rep: _Replica, limit: float | None) -> None:
        if rep.agent.state is not AgentState.FAILED:
            rep.agent.state = AgentState.DRAINING
        rep.wake.set()
        await self._stop_reader(rep)
        await self._return_queued(rep)
        try:
            async with asyncio.timeout(limit):
                await rep.settled.wait()
        except TimeoutError:
            _log.warning("agent drain timed out", agent_id=rep.agent.agent_id)

    async def _stop_reader(self, rep: _Replica) -> None:
        if rep.reader is not None:
            rep.reader.cancel()
            await asyncio.gather(rep.reader, return_exceptions=True)
            rep.reader = None

    async def _return_queued(self, rep: _Replica) -> None:
        # Read but not started: back to their stream with the attempt unchanged.
        while not rep.queue.empty():
            d = rep.queue.get_nowait()
            rep.assigned -= 1
            with contextlib.suppress(RedisError):
                await self._requeue(d, d.envelope)
        if rep.assigned == 0:
            rep.settled.set()

    async def _remove(self, rep: _Replica, *, reason: str, requeue: bool) -> None:
        rep.dead = True
        agent_id = rep.agent.agent_id
        self._replicas.pop(agent_id, None)
        self._dir_cache = None
        self._wake_role(rep.role)
        await self._stop_reader(rep)
        if requeue:
            await self._return_queued(rep)
        for d in rep.inflight.values():
            d.interrupted = reason
        for w in rep.workers:
            w.cancel()
        await asyncio.gather(*rep.workers, return_exceptions=True)
        if requeue:
            await self._give_back(rep)
        for sub in rep.subscriptions:
            with contextlib.suppress(Exception):
                await sub.close()
        with contextlib.suppress(RedisError):
            await self._redis.hdel(C.replicas_key(rep.role, self.prefix), agent_id)
        if rep.agent.state is not AgentState.FAILED:
            try:
                await rep.agent.shutdown()
            except Exception as exc:
                _log.warning("agent on_stop failed", agent_id=agent_id, error=repr(exc))

    async def _give_back(self, rep: _Replica) -> None:
        # A cancelled blocking read may have been served after we stopped
        # listening: those entries sit in our pending list; return them now
        # rather than after a visibility timeout.
        try:
            raw = await self._redis.eval(
                FETCH, len(rep.streams), *rep.streams, C.TASK_GROUP, rep.agent.agent_id, 1000, "0"
            )
            for entry in parse_entries(raw):
                stream = rep.streams[entry.key_index]
                data = entry.fields.get(b"e")
                if data is None:
                    continue
                await self._redis.eval(
                    REQUEUE, 2, stream, stream, C.TASK_GROUP, entry.entry_id, data
                )
        except RedisError as exc:
            _log.warning("could not give back pending entries", error=repr(exc))

    # -- submission -------------------------------------------------------
    async def submit(self, envelope: Envelope) -> str:
        if self._closed and envelope.sender not in self._replicas:
            raise RuntimeClosed("runtime is stopping; no new tasks are accepted")
        if not self._started:
            raise RuntimeClosed("runtime is not started")
        env = envelope
        recipient, stream = await self._route(env)
        if recipient != env.recipient or env.reply_to is None:
            env = msgspec.structs.replace(
                env, recipient=recipient, reply_to=env.reply_to or self._node_id
            )
        data = self._codec.encode(env)
        record = TaskRecord.for_task(env)
        ledger = self.ledger
        if env.idempotency_key is not None:
            existing = await ledger.claim(env.idempotency_key, env.id)
            if existing is not None:
                return existing.task_id
        tracked = env.reply_to == self._node_id
        if tracked:
            self._pending[env.id] = env
            self._idle.clear()

        cluster = self._cluster
        fence = self._fence_key if env.epoch else None

        def build(pipe: Pipeline) -> None:
            if cluster:
                ledger.queue_store(pipe, record)
                pipe.xadd(stream, {"e": data})
            else:
                ledger.queue_store(pipe, record, then_add=(stream, data), fence=fence)

        try:
            if fence is not None and cluster:
                # The fence is in another slot: checked just before the write
                # rather than in the same script. A takeover between the two
                # can let one task of the old epoch through, never more.
                current = int(await self._redis.get(fence) or 0)
                if env.epoch < current:
                    raise ResponseError(f"FENCED epoch {env.epoch} is older than {current}")
            replies = await self._batch.call(build)
            for reply in replies:
                if isinstance(reply, Exception):
                    raise reply
        except (RedisError, OSError) as exc:
            _check_cancelled()
            if tracked:
                self._untrack(env.id)
            if isinstance(exc, ResponseError) and str(exc).startswith("FENCED"):
                FENCED_REFUSED.labels(name=self.fence or "").inc()
                _log.warning("stale epoch refused", task_id=env.id, detail=str(exc))
                raise FencingError(f"task {env.id} refused: {exc}") from None
            raise TransportError(f"could not submit task {env.id}: {exc}") from exc
        return env.id

    async def _route(self, env: Envelope) -> tuple[str, str]:
        """Return the resolved recipient and the stream the task goes to."""
        for fresh in (False, True):
            roles = await self._directory_snapshot(fresh=fresh)
            try:
                recipient = self._router.resolve(env.type, env.recipient, roles)
            except NoRouteError:
                if fresh:
                    raise
                continue
            if recipient.startswith("agent:"):
                agent_id = recipient[6:]
                role = next(
                    info.role
                    for info in roles.values()
                    if any(r.agent_id == agent_id for r in info.replicas)
                )
                return recipient, C.agent_stream(role, agent_id, self.prefix)
            role = recipient[5:]
            self._roles_seen.add(role)
            return recipient, C.task_stream(role, band_of(env.priority), self.prefix)
        raise NoRouteError(f"no route for {env.type!r}")  # pragma: no cover - loop returns

    def _untrack(self, task_id: str) -> None:
        if self._pending.pop(task_id, None) is not None and not self._pending:
            self._idle.set()

    # -- reading ------------------------------------------------------------
    async def _reader(self, rep: _Replica) -> None:
        agent = rep.agent
        start = "0"  # our own pending entries first (a restart of this agent id)
        failures = 0
        while not rep.dead:
            _check_cancelled()
            if not agent.accepting or rep.free <= 0 or not self._least_loaded(rep):
                await rep.wake.wait()
                rep.wake.clear()
                continue
            try:
                # Our own pending entries are read in one pass (re-reading them
                # later would hand us the ones we are running again).
                count = 10_000 if start == "0" else rep.free
                raw = await self._redis.eval(
                    FETCH,
                    len(rep.streams),
                    *rep.streams,
                    C.TASK_GROUP,
                    agent.agent_id,
                    count,
                    start,
                )
                entries = parse_entries(raw)
                if start == "0":
                    start = ">"
                elif not entries:
                    entries = await self._blocking_read(rep)
                failures = 0
            except (RedisError, OSError) as exc:
                _check_cancelled()
                failures += 1
                delay = min(2.0, 0.05 * 2 ** min(failures, 6))
                _log.warning("stream read failed", agent_id=agent.agent_id, error=repr(exc))
                await asyncio.sleep(delay)
                continue
            for entry in entries:
                await self._accept(rep, rep.streams[entry.key_index], entry)

    def _least_loaded(self, rep: _Replica) -> bool:
        # Among this node's replicas of a role, only the least loaded read, so
        # that a task goes to an idle replica rather than a busy one.
        role = rep.role
        return all(
            rep.assigned <= r.assigned
            for r in self._replicas.values()
            if r.role == role and r is not rep and r.agent.accepting and r.free > 0
        )

    def _wake_role(self, role: str) -> None:
        for r in self._replicas.values():
            if r.role == role:
                r.wake.set()

    async def _blocking_read(self, rep: _Replica) -> list[StreamEntry]:
        assert self._clients is not None
        reply = await self._blocking.xreadgroup(
            C.TASK_GROUP,
            rep.agent.agent_id,
            dict.fromkeys(rep.streams, ">"),
            count=max(1, rep.free),
            block=self._block_ms,
        )
        out: list[StreamEntry] = []
        index = {s.encode(): i for i, s in enumerate(rep.streams)}
        for key, items in reply or ():
            i = index.get(key if isinstance(key, bytes) else str(key).encode(), 0)
            for entry_id, fields in items:
                if fields:
                    out.append(StreamEntry(i, entry_id, fields, 1))
        out.sort(key=lambda e: e.key_index)
        return out

    async def _accept(self, rep: _Replica, stream: str, entry: StreamEntry) -> None:
        """Validate an entry and hand it to the replica's workers, or move it aside."""
        fields = entry.fields
        data = fields.get(b"e")
        if data is None or len(fields) != 1:
            await self._reject(stream, entry.entry_id, "foreign", rep.role)
            return
        try:
            env = self._codec.decode(data)
        except MessageTooLarge:
            await self._reject(stream, entry.entry_id, "oversized", rep.role)
            return
        except DecodeError:
            await self._reject(stream, entry.entry_id, "malformed", rep.role)
            return
        expected = f"agent:{rep.agent.agent_id}" if stream == rep.streams[0] else f"role:{rep.role}"
        if env.kind is not Kind.TASK or env.recipient != expected:
            await self._reject(stream, entry.entry_id, "foreign", rep.role)
            return
        if entry.deliveries > 1:
            # Crash redeliveries count as attempts, as Redis's delivery counter does.
            env = msgspec.structs.replace(env, attempt=env.attempt + entry.deliveries - 1)
        rep.assigned += 1
        rep.settled.clear()
        rep.queue.put_nowait(_Delivery(env, entry.entry_id, stream, read_at=time.monotonic()))
        self._wake_role(rep.role)

    async def _reject(self, stream: str, entry_id: bytes, reason: str, role: str) -> None:
        REJECTED.labels(reason=reason).inc()
        _log.warning("rejected stream entry", stream=stream, entry_id=entry_id, reason=reason)
        try:
            await self._redis.eval(
                REJECT,
                2,
                stream,
                C.rejected_stream(role, self.prefix),
                C.TASK_GROUP,
                entry_id,
                reason,
                _REJECTED_MAXLEN,
            )
        except RedisError as exc:
            _log.warning("could not move a rejected entry aside", error=repr(exc))

    # -- execution ----------------------------------------------------------
    async def _worker(self, rep: _Replica) -> None:
        me = asyncio.current_task()
        assert me is not None
        agent = rep.agent
        while True:
            d = await rep.queue.get()
            try:
                await self._execute(rep, d, me)
            except (RedisError, OSError) as exc:
                _check_cancelled()
                # The entry stays pending; the reaper redelivers it.
                _log.warning("task bookkeeping failed", task_id=d.envelope.id, error=repr(exc))
            finally:
                rep.assigned -= 1
                if rep.assigned == 0:
                    rep.settled.set()
                if agent.state is AgentState.BUSY and agent.inflight == 0:
                    agent.state = AgentState.READY
                self._wake_role(rep.role)
            if rep.dead:
                return

    async def _execute(self, rep: _Replica, d: _Delivery, me: asyncio.Task[Any]) -> None:
        env = d.envelope
        agent = rep.agent
        if time.monotonic() - d.read_at > self.visibility_timeout:
            # Waited here past the visibility timeout: another replica may have
            # claimed it meanwhile. Leave it pending; a reaper hands it on.
            _log.warning("stale delivery left to the reaper", task_id=env.id)
            return
        if env.attempt > env.max_attempts:
            await self._dead_letter(d, f"delivered {env.attempt} times (agent crashes?)")
            return
        if env.expired():
            await self._complete(d, TaskState.EXPIRED, error="deadline passed before start")
            return
        ledger = self.ledger
        d.started_at = time.time()
        d.agent_id = agent.agent_id
        if env.attempt == 1:
            # A first delivery cannot duplicate a finished task: record "running"
            # without waiting, so the handler starts one round trip sooner.
            d.running = self._batch.enqueue(
                lambda pipe: ledger.queue_update(
                    pipe,
                    env.id,
                    TaskState.RUNNING,
                    quiet=True,
                    attempts=1,
                    agent_id=agent.agent_id,
                )
            )
        else:
            replies = await self._batch.call(
                lambda pipe: ledger.queue_update(
                    pipe,
                    env.id,
                    TaskState.RUNNING,
                    guard=True,
                    attempts=env.attempt,
                    agent_id=agent.agent_id,
                )
            )
            record, was_final = ledger.parse_update(replies[0])
            if was_final and record is not None:
                # A redelivered duplicate of a task that already finished: settle it.
                d.record = record
                await self._settle_duplicate(d, record)
                return
            d.record = record
        if agent.state is AgentState.READY:
            agent.state = AgentState.BUSY
        d.worker = me
        d.lease_until = time.monotonic() + self.visibility_timeout
        rep.inflight[env.id] = d
        agent.inflight += 1
        try:
            with handler_span(env, agent.agent_id):
                value = await agent.dispatch(env, TaskContext(rep.context, env), self._codec)
        except asyncio.CancelledError:
            self._settle(rep, d)
            if d.interrupted is None:
                if me.cancelling():
                    await self._redeliver(d, "cancelled")
                    raise
                d.interrupted = "cancelled"
            else:
                me.uncancel()
            if d.interrupted != "killed":
                await self._redeliver(d, d.interrupted)
            return
        except Reject as exc:
            self._settle(rep, d)
            await self._complete(d, TaskState.FAILED, error=f"rejected: {exc}")
            return
        except DecodeError as exc:
            self._settle(rep, d)
            REJECTED.labels(reason="bad_payload").inc()
            await self._complete(d, TaskState.FAILED, error=str(exc))
            return
        except Exception as exc:
            self._settle(rep, d)
            agent.failed += 1
            await self._fail(d, f"{type(exc).__name__}: {exc}")
            return
        self._settle(rep, d)
        if d.interrupted is not None:
            me.uncancel()
            if d.interrupted != "killed":
                await self._redeliver(d, d.interrupted)
            return
        agent.processed += 1
        try:
            payload = self._codec.encode_payload(value)
        except (EncodeError, MessageTooLarge) as exc:
            await self._complete(d, TaskState.FAILED, error=f"result: {exc}")
            return
        await self._complete(
            d, TaskState.DONE, result=bytes(payload), result_type=Codec.type_name(value)
        )

    @staticmethod
    def _settle(rep: _Replica, d: _Delivery) -> None:
        rep.inflight.pop(d.envelope.id, None)
        rep.agent.inflight -= 1

    async def _complete(
        self,
        d: _Delivery,
        state: TaskState,
        *,
        error: str | None = None,
        result: bytes | None = None,
        result_type: str | None = None,
    ) -> None:
        """Record a final state, notify the submitter and ack, in one round trip."""
        env = d.envelope
        ledger = self.ledger
        # Not waiting for the "running" mark of a first delivery: the batcher
        # runs calls in order, so it lands before this, often in the same
        # round trip. A first delivery has no earlier execution to count.
        final = self._project(d, state, error=error, result=result, result_type=result_type)
        note = _RECORD_ENCODER.encode(final)

        inbox = C.inbox_stream(env.reply_to, self.prefix) if env.reply_to else None
        if not self._cluster:
            # One script: ledger, note and ack in one step and one reply.
            replies = await self._batch.call(
                lambda pipe: ledger.queue_update(
                    pipe,
                    env.id,
                    state,
                    quiet=True,
                    attempts=env.attempt,
                    error=error,
                    result=result,
                    result_type=result_type,
                    then_ack=(d.stream, C.TASK_GROUP, d.entry_id),
                    then_notify=None if inbox is None else (inbox, note, _INBOX_MAXLEN),
                )
            )
            if isinstance(replies[0], Exception):
                raise replies[0]
            return

        def build(pipe: Pipeline) -> None:
            ledger.queue_update(
                pipe,
                env.id,
                state,
                quiet=True,
                attempts=env.attempt,
                error=error,
                result=result,
                result_type=result_type,
            )
            if env.reply_to:
                pipe.xadd(
                    C.inbox_stream(env.reply_to, self.prefix),
                    {"r": note},
                    maxlen=_INBOX_MAXLEN,
                    approximate=True,
                )
            pipe.eval(ACK, 1, d.stream, C.TASK_GROUP, d.entry_id)

        replies = await self._batch.call(build)
        for reply in replies:
            if isinstance(reply, Exception):
                raise reply

    def _project(
        self,
        d: _Delivery,
        state: TaskState,
        *,
        error: str | None,
        result: bytes | None,
        result_type: str | None,
        executions: int = 0,
    ) -> TaskRecord:
        """The final record as the ledger script will write it (sent to the submitter)."""
        env = d.envelope
        base = d.record
        now = time.time()
        if base is None:
            base = TaskRecord(
                task_id=env.id,
                type=env.type,
                recipient=env.recipient,
                priority=env.priority,
                idempotency_key=env.idempotency_key,
                epoch=env.epoch,
                created_at=env.created_at,
                agent_id=d.agent_id,
                started_at=d.started_at or None,
                executions=executions,
            )
        return TaskRecord(
            task_id=base.task_id,
            type=base.type,
            recipient=base.recipient,
            state=state,
            attempts=env.attempt,
            priority=base.priority,
            idempotency_key=base.idempotency_key,
            agent_id=base.agent_id,
            error=error if error is not None else base.error,
            result=result,
            result_type=result_type or "",
            created_at=base.created_at,
            started_at=base.started_at,
            finished_at=now,
            executions=base.executions + (1 if state is TaskState.DONE else 0),
            epoch=base.epoch,
        )

    async def _settle_duplicate(self, d: _Delivery, record: TaskRecord) -> None:
        env = d.envelope
        note = _RECORD_ENCODER.encode(record)

        def build(pipe: Pipeline) -> None:
            if env.reply_to:
                pipe.xadd(
                    C.inbox_stream(env.reply_to, self.prefix),
                    {"r": note},
                    maxlen=_INBOX_MAXLEN,
                    approximate=True,
                )
            pipe.eval(ACK, 1, d.stream, C.TASK_GROUP, d.entry_id)

        await self._batch.call(build)

    async def _fail(self, d: _Delivery, error: str) -> None:
        env = d.envelope
        if env.attempt >= env.max_attempts:
            await self._dead_letter(d, error)
            return
        TASK_RETRIES.inc()
        nxt = msgspec.structs.replace(env, attempt=env.attempt + 1)
        due = time.time() + self._retry.backoff(env.attempt)
        await self._schedule(d, nxt, due, error)

    async def _schedule(self, d: _Delivery, nxt: Envelope, due: float, error: str) -> None:
        role = self._role_of(d.stream)
        member = d.stream.encode() + b"\n" + self._codec.encode(nxt)
        ledger = self.ledger

        def build(pipe: Pipeline) -> None:
            ledger.queue_update(pipe, nxt.id, TaskState.QUEUED, error=error)
            pipe.eval(
                RETRY,
                2,
                d.stream,
                C.delayed_key(role, self.prefix),
                C.TASK_GROUP,
                d.entry_id,
                repr(due),
                member,
            )

        await self._batch.call(build)

    async def _redeliver(self, d: _Delivery, reason: str) -> None:
        # An interrupted delivery counts as an attempt, as a crash would.
        env = d.envelope
        nxt = msgspec.structs.replace(env, attempt=env.attempt + 1)
        if nxt.attempt > nxt.max_attempts:
            await self._dead_letter(d, reason)
            return
        ledger = self.ledger
        await self._batch.call(
            lambda pipe: ledger.queue_update(pipe, env.id, TaskState.QUEUED, error=reason)
        )
        await self._requeue(d, nxt)

    async def _requeue(self, d: _Delivery, env: Envelope) -> None:
        await self._redis.eval(
            REQUEUE, 2, d.stream, d.stream, C.TASK_GROUP, d.entry_id, self._codec.encode(env)
        )

    async def _dead_letter(self, d: _Delivery, error: str) -> None:
        TASKS_DEAD.inc()
        env = d.envelope
        role = self._role_of(d.stream)
        data = self._codec.encode(env)
        final = self._project(d, TaskState.DEAD, error=error, result=None, result_type=None)
        note = _RECORD_ENCODER.encode(final)
        ledger = self.ledger

        def build(pipe: Pipeline) -> None:
            # The move comes first: should we die half-way, the ledger still
            # says "running" and the dead letter is listed, rather than a
            # "dead" task that is in no queue.
            pipe.eval(
                DEAD,
                2,
                d.stream,
                C.dead_letter_stream(role, self.prefix),
                C.TASK_GROUP,
                d.entry_id,
                data,
                error,
                repr(time.time()),
            )
            ledger.queue_update(pipe, env.id, TaskState.DEAD, attempts=env.attempt, error=error)
            if env.reply_to:
                pipe.xadd(
                    C.inbox_stream(env.reply_to, self.prefix),
                    {"r": note},
                    maxlen=_INBOX_MAXLEN,
                    approximate=True,
                )

        replies = await self._batch.call(build)
        for reply in replies:
            if isinstance(reply, Exception):
                raise reply

    def _role_of(self, stream: str) -> str:
        # Every task stream name carries its role as the hash tag.
        return stream[stream.index("{") + 1 : stream.index("}")]

    # -- background loops -----------------------------------------------------
    async def _reaper(self) -> None:
        interval = min(1.0, self.visibility_timeout / 4)
        min_idle = max(1, int(self.visibility_timeout * 1000))
        last_trim = time.monotonic()
        while True:
            await asyncio.sleep(interval)
            now = time.monotonic()
            for rep in list(self._replicas.values()):
                for d in list(rep.inflight.values()):
                    if d.lease_until < now and d.interrupted is None and d.worker is not None:
                        _log.warning(
                            "visibility timeout; redelivering",
                            task_id=d.envelope.id,
                            agent_id=rep.agent.agent_id,
                        )
                        d.interrupted = "visibility timeout"
                        d.worker.cancel()
            try:
                await self._reclaim(min_idle)
                if now - last_trim > _TRIM_EVERY:
                    last_trim = now
                    await self._trim()
            except (RedisError, OSError) as exc:
                _check_cancelled()
                _log.warning("reaper pass failed", error=repr(exc))

    async def _reclaim(self, min_idle: int) -> None:
        # The least loaded replica takes a dead agent's entries even when it is
        # full: under a backlog nobody ever has a free slot, and an orphan must
        # not wait for the backlog to drain.
        by_role: dict[str, _Replica] = {}
        for rep in self._replicas.values():
            if rep.agent.accepting and not rep.dead:
                best = by_role.get(rep.role)
                if best is None or rep.free > best.free:
                    by_role[rep.role] = rep
        for role, rep in by_role.items():
            live = await self._live_replicas(role)
            for band in _BANDS:
                if rep.dead:
                    break
                stream = C.task_stream(role, band, self.prefix)
                await self._claim(
                    rep, stream, "claimed a dead agent's entry", ORPHANS, max(1, rep.free), *live
                )
                # Claimed even into a full replica (one at a time): it runs them
                # after its current task; should one wait here past the timeout,
                # _execute leaves it for the next reaper instead of running a
                # copy another replica may have claimed.
                await self._claim(
                    rep, stream, "reclaimed an idle entry", RECLAIM, min_idle, max(1, rep.free)
                )

    async def _claim(self, rep: _Replica, stream: str, what: str, script: str, *args: Any) -> None:
        """Run a claim script (``ORPHANS`` or ``RECLAIM``) for ``rep`` and accept what it took."""
        raw = await self._redis.eval(script, 1, stream, C.TASK_GROUP, rep.agent.agent_id, *args)
        for entry in parse_entries(raw):
            _log.warning(
                what,
                stream=stream,
                entry_id=entry.entry_id,
                agent_id=rep.agent.agent_id,
                deliveries=entry.deliveries,
            )
            await self._accept(rep, stream, entry)

    async def _live_replicas(self, role: str) -> list[str]:
        """Agent ids of a role with a fresh heartbeat (plus our own)."""
        raw = await self._redis.hgetall(C.replicas_key(role, self.prefix))
        wall = time.time()
        live = {r.agent.agent_id for r in self._replicas.values() if r.role == role}
        for agent_id, blob in raw.items():
            try:
                beat = msgspec.msgpack.decode(blob, type=_ReplicaBeat)
            except (msgspec.DecodeError, msgspec.ValidationError):
                continue
            if wall - beat.at <= _STALE_AFTER:
                live.add(agent_id.decode())
        return sorted(live)

    async def _trim(self) -> None:
        for role in {rep.role for rep in self._replicas.values()}:
            for band in _BANDS:
                await self._redis.eval(
                    TRIM, 1, C.task_stream(role, band, self.prefix), C.TASK_GROUP
                )

    async def _promoter(self) -> None:
        interval = max(0.01, min(0.1, self._retry.base_delay))
        while True:
            await asyncio.sleep(interval)
            roles = {rep.role for rep in self._replicas.values()}
            try:
                for role in roles:
                    await self._redis.eval(
                        PROMOTE, 1, C.delayed_key(role, self.prefix), repr(time.time()), 100
                    )
            except (RedisError, OSError) as exc:
                _check_cancelled()
                _log.warning("retry promotion failed", error=repr(exc))

    async def _heartbeat(self) -> None:
        while True:
            await asyncio.sleep(_HEARTBEAT)
            try:
                await self._beat(list(self._replicas.values()))
            except (RedisError, OSError) as exc:
                _check_cancelled()
                _log.warning("heartbeat failed", error=repr(exc))

    async def _beat(self, reps: list[_Replica]) -> None:
        if not reps:
            return
        now = time.time()
        pipe = self._redis.pipeline(transaction=False)
        for rep in reps:
            beat = _ReplicaBeat(
                rep.agent.state.value, rep.assigned, rep.agent.concurrency, self._node_id, now
            )
            pipe.hset(
                C.replicas_key(rep.role, self.prefix),
                rep.agent.agent_id,
                msgspec.msgpack.encode(beat),
            )
        await pipe.execute()

    async def _inbox_reader(self, last: bytes) -> None:
        assert self._clients is not None
        failures = 0
        last_sweep = time.monotonic()
        while True:
            _check_cancelled()
            try:
                reply = await self._blocking.xread(
                    {self._inbox: last}, count=1000, block=self._block_ms
                )
                failures = 0
            except (RedisError, OSError) as exc:
                _check_cancelled()
                failures += 1
                _log.warning("inbox read failed", error=repr(exc))
                await asyncio.sleep(min(2.0, 0.05 * 2 ** min(failures, 6)))
                continue
            for _key, items in reply or ():
                for entry_id, fields in items:
                    last = entry_id
                    self._on_result(fields)
            if self._pending and time.monotonic() - last_sweep > 2.0:
                last_sweep = time.monotonic()
                await self._sweep()

    def _on_result(self, fields: dict[bytes, bytes]) -> None:
        data = fields.get(b"r")
        try:
            if data is None:
                raise DecodeError("no record field")
            record = _RECORD_DECODER.decode(data)
        except (DecodeError, msgspec.DecodeError, msgspec.ValidationError) as exc:
            REJECTED.labels(reason="malformed_result").inc()
            _log.warning("rejected inbox entry", error=repr(exc))
            return
        if not record.final:
            return
        self._resolve(record)

    def _resolve(self, record: TaskRecord) -> None:
        self._untrack(record.task_id)
        for fut in self._waiters.pop(record.task_id, ()):
            if not fut.done():
                fut.set_result(record)

    async def _sweep(self) -> None:
        # Results are notes in a stream that a server restart may have lost:
        # the ledger is the truth, so poll it for tasks waiting a while.
        ledger = self.ledger
        ids = list(self._pending)[:5000]
        try:
            pipe = self._redis.pipeline(transaction=False)
            for task_id in ids:
                pipe.hgetall(ledger.key(task_id))
            raws = await pipe.execute()
        except (RedisError, OSError) as exc:
            _check_cancelled()
            _log.warning("ledger sweep failed", error=repr(exc))
            return
        for raw in raws:
            if raw:
                record = record_from_hash(raw)
                if record.final:
                    self._resolve(record)

    @property
    def _inbox(self) -> str:
        return C.inbox_stream(self._node_id, self.prefix)

    # -- results ----------------------------------------------------------
    async def wait(self, task_id: str, *, timeout: float | None = None) -> TaskRecord:
        fut: asyncio.Future[TaskRecord] = asyncio.get_running_loop().create_future()
        self._waiters.setdefault(task_id, []).append(fut)
        try:
            async with asyncio.timeout(timeout):
                if task_id in self._pending:
                    # Ours and not finished: the inbox reader resolves ``fut``
                    # (or the ledger sweep does, should the note be lost).
                    return await fut
                rec = await self._get_record(task_id)
                if rec is None:
                    raise KeyError(task_id)
                if rec.final:
                    return rec
                if task_id not in self._pending and rec.recipient:
                    # Submitted elsewhere (or before a restart): poll the
                    # ledger besides listening to our inbox.
                    return await self._poll(task_id, fut)
                return await fut
        except TimeoutError:
            raise SwarmTimeout(f"task {task_id} not finished within {timeout}s") from None
        finally:
            waiters = self._waiters.get(task_id)
            if waiters and fut in waiters:
                waiters.remove(fut)
                if not waiters:
                    del self._waiters[task_id]

    async def _get_record(self, task_id: str) -> TaskRecord | None:
        key = self.ledger.key(task_id)
        (raw,) = await self._batch.call(lambda pipe: pipe.hgetall(key))
        if isinstance(raw, Exception):
            raise raw
        return record_from_hash(raw) if raw else None

    async def _poll(self, task_id: str, fut: asyncio.Future[TaskRecord]) -> TaskRecord:
        delay = 0.05
        while True:
            done, _ = await asyncio.wait({fut}, timeout=delay)
            if done:
                return fut.result()
            rec = await self._get_record(task_id)
            if rec is not None and rec.final:
                return rec
            delay = min(1.0, delay * 2)

    async def send(
        self,
        message: Message,
        *,
        to: str = "",
        sender: str,
        timeout: float | None = None,
        priority: int = 0,
        max_attempts: int | None = None,
        idempotency_key: str | None = None,
    ) -> Any:
        env = task_envelope(
            self._codec,
            message,
            sender=sender,
            to=to,
            priority=priority,
            max_attempts=max_attempts or self._retry.max_attempts,
            idempotency_key=idempotency_key,
            reply_to=self._node_id,
        )
        task_id = await self.submit(env)
        return result_of(self._codec, await self.wait(task_id, timeout=timeout))

    # -- broadcast --------------------------------------------------------
    async def publish(self, topic: str, message: Message, *, sender: str) -> None:
        if self._broadcaster is None:
            raise RuntimeClosed("runtime is not started")
        env = broadcast_envelope(self._codec, topic, message, sender=sender)
        await self._broadcaster.publish(C.channel_name(topic, self.prefix), env)

    async def subscribe(self, topic: str, callback: EventCallback) -> Subscription:
        if self._broadcaster is None:
            raise RuntimeClosed("runtime is not started")
        return await self._broadcaster.subscribe(C.channel_name(topic, self.prefix), callback)

    def _event_callback(self, rep: _Replica) -> EventCallback:
        async def deliver(env: Envelope) -> None:
            if env.kind is Kind.EVENT and rep.agent.handles(env.type) and not rep.dead:
                with handler_span(env, rep.agent.agent_id):
                    await rep.agent.dispatch(env, TaskContext(rep.context, env), self._codec)

        return deliver

    async def _on_command(self, env: Envelope) -> None:
        try:
            cmd = self._codec.decode_payload(env, Command)
        except DecodeError as exc:
            REJECTED.labels(reason="malformed_command").inc()
            _log.warning("rejected command", error=str(exc))
            return
        for rep in list(self._replicas.values()):
            action = rep.agent.obey(cmd)
            if action is None:
                continue
            _log.info("command", action=action.value, agent_id=rep.agent.agent_id)
            if action is CommandAction.RESUME:
                rep.wake.set()
            elif action is CommandAction.DRAIN:
                await self._return_queued(rep)
            elif action is CommandAction.SHUTDOWN:
                await self.unregister(rep.agent.agent_id, drain=True)

    # -- dead letters and introspection -------------------------------------
    async def dead_letters(self, *, limit: int = 100) -> list[DeadLetter]:
        out: list[DeadLetter] = []
        for role in sorted(await self._known_roles()):
            for _entry_id, fields in await self._redis.xrange(
                C.dead_letter_stream(role, self.prefix), count=limit
            ):
                try:
                    env = self._codec.decode(fields[b"e"])
                except (KeyError, DecodeError, MessageTooLarge):
                    REJECTED.labels(reason="malformed_dead_letter").inc()
                    continue
                out.append(
                    DeadLetter(
                        envelope=env,
                        error=fields.get(b"err", b"").decode(),
                        failed_at=float(fields.get(b"at", b"0")),
                    )
                )
        out.sort(key=lambda dl: dl.failed_at)
        return out[:limit]

    async def redrive(self, task_id: str) -> bool:
        for role in await self._known_roles():
            dead = C.dead_letter_stream(role, self.prefix)
            for entry_id, fields in await self._redis.xrange(dead):
                try:
                    env = self._codec.decode(fields[b"e"])
                except (KeyError, DecodeError, MessageTooLarge):
                    continue
                if env.id != task_id:
                    continue
                env = msgspec.structs.replace(env, attempt=1)
                if env.recipient.startswith("agent:"):
                    stream = C.agent_stream(role, env.recipient[6:], self.prefix)
                else:
                    stream = C.task_stream(role, band_of(env.priority), self.prefix)
                if env.reply_to == self._node_id:
                    self._pending[env.id] = env
                    self._idle.clear()
                await self.ledger.update(task_id, TaskState.QUEUED, attempts=0)
                moved = await self._redis.eval(
                    REDRIVE, 2, dead, stream, entry_id, self._codec.encode(env)
                )
                if not moved:
                    self._untrack(env.id)
                return bool(moved)
        return False

    async def _known_roles(self) -> set[str]:
        raw = await self._redis.hkeys(C.directory_key(self.prefix))
        return {r.decode() for r in raw} | self._roles_seen

    async def directory(self) -> dict[str, RoleInfo]:
        return await self._directory_snapshot(fresh=True)

    async def _directory_snapshot(self, *, fresh: bool) -> dict[str, RoleInfo]:
        if not fresh and self._dir_cache is not None and time.monotonic() - self._dir_at < 0.5:
            return self._dir_cache
        # One read in flight at a time: a burst of submits shares it.
        async with self._dir_lock:
            if not fresh and self._dir_cache is not None and time.monotonic() - self._dir_at < 0.5:
                return self._dir_cache
            return await self._read_directory()

    async def _read_directory(self) -> dict[str, RoleInfo]:
        now = time.monotonic()
        roles = await self._redis.hgetall(C.directory_key(self.prefix))
        names = sorted(r.decode() for r in roles)
        pipe = self._redis.pipeline(transaction=False)
        for name in names:
            pipe.hgetall(C.replicas_key(name, self.prefix))
        beats = await pipe.execute() if names else []
        wall = time.time()
        out: dict[str, RoleInfo] = {}
        for name, raw in zip(names, beats, strict=True):
            replicas = []
            for agent_id, blob in raw.items():
                try:
                    beat = msgspec.msgpack.decode(blob, type=_ReplicaBeat)
                except (msgspec.DecodeError, msgspec.ValidationError):
                    REJECTED.labels(reason="malformed_heartbeat").inc()
                    continue
                if wall - beat.at > _STALE_AFTER:
                    continue
                replicas.append(
                    ReplicaInfo(
                        agent_id=agent_id.decode(),
                        state=beat.state,
                        inflight=beat.inflight,
                        capacity=beat.capacity,
                    )
                )
            local = {r.agent.agent_id: r for r in self._replicas.values() if r.role == name}
            replicas = [r for r in replicas if r.agent_id not in local]
            replicas += [
                ReplicaInfo(
                    agent_id=agent_id,
                    state=r.agent.state.value,
                    inflight=r.assigned,
                    capacity=r.agent.concurrency,
                )
                for agent_id, r in local.items()
            ]
            replicas.sort(key=lambda r: r.agent_id)
            out[name] = RoleInfo(
                role=name,
                types=frozenset(roles[name.encode()].decode().split()),
                replicas=tuple(replicas),
            )
        self._dir_cache, self._dir_at = out, now
        return out

    def agent(self, agent_id: str) -> Agent:
        """Return a locally registered agent by id."""
        return self._replicas[agent_id].agent

    def agents(self) -> list[Agent]:
        """Return every locally registered agent."""
        return [rep.agent for rep in self._replicas.values()]
