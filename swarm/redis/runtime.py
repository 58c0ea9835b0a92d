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
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, Protocol

import msgspec
import structlog
from redis.exceptions import RedisError

from swarm import constants as C
from swarm.agent.base import AgentState
from swarm.agent.context import AgentContext
from swarm.agent.shared import SharedState
from swarm.codec import Codec
from swarm.contract import event_callback, obey
from swarm.envelopes import broadcast_envelope, task_envelope
from swarm.errors import (
    ConfigError,
    DecodeError,
    MessageTooLarge,
    RuntimeClosed,
    SwarmTimeout,
    TransportError,
)
from swarm.history.settings import HistorySettings
from swarm.history.store import LiveTasks, PostgresHistory, TaskHistory
from swarm.history.writer import HistoryWriter
from swarm.ledger import TaskRecord, TaskState
from swarm.messages import Envelope, Message, new_id
from swarm.metrics import REJECTED
from swarm.redis.cancel import cancel_queued
from swarm.redis.connections import AnyRedis, RedisClients
from swarm.redis.consumer import Consumer
from swarm.redis.core import BANDS, Core, Replica
from swarm.redis.directory import Directory
from swarm.redis.errors import CLIENT_ERRORS, mapped, transport_error
from swarm.redis.history import RedisHistory
from swarm.redis.intake import Intake
from swarm.redis.ledger import RedisLedger
from swarm.redis.queues import QueueStats, read_queues
from swarm.redis.reaper import Reaper
from swarm.redis.results import INBOX_KEEP, Results
from swarm.redis.settings import RedisSettings
from swarm.redis.settle import Settler
from swarm.redis.streams import REDRIVE, band_of, ensure_group
from swarm.retry import RetryPolicy
from swarm.runtime import DeadLetter, EventCallback, RoleInfo, Subscription, result_of

if TYPE_CHECKING:
    from swarm.agent.base import Agent

__all__ = ["Broadcaster", "RedisRuntime"]

_log = structlog.get_logger("swarm.redis.runtime")


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


class RedisRuntime:
    """Runs agents against Redis with at-least-once task delivery across processes.

    Composed of parts that each own one concern: :class:`~swarm.redis.intake.Intake`
    (submission), :class:`~swarm.redis.consumer.Consumer` (reading and
    running), :class:`~swarm.redis.settle.Settler` (outcomes),
    :class:`~swarm.redis.reaper.Reaper` (reclaim, retries, trimming),
    :class:`~swarm.redis.results.Results` (inbox and waiters) and
    :class:`~swarm.redis.directory.Directory` (roles and heartbeats).

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
        ledger_ttl: Seconds a finished task's record stays in Redis (default:
            ``history.retention``).
        block_time: Seconds one blocking stream read waits.
        history: Retention of finished records, inbox bounds and the
            PostgreSQL task history (default: no history table, records
            kept :data:`~swarm.history.DEFAULT_RETENTION` seconds).
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
        ledger_ttl: int | None = None,
        block_time: float | None = None,
        fence: str | None = None,
        history: HistorySettings | None = None,
    ) -> None:
        if visibility_timeout <= 0:
            raise ValueError("visibility_timeout must be positive")
        history = history if history is not None else HistorySettings()
        if clients is None and redis is not None:
            clients = RedisClients.from_clients(redis, settings=settings)
        settings = clients.settings if clients is not None else settings or RedisSettings()
        self._owns_clients = clients is None
        self.prefix = prefix if prefix is not None else settings.key_prefix
        self._core = Core(
            settings=settings,
            clients=clients,
            prefix=self.prefix,
            codec=codec or Codec(),
            retry_policy=retry_policy or RetryPolicy(),
            visibility_timeout=visibility_timeout,
            node_id=node_id or f"node-{new_id()[-10:]}",
            ledger_ttl=ledger_ttl if ledger_ttl is not None else history.retention_seconds,
            block_ms=int(
                1000 * (block_time if block_time is not None else min(settings.block_time, 2.0))
            ),
            history=history,
        )
        if self._core.block_ms * 2 > history.inbox_ttl_ms:
            raise ConfigError(
                f"inbox_ttl ({history.inbox_ttl}s) must be at least twice the block time: "
                "the inbox reader renews it between blocking reads"
            )
        self._store: PostgresHistory | None = None
        self.memory = memory
        self.discovery = discovery
        self.fence = fence
        self._broadcaster = broadcaster
        self._owns_broadcaster = broadcaster is None
        self._directory = Directory(self._core)
        self._results = Results(self._core)
        self._intake = Intake(self._core, self._directory, self._results, fence)
        self._settler = Settler(self._core)
        self._consumer = Consumer(self._core, self._settler)
        self._reaper = Reaper(self._core, self._consumer, self._directory, self._settler)
        self._started = False
        self._closed = False
        self._halting = False
        self._core.healthy = lambda: self.healthy

    # -- Runtime Protocol properties -------------------------------------
    @property
    def node_id(self) -> str:
        return self._core.node_id

    @property
    def codec(self) -> Codec:
        return self._core.codec

    @property
    def ledger(self) -> RedisLedger:
        return self._core.ledger

    @property
    def history(self) -> TaskHistory:
        """Finished tasks: the PostgreSQL history table, or (without one) what Redis retains.

        The task listing of the HTTP API reads this: ``await
        runtime.history.query(state="done", type="Ping", since=t, limit=50)``.
        """
        if self._store is not None:
            return self._store
        return RedisHistory(self.ledger)

    @property
    def live_tasks(self) -> LiveTasks:
        """Queued and running tasks: the records in Redis without a final state."""
        return RedisHistory(self.ledger)

    async def flush_history(self, timeout: float | None = None) -> bool:
        """Wait until the finished records settled here so far are in the history table.

        Returns False on timeout (PostgreSQL is down; the writer keeps trying).
        """
        writer = self._core.writer
        return True if writer is None else await writer.flushed(timeout)

    @property
    def retry_policy(self) -> RetryPolicy:
        return self._core.retry

    @retry_policy.setter
    def retry_policy(self, policy: RetryPolicy) -> None:
        self._core.retry = policy

    @property
    def visibility_timeout(self) -> float:
        """Seconds a delivery may run before it is taken back and redelivered."""
        return self._core.visibility_timeout

    @property
    def healthy(self) -> bool:
        """False while one of this process's background loops keeps failing.

        Heartbeats then report its replicas as ``unhealthy`` (see
        :class:`~swarm.tasks.TaskSet`), so the directory shows it.
        """
        bc = self._broadcaster
        return self._core.tasks.healthy and bool(getattr(bc, "healthy", True))

    @property
    def outstanding(self) -> int:
        """Tasks submitted through this runtime not yet in a final state."""
        return len(self._results.pending)

    @property
    def _redis(self) -> Any:
        return self._core.redis

    @property
    def shared_state(self) -> SharedState:
        """The home of agent state that must be one per swarm (``ctx.shared_state``)."""
        return SharedState(redis=self._core.redis, prefix=self.prefix)

    @property
    def _replicas(self) -> dict[str, Replica]:
        return self._core.replicas

    # -- lifecycle --------------------------------------------------------
    @mapped("starting the runtime")
    async def start(self) -> None:
        if self._started:
            return
        core = self._core
        clients = core.clients
        if clients is None:
            clients = await RedisClients.connect(core.settings)
        core.connected(clients)
        settings = core.history
        if settings.dsn is not None:
            self._store = PostgresHistory(settings)
            try:
                await self._store.start()
            except BaseException:
                self._store = None
                if self._owns_clients:
                    await clients.close()
                raise
            core.ledger.history = self._store
            core.writer = HistoryWriter(settings, sink=self._store.write)
        else:
            core.writer = HistoryWriter(settings, sink=None, evict=core.ledger.evict)
        if self._broadcaster is None:
            from swarm.redis.broadcast import RedisBroadcaster

            self._broadcaster = RedisBroadcaster(clients=clients, codec=core.codec)
        if self._owns_broadcaster:
            await self._broadcaster.start()
        self._started = True
        tasks = core.tasks
        tasks.supervise(core.batch.run, name="batcher")
        await core.redis.eval(INBOX_KEEP, 1, core.inbox, "", core.history.inbox_ttl_ms)
        last = await core.redis.xrevrange(core.inbox, count=1)
        self._results.position = last[0][0] if last else b"0-0"
        tasks.supervise(self._results.read_inbox, name="inbox")
        tasks.supervise(self._reaper.reap, name="reaper")
        tasks.supervise(self._reaper.promote, name="promoter")
        tasks.supervise(core.writer.run, name="history")
        tasks.supervise(self._directory.heartbeat, name="heartbeat")
        await self.subscribe(C.CHANNEL_QUEEN_COMMANDS, self._on_command)

    async def stop(self, *, drain: bool = True, timeout: float | None = None) -> list[Envelope]:
        if self._halting or not self._started:
            self._closed = self._intake.closed = True
            return []
        self._closed = self._intake.closed = True
        deadline = None if timeout is None else time.monotonic() + timeout
        results = self._results
        if drain:
            try:
                async with asyncio.timeout(timeout):
                    await results.idle.wait()
            except TimeoutError:
                _log.warning("drain timed out", outstanding=len(results.pending))
        self._halting = True
        for rep in list(self._replicas.values()):
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            if drain:
                await self._drain(rep, left)
            await self._remove(rep, reason="shutdown", requeue=True)
        leftovers = list(results.pending.values())
        results.cancel_waiters()
        writer = self._core.writer
        left = 5.0 if deadline is None else max(1.0, deadline - time.monotonic())
        if writer is not None and not await writer.flushed(left):
            _log.warning("task history not flushed", buffered=writer.buffered)
        await self._core.tasks.close()
        if self._store is not None:
            await self._store.close()
        if self._broadcaster is not None and self._owns_broadcaster:
            await self._broadcaster.stop()
        if self._owns_clients and self._core.clients is not None:
            await self._core.clients.close()
        return leftovers

    @mapped("stopping the runtime")
    async def stop_when_idle(self, *, timeout: float | None = None) -> None:
        try:
            async with asyncio.timeout(timeout):
                await self._results.idle.wait()
        except TimeoutError:
            raise SwarmTimeout(f"{self.outstanding} tasks still outstanding") from None
        await self.stop()

    # -- agents -----------------------------------------------------------
    @mapped("registering an agent")
    async def register(self, agent: Agent) -> None:
        if self._closed:
            raise RuntimeClosed("runtime is stopping")
        if not self._started:
            await self.start()
        if agent.agent_id in self._replicas:
            raise ValueError(f"agent id {agent.agent_id!r} is already registered")
        role = agent.role
        streams = [C.agent_stream(role, agent.agent_id, self.prefix)]
        streams += [C.task_stream(role, band, self.prefix) for band in BANDS]
        for stream in streams:
            await ensure_group(self._redis, stream, C.TASK_GROUP)
        await self._directory.advertise(role, set(agent.capabilities))
        ctx = AgentContext(
            runtime=self,
            agent_id=agent.agent_id,
            role=role,
            memory=self.memory,
            discovery=self.discovery,
        )
        await agent.startup(ctx)
        rep = Replica(agent=agent, context=ctx, streams=streams)
        rep.settled.set()
        self._consumer.start(rep)
        for topic in agent.subscriptions:
            rep.subscriptions.append(await self.subscribe(topic, event_callback(rep, self.codec)))
        self._replicas[agent.agent_id] = rep
        self._core.roles_seen.add(role)
        await self._directory.beat([rep])
        self._directory.invalidate()
        self._consumer.start_reader(rep)

    @mapped("unregistering an agent")
    async def unregister(self, agent_id: str, *, drain: bool = True) -> None:
        rep = self._replicas.get(agent_id)
        if rep is None:
            return
        if drain:
            await self._drain(rep, None)
        await self._remove(rep, reason="unregistered", requeue=True)

    @mapped("killing an agent")
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

    async def _drain(self, rep: Replica, limit: float | None) -> None:
        if rep.agent.state is not AgentState.FAILED:
            rep.agent.state = AgentState.DRAINING
        rep.wake.set()
        await self._consumer.stop_reader(rep)
        await self._consumer.return_queued(rep)
        try:
            async with asyncio.timeout(limit):
                await rep.settled.wait()
        except TimeoutError:
            _log.warning("agent drain timed out", agent_id=rep.agent.agent_id)

    async def _remove(self, rep: Replica, *, reason: str, requeue: bool) -> None:
        rep.dead = True
        agent_id = rep.agent.agent_id
        self._replicas.pop(agent_id, None)
        self._directory.invalidate()
        self._core.wake_role(rep.role)
        consumer = self._consumer
        await consumer.stop_reader(rep)
        if requeue:
            await consumer.return_queued(rep)
        for d in rep.inflight.values():
            d.interrupted = reason
        for w in rep.workers:
            w.cancel()
        await asyncio.gather(*rep.workers, return_exceptions=True)
        if requeue:
            await consumer.give_back(rep)
        for sub in rep.subscriptions:
            with contextlib.suppress(Exception):
                await sub.close()
        with contextlib.suppress(RedisError):
            await self._directory.withdraw(rep)
        if requeue:
            # A clean leave: nobody reads this agent's own stream any more.
            try:
                await self._reaper.bury(rep.role, agent_id, b"", "agent left")
            except (RedisError, OSError) as exc:
                _log.warning("could not delete the agent's stream", error=repr(exc))
        if rep.agent.state is not AgentState.FAILED:
            try:
                await rep.agent.shutdown()
            except Exception as exc:
                _log.warning("agent on_stop failed", agent_id=agent_id, error=repr(exc))

    # -- tasks and results --------------------------------------------------
    async def submit(self, envelope: Envelope) -> str:
        try:
            return await self._intake.submit(envelope)
        except CLIENT_ERRORS as exc:
            raise transport_error(exc, f"submitting task {envelope.id}") from exc

    @mapped("cancelling a task")
    async def cancel(self, task_id: str) -> bool:
        """End a task no agent has read yet as ``failed`` ("cancelled").

        Returns:
            Whether it was still waiting in its role's stream and is now
            cancelled; False once an agent read it (or it ended).
        """
        record = await self._core.ledger.get(task_id)
        if record is None:
            return False
        cancelled = await cancel_queued(self._core, record)
        if cancelled is None:
            return False
        self._results.resolve_final(cancelled)
        return True

    @mapped("waiting for a task")
    async def wait(self, task_id: str, *, timeout: float | None = None) -> TaskRecord:
        return await self._results.wait(task_id, timeout=timeout)

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
        core = self._core
        codec = core.codec
        # By position: cheaper than keywords on this path (see task_envelope).
        env = task_envelope(
            codec,
            message,
            sender,
            max_attempts or core.retry.max_attempts,
            to,
            priority,
            None,
            idempotency_key,
            core.node_id,
        )
        intake = self._intake
        results = self._results
        if timeout is None:
            # The common case, without a coroutine of its own: the task's
            # waiter is its only await (a store error fails it too).
            waiter = intake.queue_watched(env)
            if waiter is not None:
                try:
                    record = await waiter
                except BaseException:
                    results.forget(env.id, waiter)
                    raise
                # Resolved with a record: no longer registered.
                return result_of(codec, record)
        try:
            record = await results.submit_and_wait(
                env, intake.submit, timeout=timeout, queue=intake
            )
        except CLIENT_ERRORS as exc:
            raise transport_error(exc, f"sending task {env.id}") from exc
        return result_of(codec, record)

    # -- broadcast --------------------------------------------------------
    @mapped("publishing")
    async def publish(self, topic: str, message: Message, *, sender: str) -> None:
        if self._broadcaster is None:
            raise RuntimeClosed("runtime is not started")
        env = broadcast_envelope(self.codec, topic, message, sender=sender)
        await self._broadcaster.publish(C.channel_name(topic, self.prefix), env)

    @mapped("subscribing")
    async def subscribe(self, topic: str, callback: EventCallback) -> Subscription:
        if self._broadcaster is None:
            raise RuntimeClosed("runtime is not started")
        return await self._broadcaster.subscribe(C.channel_name(topic, self.prefix), callback)

    async def _on_command(self, env: Envelope) -> None:
        await obey(env, self.codec, self._replicas.values(), self)

    async def resume_replica(self, rep: Replica) -> None:
        """:class:`~swarm.contract.CommandTarget`: the replica reads again."""
        rep.wake.set()

    async def return_queued(self, rep: Replica) -> None:
        """:class:`~swarm.contract.CommandTarget`: hand back entries read but not started."""
        await self._consumer.return_queued(rep)

    # -- dead letters and introspection -------------------------------------
    @mapped("listing dead letters")
    async def dead_letters(self, *, limit: int = 100) -> list[DeadLetter]:
        out: list[DeadLetter] = []
        for role in sorted(await self._directory.known_roles()):
            for _entry_id, fields in await self._redis.xrange(
                C.dead_letter_stream(role, self.prefix), count=limit
            ):
                try:
                    env = self.codec.decode(fields[b"e"])
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

    @mapped("re-driving a dead letter")
    async def redrive(self, task_id: str) -> bool:
        for role in await self._directory.known_roles():
            dead = C.dead_letter_stream(role, self.prefix)
            for entry_id, fields in await self._redis.xrange(dead):
                try:
                    env = self.codec.decode(fields[b"e"])
                except (KeyError, DecodeError, MessageTooLarge):
                    continue
                if env.id != task_id:
                    continue
                env = msgspec.structs.replace(env, attempt=1)
                if env.recipient.startswith("agent:"):
                    stream = C.agent_stream(role, env.recipient[6:], self.prefix)
                else:
                    stream = C.task_stream(role, band_of(env.priority), self.prefix)
                # Only a dead record is re-queued: a re-drive racing this one
                # may have run the task already (a record that expired is
                # re-driven without one, as before).
                requeued = await self.ledger.requeue_dead(task_id)
                if requeued is False:
                    return False
                if env.reply_to == self.node_id:
                    self._results.track(env)
                moved = await self._redis.eval(
                    REDRIVE, 2, dead, stream, entry_id, self.codec.encode(env)
                )
                if not moved:
                    self._results.untrack(env.id)
                    if requeued:
                        # The dead letter went meanwhile: the record stays dead
                        # (and expires) rather than "queued" for ever.
                        await self.ledger.update(task_id, TaskState.DEAD)
                return bool(moved)
        return False

    @mapped("reading the directory")
    async def directory(self) -> dict[str, RoleInfo]:
        return await self._directory.snapshot(fresh=True)

    async def queues(self, roles: Iterable[str] | None = None) -> list[QueueStats]:
        """Depth, oldest waiting age, delayed retries and dead letters of each role's queues.

        Read from Redis now (every role in the directory unless ``roles`` is given).

        Raises:
            TransportError: Redis could not be read.
        """
        try:
            if roles is None:
                roles = await self._directory.known_roles()
            return await read_queues(
                self._redis, self._core.prefix, roles, cluster=self._core.cluster
            )
        except (RedisError, OSError) as exc:
            raise TransportError(f"could not read the queues: {exc}") from exc

    def agent(self, agent_id: str) -> Agent:
        """Return a locally registered agent by id."""
        return self._replicas[agent_id].agent

    def agents(self) -> list[Agent]:
        """Return every locally registered agent."""
        return [rep.agent for rep in self._replicas.values()]
