"""The embedded runtime: every agent in one process, with the Redis runtime's delivery contract.

Tasks wait in per-role priority heaps (and per-agent heaps for tasks aimed at
one agent id). A replica with free capacity is handed the best waiting task;
its worker coroutines run handlers, and only a handler's return acks the task.
A reaper interrupts deliveries that outlive the visibility timeout, exactly
where the Redis reaper would reclaim them, and hands them to another replica.

Example:
    >>> import asyncio
    >>> from swarm import Agent, InProcessRuntime, Message, handler
    >>> class Double(Message):
    ...     n: int
    >>> class Doubler(Agent):
    ...     @handler
    ...     async def double(self, msg: Double) -> int:
    ...         return msg.n * 2
    >>> async def demo():
    ...     runtime = InProcessRuntime()
    ...     await runtime.start()
    ...     await runtime.register(Doubler())
    ...     result = await runtime.send(Double(n=21), sender="me")
    ...     await runtime.stop()
    ...     return result
    >>> asyncio.run(demo())
    42
"""

from __future__ import annotations

import asyncio
import collections
import heapq
import itertools
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import msgspec
import structlog

from swarm import metrics as _metrics
from swarm import tracing
from swarm.agent.base import AgentState
from swarm.agent.context import AgentContext, TaskContext
from swarm.codec import Codec
from swarm.constants import CHANNEL_QUEEN_COMMANDS, DEFAULT_VISIBILITY_TIMEOUT
from swarm.envelopes import broadcast_envelope, task_envelope
from swarm.errors import (
    ConfigError,
    DecodeError,
    EncodeError,
    MessageTooLarge,
    NoRouteError,
    Reject,
    RuntimeClosed,
    SwarmTimeout,
)
from swarm.ledger import FINAL_STATES, InMemoryLedger, Ledger, TaskRecord, TaskState
from swarm.logging import current_task_id
from swarm.messages import Command, CommandAction, Envelope, Kind, Message, new_id
from swarm.metrics import REJECTED, TASK_RETRIES, TASKS_DEAD, role_meters
from swarm.retry import RetryPolicy
from swarm.routing import Router
from swarm.runtime import (
    DeadLetter,
    EventCallback,
    QueueStats,
    ReplicaInfo,
    RoleInfo,
    result_of,
)
from swarm.tasks import TaskSet
from swarm.tracing import handler_span

if TYPE_CHECKING:
    from swarm.agent.base import Agent
    from swarm.history.store import LiveTasks, TaskHistory

__all__ = ["InProcessRuntime"]

_log = structlog.get_logger("swarm.runtime")
_set_task_id = current_task_id.set

# A heap entry: (-priority, sequence, envelope, replica to avoid). The
# sequence keeps FIFO order within a priority and makes entries comparable.
_Entry = tuple[int, int, Envelope, str | None]

# Bytes an envelope's fields may add to its payload, short of long ids or keys;
# past that the whole envelope is encoded to check its size exactly.
_HEADER_ALLOWANCE = 2048

_ACCEPTING = frozenset({AgentState.READY, AgentState.BUSY})
# Enum members read on the hot path: ``AgentState.READY`` goes through the enum
# metaclass's ``__getattr__`` hook (~0.1 us); a module global does not.
_READY = AgentState.READY
_BUSY = AgentState.BUSY
_DONE = TaskState.DONE
# Futures of the hot path are made directly, bound to the running loop:
# ``loop.create_future()`` is a Python-level method of the stdlib loops that
# does just this (uvloop's too), and a ``loop=`` keyword costs a keyword parse
# in C; ``Future()`` takes the running loop at C speed.
_Future = asyncio.Future
_NONE_RESULT = b"\xc0"  # msgpack nil: the result of a handler that returned None
# A handler the worker calls itself: (function, payload decode function).
_PlainHandler = tuple[Callable[..., Any], Callable[[Any], Any]]
_MISS: Any = object()
# What a payload decode function raises; Agent.dispatch then raises the DecodeError.
_DECODE_ERRORS = (msgspec.DecodeError, msgspec.ValidationError)


@dataclass(slots=True, eq=False)
class _Delivery:
    """A worker's delivery in flight: one per worker, reused for every task it runs."""

    worker: asyncio.Task[Any]
    envelope: Envelope | None = None
    # The reaper's sweep count when the lease began: the lease is measured
    # from the sweep after it, so the hot path reads no clock.
    tick: int = 0
    interrupted: str | None = None


@dataclass(slots=True, eq=False)
class _Role:
    name: str
    types: set[str] = field(default_factory=set)
    replicas: dict[str, _Replica] = field(default_factory=dict)
    backlog: list[_Entry] = field(default_factory=list)
    # The replica when there is exactly one (the common embedded case): _offer
    # then picks it without iterating the dict.
    sole: _Replica | None = None

    def replicas_changed(self) -> None:
        """Recompute :attr:`sole` after a replica joined or left."""
        self.sole = next(iter(self.replicas.values())) if len(self.replicas) == 1 else None


@dataclass(slots=True, eq=False)
class _Replica:
    agent: Agent
    role: _Role
    context: AgentContext
    # Assigned, not yet started; idle workers park on a future instead of a
    # Queue, which halves the wake-up cost per task.
    mailbox: collections.deque[Envelope] = field(default_factory=collections.deque)
    idle: collections.deque[asyncio.Future[Envelope]] = field(default_factory=collections.deque)
    assigned: int = 0
    # One per worker, reused; leased while its envelope is set. A list walked by
    # the reaper rather than a dict of leases: no insert and delete per task.
    deliveries: list[_Delivery] = field(default_factory=list)
    workers: list[asyncio.Task[None]] = field(default_factory=list)
    # Created only while someone waits for the replica to finish its work
    # (unregister with drain), so the hot path does not touch an Event.
    settled: asyncio.Event | None = None
    dead: bool = False
    # Per task type: the handler and payload decode function the workers call
    # directly (no dispatch and decode_payload frames), or None to go through
    # Agent.dispatch. Filled on first use.
    handlers: dict[str, _PlainHandler | None] = field(default_factory=dict)
    subscriptions: list[_Subscription] = field(default_factory=list)

    @property
    def free(self) -> int:
        return self.agent.concurrency - self.assigned


class _Subscription:
    """One topic subscriber: a bounded queue drained by an owned task."""

    def __init__(self, runtime: InProcessRuntime, topic: str, callback: EventCallback) -> None:
        self._runtime = runtime
        self.topic = topic
        self.callback = callback
        self.queue: asyncio.Queue[Envelope] = asyncio.Queue(maxsize=runtime.subscriber_buffer)
        self.task = runtime._tasks.spawn(self._run(), name=f"sub:{topic}")

    async def _run(self) -> None:
        while True:
            env = await self.queue.get()
            try:
                await self.callback(env)
            except Exception as exc:
                # A broken subscriber must not take the topic down with it.
                REJECTED.labels(reason="subscriber_error").inc()
                _log.warning("subscriber failed", topic=self.topic, type=env.type, error=repr(exc))

    async def close(self) -> None:
        subs = self._runtime._topics.get(self.topic)
        if subs is not None and self in subs:
            subs.remove(self)
        self.task.cancel()


class InProcessRuntime:
    """Runs agents in this process with at-least-once task delivery.

    Args:
        ledger: Where task states are recorded (default: in memory).
        codec: Message codec (default: 1 MiB limit).
        retry_policy: Backoff between attempts, and the default attempt bound.
        visibility_timeout: Seconds a delivery may run before it is taken
            back and redelivered.
        node_id: Id of this runtime (default: random).
        subscriber_buffer: Events queued per subscriber before new ones are
            dropped (broadcast is at-most-once).
        memory: Memory coordinator handed to agents' contexts.
        discovery: Service registry handed to agents' contexts.
    """

    def __init__(
        self,
        *,
        ledger: Ledger | None = None,
        codec: Codec | None = None,
        retry_policy: RetryPolicy | None = None,
        visibility_timeout: float = DEFAULT_VISIBILITY_TIMEOUT,
        node_id: str | None = None,
        subscriber_buffer: int = 10_000,
        memory: Any = None,
        discovery: Any = None,
    ) -> None:
        if visibility_timeout <= 0:
            raise ValueError("visibility_timeout must be positive")
        self._ledger: Ledger = ledger if ledger is not None else InMemoryLedger()
        # The in-memory ledger's synchronous methods skip a coroutine per call
        # on the hot path; any other ledger is awaited.
        self._fast_ledger = self._ledger if isinstance(self._ledger, InMemoryLedger) else None
        # The shortcuts that skip ``submit`` and ``wait`` (the intake's synchronous
        # submit, ``wait_result``) are off in a subclass that overrides them.
        cls = type(self)
        self._sync_ok = cls.submit is InProcessRuntime.submit
        # wait_result's shortcut: the in-memory ledger's record lookup, at C level.
        self._fast_get: Callable[[str], TaskRecord | None] | None = (
            self._fast_ledger.record_getter()
            if self._fast_ledger is not None and cls.wait is InProcessRuntime.wait
            else None
        )
        self._codec = codec or Codec()
        self._retry = retry_policy or RetryPolicy()
        self.visibility_timeout = visibility_timeout
        self._node_id = node_id or f"node-{new_id()[-10:]}"
        self.subscriber_buffer = subscriber_buffer
        self.memory = memory
        self.discovery = discovery
        self._router = Router()
        self._roles: dict[str, _Role] = {}
        # Roles by recipient ("role:<name>"): no slicing and hashing of a new
        # string per task. Roles are never removed, so entries stay valid.
        self._by_recipient: dict[str, _Role] = {}
        self._replicas: dict[str, _Replica] = {}
        self._direct: dict[str, list[_Entry]] = {}
        self._seq = itertools.count()
        # The first waiter of each task, and (rarely) further concurrent ones.
        self._waiters: dict[str, asyncio.Future[TaskRecord]] = {}
        self._more_waiters: dict[str, list[asyncio.Future[TaskRecord]]] = {}
        self._tick = 0  # reaper sweeps so far
        self._retries: dict[str, tuple[asyncio.TimerHandle, Envelope]] = {}
        self._dead: dict[str, DeadLetter] = {}
        self._topics: dict[str, list[_Subscription]] = {}
        self._outstanding = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self._tasks = TaskSet(f"runtime:{self._node_id}")
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
    def ledger(self) -> Ledger:
        return self._ledger

    @property
    def history(self) -> TaskHistory:
        """Finished tasks: those the in-memory ledger keeps (bounded by count and age).

        The same :class:`~swarm.history.TaskHistory` as the Redis runtime's, so
        the HTTP API lists tasks one way: ``await runtime.history.query(state="done")``.

        Raises:
            ConfigError: A ledger of another kind with no ``history`` of its own.
        """
        # Imported here: the history package pulls in asyncpg, which the
        # embedded hot path never needs.
        from swarm.history.memory import LedgerHistory
        from swarm.history.store import TaskHistory

        if self._fast_ledger is not None:
            return LedgerHistory(self._fast_ledger)
        own = getattr(self._ledger, "history", None)
        if not isinstance(own, TaskHistory):
            raise ConfigError(
                f"the {type(self._ledger).__name__} ledger keeps no queryable task history"
            )
        return own

    @property
    def live_tasks(self) -> LiveTasks:
        """Queued and running tasks, newest first (:class:`~swarm.history.LiveTasks`).

        Raises:
            ConfigError: A ledger of another kind, which cannot be listed.
        """
        from swarm.history.memory import LedgerHistory

        if self._fast_ledger is None:
            raise ConfigError(f"the {type(self._ledger).__name__} ledger cannot list live tasks")
        return LedgerHistory(self._fast_ledger)

    @property
    def retry_policy(self) -> RetryPolicy:
        return self._retry

    @retry_policy.setter
    def retry_policy(self, policy: RetryPolicy) -> None:
        # Live config may swap the policy; it applies to the next failure.
        self._retry = policy

    # -- lifecycle --------------------------------------------------------
    async def start(self) -> None:
        if self._started:
            return
        self._started = True
        self._tasks.spawn(self._reaper(), name="reaper")
        await self.subscribe(CHANNEL_QUEEN_COMMANDS, self._on_command)

    async def stop(self, *, drain: bool = True, timeout: float | None = None) -> list[Envelope]:
        if self._halting:
            return []
        self._closed = True
        if drain and self._started:
            try:
                async with asyncio.timeout(timeout):
                    await self._idle.wait()
            except TimeoutError:
                _log.warning("drain timed out", outstanding=self._outstanding)
        self._halting = True
        for rep in list(self._replicas.values()):
            await self._remove(rep, reason="shutdown")
        leftovers = [e[2] for role in self._roles.values() for e in role.backlog]
        leftovers += [e[2] for heap in self._direct.values() for e in heap]
        for handle, env in self._retries.values():
            handle.cancel()
            leftovers.append(env)
        self._retries.clear()
        for role in self._roles.values():
            role.backlog.clear()
        self._direct.clear()
        await self._tasks.close()
        self._topics.clear()
        return leftovers

    async def stop_when_idle(self, *, timeout: float | None = None) -> None:
        try:
            async with asyncio.timeout(timeout):
                await self._idle.wait()
        except TimeoutError:
            raise SwarmTimeout(f"{self._outstanding} tasks still outstanding") from None
        await self.stop()

    @property
    def outstanding(self) -> int:
        """Accepted tasks not yet in a final state."""
        return self._outstanding

    # -- agents -----------------------------------------------------------
    async def register(self, agent: Agent) -> None:
        if self._closed:
            raise RuntimeClosed("runtime is stopping")
        if agent.agent_id in self._replicas:
            raise ValueError(f"agent id {agent.agent_id!r} is already registered")
        role = self._roles.get(agent.role)
        if role is None:
            role = self._roles[agent.role] = _Role(agent.role)
            self._by_recipient[f"role:{agent.role}"] = role
        role.types.update(agent.capabilities)
        ctx = AgentContext(
            runtime=self,
            agent_id=agent.agent_id,
            role=agent.role,
            memory=self.memory,
            discovery=self.discovery,
        )
        await agent.startup(ctx)
        rep = _Replica(agent=agent, role=role, context=ctx)
        for i in range(agent.concurrency):
            rep.workers.append(self._tasks.spawn(self._worker(rep), name=f"{agent.agent_id}:{i}"))
        for topic in agent.subscriptions:
            rep.subscriptions.append(await self.subscribe(topic, self._event_callback(rep)))
        role.replicas[agent.agent_id] = rep
        role.replicas_changed()
        self._replicas[agent.agent_id] = rep
        self._fill(rep)
        self._pump(role)

    async def unregister(self, agent_id: str, *, drain: bool = True) -> None:
        rep = self._replicas.get(agent_id)
        if rep is None:
            return
        if drain:
            rep.agent.state = AgentState.DRAINING
            self._return_mailbox(rep)
            if rep.assigned:
                rep.settled = asyncio.Event()
                await rep.settled.wait()
        await self._remove(rep, reason="unregistered")

    async def kill(self, agent_id: str) -> None:
        """Simulate a crash of one agent: its in-flight tasks are redelivered elsewhere.

        For tests and chaos drills; the agent's ``on_stop`` does not run.
        """
        rep = self._replicas.get(agent_id)
        if rep is None:
            raise KeyError(agent_id)
        rep.agent.state = AgentState.FAILED
        await self._remove(rep, reason="agent crashed")

    async def _remove(self, rep: _Replica, *, reason: str) -> None:
        rep.dead = True
        self._replicas.pop(rep.agent.agent_id, None)
        rep.role.replicas.pop(rep.agent.agent_id, None)
        rep.role.replicas_changed()
        self._return_mailbox(rep)
        for d in rep.deliveries:
            if d.envelope is not None:
                d.interrupted = reason
        for w in rep.workers:
            w.cancel()
        await asyncio.gather(*rep.workers, return_exceptions=True)
        for sub in rep.subscriptions:
            await sub.close()
        if rep.agent.state is not AgentState.FAILED:
            try:
                await rep.agent.shutdown()
            except Exception as exc:
                _log.warning("agent on_stop failed", agent_id=rep.agent.agent_id, error=repr(exc))
        if not self._halting:
            self._pump(rep.role)

    def _return_mailbox(self, rep: _Replica) -> None:
        # Assigned but not started: back to the queue with the attempt unchanged.
        while rep.mailbox:
            env = rep.mailbox.popleft()
            rep.assigned -= 1
            self._enqueue(env, avoid=rep.agent.agent_id)
        if rep.assigned == 0 and rep.settled is not None:
            rep.settled.set()

    # -- submission -------------------------------------------------------
    async def submit(self, envelope: Envelope) -> str:
        if self._fast_ledger is not None:
            return self.submit_nowait(envelope)
        env = self._admit(envelope)
        record = TaskRecord.for_task(env)
        stored = await self._ledger.create(record)
        if stored is not record:
            return stored.task_id  # the idempotency key's first task
        self._outstanding += 1
        if self._outstanding == 1:
            self._idle.clear()
        self._enqueue(env)
        return env.id

    def submit_nowait(self, envelope: Envelope) -> str:
        """Synchronous :meth:`submit` for the in-memory ledger: no coroutine per task.

        The Queen's intake uses it when :attr:`sync_submit` is set.

        Raises:
            RuntimeClosed, NoRouteError, MessageTooLarge, EncodeError.
            TypeError: The ledger is not the in-memory one (it must be awaited).
        """
        fast = self._fast_ledger
        if fast is None:
            raise TypeError("submit_nowait needs the in-memory ledger; await submit()")
        env = envelope
        role = self._by_recipient.get(env.recipient)
        # The common case (open, a known role that handles the type, a small
        # payload) needs none of _admit's checks; anything else goes through it.
        if (
            role is None
            or self._closed
            or env.type not in role.types
            or len(env.payload) + _HEADER_ALLOWANCE > self._codec.max_bytes
        ):
            env = self._admit(env)
            role = None  # _admit may have routed it: _enqueue looks the role up
        # TaskRecord.for_task, inline: a call less per task.
        record = TaskRecord(
            task_id=env.id,
            type=env.type,
            recipient=env.recipient,
            priority=env.priority,
            idempotency_key=env.idempotency_key,
            # In field order (created_at before epoch): msgspec matches each
            # keyword fastest where the previous one left off.
            created_at=env.created_at or time.time(),
            epoch=env.epoch,
        )
        # As in submit, inline: a call less per task.
        stored = fast.create_nowait(record)
        if stored is not record:
            return stored.task_id
        self._outstanding += 1
        if self._outstanding == 1:
            self._idle.clear()
        if role is None:
            self._enqueue(env)
        else:
            self._offer(role, env, None)
        return env.id

    @property
    def sync_submit(self) -> Callable[[Envelope], str] | None:
        """:meth:`submit_nowait` when the ledger allows it, else None (await :meth:`submit`).

        None too in a subclass that overrides :meth:`submit`, so that its override runs.
        """
        return self.submit_nowait if self._fast_ledger is not None and self._sync_ok else None

    def _admit(self, envelope: Envelope) -> Envelope:
        """Check that a task can be accepted; returns it routed (recipient resolved)."""
        if self._closed and not self._is_local_sender(envelope.sender):
            raise RuntimeClosed("runtime is stopping; no new tasks are accepted")
        env = envelope
        recipient = env.recipient
        role = self._by_recipient.get(recipient)
        if role is not None:
            if env.type not in role.types:
                self._router.resolve(env.type, recipient, self._directory_now())  # raises
        elif recipient.startswith("role:"):
            self._router.resolve(env.type, recipient, self._directory_now())  # raises
        elif not recipient.startswith("agent:"):
            recipient = self._router.resolve(env.type, recipient, self._directory_now())
            env = msgspec.structs.replace(env, recipient=recipient)
        elif env.recipient[6:] not in self._replicas and env.recipient[6:] not in self._direct:
            raise NoRouteError(f"no agent with id {env.recipient[6:]!r}")
        # Size and encodability are checked here so that errors surface at the
        # sender. The payload was size-checked when encoded; the whole envelope
        # is encoded only when its headers could tip it over the limit.
        if len(env.payload) + _HEADER_ALLOWANCE > self._codec.max_bytes:
            self._codec.encode(env)
        return env

    def _is_local_sender(self, sender: str) -> bool:
        return sender in self._replicas

    def _enqueue(self, env: Envelope, avoid: str | None = None) -> None:
        role = self._by_recipient.get(env.recipient)
        if role is None:
            if not env.recipient.startswith("agent:"):
                raise KeyError(env.recipient)  # submit routed it; unreachable
            agent_id = env.recipient[6:]
            entry: _Entry = (-env.priority, next(self._seq), env, avoid)
            heapq.heappush(self._direct.setdefault(agent_id, []), entry)
            rep = self._replicas.get(agent_id)
            if rep is not None and not self._halting:
                self._fill(rep)
            return
        self._offer(role, env, avoid)

    def _offer(self, role: _Role, env: Envelope, avoid: str | None) -> None:
        """Queue a task for a role: straight to a replica with room, else the backlog."""
        if not role.backlog and not self._halting and avoid is None:
            # No backlog: hand the task straight to the least-loaded replica
            # with room, skipping the heap round trip.
            best = role.sole
            if best is not None:
                agent = best.agent
                if agent.concurrency <= best.assigned or agent.state not in _ACCEPTING:
                    best = None
            else:
                best_free = 0
                for rep in role.replicas.values():
                    free = rep.agent.concurrency - rep.assigned
                    # best_free starts at 0: the first replica with room wins the first test.
                    if free > best_free and rep.agent.state in _ACCEPTING:
                        best, best_free = rep, free
            if best is not None:
                if best.idle and best.assigned < len(best.workers):
                    # _assign's common case (a parked worker), inline: a call less
                    # per task. A done waiter is dropped, as _assign would.
                    waiter = best.idle.popleft()
                    if not waiter.done():
                        best.assigned += 1
                        waiter.set_result(env)
                        return
                self._assign(best, env)
                return
        heapq.heappush(role.backlog, (-env.priority, next(self._seq), env, avoid))
        if not self._halting:
            self._pump(role)

    def _pump(self, role: _Role) -> None:
        backlog = role.backlog
        while backlog:
            best: _Replica | None = None
            avoid = backlog[0][3]
            for rep in role.replicas.values():
                if rep.free <= 0 or rep.agent.state not in _ACCEPTING:
                    continue
                if best is None or (rep.agent.agent_id != avoid, rep.free) > (
                    best.agent.agent_id != avoid,
                    best.free,
                ):
                    best = rep
            if best is None:
                return
            self._assign(best, heapq.heappop(backlog)[2])

    def _fill(self, rep: _Replica) -> None:
        direct = self._direct.get(rep.agent.agent_id)
        backlog = rep.role.backlog
        agent = rep.agent
        while agent.concurrency > rep.assigned and agent.state in _ACCEPTING:
            if direct and (not backlog or direct[0] < backlog[0]):
                self._assign(rep, heapq.heappop(direct)[2])
            elif backlog:
                self._assign(rep, heapq.heappop(backlog)[2])
            else:
                return

    def _assign(self, rep: _Replica, env: Envelope) -> None:
        rep.assigned += 1
        if rep.assigned > len(rep.workers):
            # Concurrency was raised after registration (live config): grow the pool.
            rep.workers.append(
                self._tasks.spawn(
                    self._worker(rep), name=f"{rep.agent.agent_id}:{len(rep.workers)}"
                )
            )
        while rep.idle:
            waiter = rep.idle.popleft()
            if not waiter.done():
                waiter.set_result(env)
                return
        rep.mailbox.append(env)

    # -- execution ----------------------------------------------------------
    async def _worker(self, rep: _Replica) -> None:
        me = asyncio.current_task()
        assert me is not None
        agent = rep.agent
        fast = self._fast_ledger
        codec = self._codec
        ctx = rep.context
        handlers = rep.handlers
        waiters = self._waiters
        d = _Delivery(me)
        rep.deliveries.append(d)
        meters = role_meters(agent.role)
        while True:
            if rep.mailbox:
                env = rep.mailbox.popleft()
            else:
                waiter: asyncio.Future[Envelope] = _Future()
                rep.idle.append(waiter)
                env = await waiter
            try:
                # The common case (in-memory ledger, no deadline) starts without
                # an await; everything else goes through _start.
                if fast is not None and env.deadline is None:
                    fast.running_nowait(env.id, env.attempt, agent.agent_id)
                    started = True
                else:
                    started = await self._start(agent, env)
                if started:
                    # The lease: from here the reaper may take the task back.
                    if agent.state is _READY:
                        agent.state = _BUSY
                    d.envelope = env
                    d.interrupted = None
                    d.tick = self._tick
                    agent.inflight += 1
                    # Log lines of the handler (any logger) carry the task id.
                    _set_task_id(env.id)
                    if _metrics.RECORD_TASKS:
                        meters.started += 1
                    try:
                        # The flag itself, not tracing_enabled(): a call less per task.
                        if tracing._enabled:
                            with handler_span(env, agent.agent_id):
                                value = await agent.dispatch(env, ctx, codec)
                        else:
                            # What dispatch does, without its two frames, when
                            # the agent allows it (see _plain_handler).
                            plain = handlers.get(env.type, _MISS)
                            if plain is _MISS:
                                plain = self._plain_handler(rep, env.type)
                            if plain is not None:
                                try:
                                    message = plain[1](env.payload)
                                except _DECODE_ERRORS:
                                    plain = None  # dispatch raises the DecodeError
                            if plain is None:
                                value = await agent.dispatch(env, ctx, codec)
                            else:
                                value = await plain[0](agent, message)
                    except BaseException as exc:
                        await self._on_error(rep, d, env, me, exc)
                    else:
                        if fast is None or d.interrupted is not None:
                            await self._on_result_slow(rep, d, env, me, value)
                        elif value is None:
                            # The common ack (nothing to encode), inline: a call less
                            # per task. Any other value goes through _on_result.
                            d.envelope = None  # the lease ends
                            agent.inflight -= 1
                            agent.processed += 1
                            rec = fast.done_nowait(env.id, env.attempt, _NONE_RESULT, "")
                            if rec is not None and self._outstanding > 1 and not self._more_waiters:
                                # _settled's common case, inline: a call less per task.
                                if _metrics.RECORD_TASKS:
                                    end = rec.finished_at or 0.0
                                    began = rec.started_at or end
                                    meters.done_in(end - rec.created_at, end - began)
                                self._outstanding -= 1
                                fut = waiters.pop(env.id, None)
                                if fut is not None and not fut.done():
                                    fut.set_result(rec)
                            elif rec is not None:
                                self._settled(rec)
                        elif not self._on_result(rep, d, env, value, fast):
                            await self._on_result_slow(rep, d, env, me, value)
            finally:
                rep.assigned -= 1
                if rep.assigned == 0 and rep.settled is not None:
                    rep.settled.set()
                if agent.state is _BUSY and agent.inflight == 0:
                    agent.state = _READY
            if rep.dead:
                return
            if rep.role.backlog:
                self._fill(rep)
                if rep.role.backlog:
                    self._pump(rep.role)
            elif self._direct:
                self._fill(rep)

    def _plain_handler(self, rep: _Replica, type_name: str) -> _PlainHandler | None:
        """Look up (once per replica and type) a handler the worker may call itself."""
        found = rep.agent.plain_handler(type_name)
        plain: _PlainHandler | None = None
        if found is not None:
            decode = self._codec.payload_decoder(found[1])
            if decode is not None:
                plain = (found[0], decode)
        rep.handlers[type_name] = plain
        return plain

    async def _start(self, agent: Agent, env: Envelope) -> bool:
        """Record the start of a delivery; False if its deadline passed (it ends expired)."""
        if env.deadline is not None and time.time() > env.deadline:
            await self._finish(env, TaskState.EXPIRED, error="deadline passed before start")
            return False
        if self._fast_ledger is not None:
            self._fast_ledger.running_nowait(env.id, env.attempt, agent.agent_id)
        else:
            await self._ledger.update(
                env.id, TaskState.RUNNING, attempts=env.attempt, agent_id=agent.agent_id
            )
        return True

    @staticmethod
    def _release(rep: _Replica, d: _Delivery) -> None:
        d.envelope = None  # the lease ends
        rep.agent.inflight -= 1

    async def _on_error(
        self,
        rep: _Replica,
        d: _Delivery,
        env: Envelope,
        me: asyncio.Task[Any],
        exc: BaseException,
    ) -> None:
        """The handler raised (or was interrupted): redeliver, retry, fail or dead-letter."""
        self._release(rep, d)
        if isinstance(exc, asyncio.CancelledError):
            if d.interrupted is None:
                # Cancelled from outside (the handler cancelled itself, or an
                # unrelated cancel): the work did not finish, so redeliver.
                if me.cancelling():
                    await self._redeliver(env, "cancelled", rep)
                    raise exc
                d.interrupted = "cancelled"
            else:
                me.uncancel()
            await self._redeliver(env, d.interrupted, rep)
        elif isinstance(exc, Reject):
            await self._finish(env, TaskState.FAILED, error=f"rejected: {exc}")
        elif isinstance(exc, DecodeError):
            REJECTED.labels(reason="bad_payload").inc()
            await self._finish(env, TaskState.FAILED, error=str(exc))
        elif isinstance(exc, Exception):
            rep.agent.failed += 1
            await self._fail(env, f"{type(exc).__name__}: {exc}")
        else:
            # KeyboardInterrupt / SystemExit: the task goes back, the signal goes on.
            await self._redeliver(env, type(exc).__name__, rep)
            raise exc

    def _on_result(
        self, rep: _Replica, d: _Delivery, env: Envelope, value: Any, fast: InMemoryLedger
    ) -> bool:
        """Ack a successful delivery of a non-None result on the in-memory ledger.

        The worker acks a None result itself; False means take the slow path.
        """
        try:
            result = bytes(self._codec.encode_payload(value))
        except (EncodeError, MessageTooLarge):
            return False
        type_name = value.type_name if isinstance(value, Message) else ""
        d.envelope = None  # the lease ends
        agent = rep.agent
        agent.inflight -= 1
        agent.processed += 1
        rec = fast.done_nowait(env.id, env.attempt, result, type_name)
        if rec is not None:
            self._settled(rec)
        return True

    async def _on_result_slow(
        self,
        rep: _Replica,
        d: _Delivery,
        env: Envelope,
        me: asyncio.Task[Any],
        value: Any,
    ) -> None:
        self._release(rep, d)
        if d.interrupted is not None:
            # The reaper took the task back while the handler was returning;
            # the redelivery owns it now. This completion is a duplicate.
            me.uncancel()
            await self._redeliver(env, d.interrupted, rep)
            return
        rep.agent.processed += 1
        try:
            payload = self._codec.encode_payload(value)
        except (EncodeError, MessageTooLarge) as exc:
            await self._finish(env, TaskState.FAILED, error=f"result: {exc}")
            return
        await self._finish(
            env,
            TaskState.DONE,
            result=_NONE_RESULT if value is None else bytes(payload),
            result_type=Codec.type_name(value),
        )

    async def _redeliver(self, env: Envelope, reason: str, rep: _Replica) -> None:
        # A redelivery counts as an attempt, as Redis's delivery counter does,
        # so a task that keeps killing its agent is bounded too.
        nxt = msgspec.structs.replace(env, attempt=env.attempt + 1)
        if nxt.attempt > nxt.max_attempts:
            await self._dead_letter(env, reason)
            return
        await self._ledger.update(env.id, TaskState.QUEUED, error=reason)
        self._enqueue(nxt, avoid=rep.agent.agent_id)

    async def _fail(self, env: Envelope, error: str) -> None:
        if env.attempt >= env.max_attempts:
            await self._dead_letter(env, error)
            return
        TASK_RETRIES.inc()
        await self._ledger.update(env.id, TaskState.QUEUED, error=error)
        nxt = msgspec.structs.replace(env, attempt=env.attempt + 1)
        delay = self._retry.backoff(env.attempt)
        handle = asyncio.get_running_loop().call_later(delay, self._retry_due, env.id)
        self._retries[env.id] = (handle, nxt)

    def _retry_due(self, task_id: str) -> None:
        item = self._retries.pop(task_id, None)
        if item is not None:
            self._enqueue(item[1])

    async def _dead_letter(self, env: Envelope, error: str) -> None:
        TASKS_DEAD.inc()
        self._dead[env.id] = DeadLetter(envelope=env, error=error, failed_at=time.time())
        await self._finish(env, TaskState.DEAD, error=error)

    async def _finish(
        self,
        env: Envelope,
        state: TaskState,
        *,
        error: str | None = None,
        result: bytes | None = None,
        result_type: str | None = None,
    ) -> None:
        # Off the hot path (expiry, failure, dead letters): the Protocol call serves
        # every ledger; successes on the in-memory ledger go through _on_result.
        rec = await self._ledger.update(
            env.id,
            state,
            attempts=env.attempt,
            error=error,
            result=result,
            result_type=result_type,
        )
        if rec is not None:
            self._settled(rec)

    def _settled(self, rec: TaskRecord) -> None:
        """A task reached a final state: count it off and wake whoever waits for it."""
        if _metrics.RECORD_TASKS:
            self._count_final(rec)
        self._outstanding -= 1
        if self._outstanding == 0:
            self._idle.set()
        fut = self._waiters.pop(rec.task_id, None)
        if fut is not None:
            if not fut.done():
                fut.set_result(rec)
            if self._more_waiters:
                for fut in self._more_waiters.pop(rec.task_id, ()):
                    if not fut.done():
                        fut.set_result(rec)

    def _count_final(self, rec: TaskRecord) -> None:
        rep = self._replicas.get(rec.agent_id) if rec.agent_id else None
        if rep is not None:
            role = rep.agent.role
        elif rec.recipient.startswith("role:"):
            role = rec.recipient[5:]
        else:
            return  # an agent's own task that never started: no role to count it under
        meters = role_meters(role)
        latency = (rec.finished_at or time.time()) - rec.created_at
        if rec.state is TaskState.DONE:
            meters.done += 1
            meters.latency.observe(latency)
        else:
            meters.finish(rec.state.value, latency)
        if rec.started_at is not None and rec.finished_at is not None:
            meters.handler.observe(rec.finished_at - rec.started_at)

    async def _reaper(self) -> None:
        # A lease runs from the first sweep after it began (its tick + 1), so
        # a task is taken back between one and about two sweep intervals past
        # its visibility timeout.
        timeout = self.visibility_timeout
        interval = min(0.5, timeout / 8)
        keep = int(timeout / interval) + 2
        began: dict[int, float] = {0: time.monotonic()}
        while True:
            await asyncio.sleep(interval)
            now = time.monotonic()
            self._tick += 1
            began[self._tick] = now
            began.pop(self._tick - keep, None)
            for rep in list(self._replicas.values()):
                for d in list(rep.deliveries):
                    if d.envelope is None or d.interrupted is not None or d.tick >= self._tick:
                        continue
                    start = began.get(d.tick + 1)
                    if start is None or now - start >= timeout:
                        _log.warning(
                            "visibility timeout; redelivering",
                            task_id=d.envelope.id,
                            agent_id=rep.agent.agent_id,
                        )
                        d.interrupted = "visibility timeout"
                        d.worker.cancel()

    # -- results ----------------------------------------------------------
    async def wait(self, task_id: str, *, timeout: float | None = None) -> TaskRecord:
        fast = self._fast_ledger
        if fast is not None:
            # No await until the waiter is registered, so a finish is not missed.
            rec = fast.get_nowait(task_id)
            if rec is None:
                raise KeyError(task_id)
            if rec.state in FINAL_STATES:
                return rec
        fut = self._add_waiter(task_id)
        try:
            if fast is None:
                # Registered before reading the ledger so a finish in between is not missed.
                rec = await self._ledger.get(task_id)
                if rec is None:
                    raise KeyError(task_id)
                if rec.final:
                    return rec
            if timeout is None:
                return await fut
            async with asyncio.timeout(timeout):
                return await fut
        except TimeoutError:
            raise SwarmTimeout(f"task {task_id} not finished within {timeout}s") from None
        finally:
            if self._more_waiters or self._waiters.get(task_id) is fut:
                self._drop_waiter(task_id, fut)

    async def wait_result(self, task_id: str, timeout: float | None = None) -> Any:
        """:meth:`wait`, then the task's decoded result, in one coroutine.

        What :meth:`TaskHandle.result <swarm.queen.handle.TaskHandle.result>`
        awaits on this runtime: one coroutine per result instead of two.

        Raises:
            TaskFailed, TaskDeadLettered, TaskExpired: It ended without a result.
            SwarmTimeout: Not final within ``timeout``.
            KeyError: Unknown task id.
        """
        get = self._fast_get
        if get is None or timeout is not None:
            return result_of(self._codec, await self.wait(task_id, timeout=timeout))
        rec = get(task_id)
        if rec is None:
            raise KeyError(task_id)
        if rec.state not in FINAL_STATES:
            fut = self._add_waiter(task_id)
            try:
                rec = await fut
            except BaseException:
                # Cancelled: drop the waiter. (Once resolved, _settled removed it.)
                self._drop_waiter(task_id, fut)
                raise
        # The worker stores this very object for a None result: an identity test.
        if rec.state is _DONE and rec.result is _NONE_RESULT:
            return None  # the common no-result case, without result_of's call
        return result_of(self._codec, rec)

    def _add_waiter(self, task_id: str) -> asyncio.Future[TaskRecord]:
        # The first waiter of a task goes in a dict without a list; more are rare.
        fut: asyncio.Future[TaskRecord] = _Future()
        if task_id in self._waiters:
            self._more_waiters.setdefault(task_id, []).append(fut)
        else:
            self._waiters[task_id] = fut
        return fut

    def _drop_waiter(self, task_id: str, fut: asyncio.Future[TaskRecord]) -> None:
        more = self._more_waiters.get(task_id)
        if self._waiters.get(task_id) is fut:
            if more:
                self._waiters[task_id] = more.pop(0)
            else:
                del self._waiters[task_id]
        elif more and fut in more:
            more.remove(fut)
        if more is not None and not more:
            del self._more_waiters[task_id]

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
        env = broadcast_envelope(self._codec, topic, message, sender=sender)
        for sub in list(self._topics.get(topic, ())):
            try:
                sub.queue.put_nowait(env)
            except asyncio.QueueFull:
                REJECTED.labels(reason="subscriber_overflow").inc()

    async def subscribe(self, topic: str, callback: EventCallback) -> _Subscription:
        sub = _Subscription(self, topic, callback)
        self._topics.setdefault(topic, []).append(sub)
        return sub

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
                self._fill(rep)
                self._pump(rep.role)
            elif action is CommandAction.DRAIN:
                self._return_mailbox(rep)
            elif action is CommandAction.SHUTDOWN:
                await self.unregister(rep.agent.agent_id, drain=True)

    # -- dead letters and introspection -------------------------------------
    async def dead_letters(self, *, limit: int = 100) -> list[DeadLetter]:
        return list(itertools.islice(self._dead.values(), limit))

    async def redrive(self, task_id: str) -> bool:
        dl = self._dead.pop(task_id, None)
        if dl is None:
            return False
        env = msgspec.structs.replace(dl.envelope, attempt=1)
        await self._ledger.update(task_id, TaskState.QUEUED, attempts=0)
        self._outstanding += 1
        self._idle.clear()
        self._enqueue(env)
        return True

    async def cancel(self, task_id: str) -> bool:
        """End a task that has not started yet as ``failed`` ("cancelled").

        Returns:
            Whether it was waiting (in a backlog, a mailbox or a retry
            backoff) and is now cancelled; False once it started or ended.
        """
        env: Envelope | None = None
        retry = self._retries.pop(task_id, None)
        if retry is not None:
            retry[0].cancel()
            env = retry[1]
        for role in self._roles.values() if env is None else ():
            for i, entry in enumerate(role.backlog):
                if entry[2].id == task_id:
                    env = entry[2]
                    role.backlog[i] = role.backlog[-1]
                    role.backlog.pop()
                    heapq.heapify(role.backlog)
                    break
            if env is not None:
                break
            for rep in role.replicas.values():
                for queued in rep.mailbox:
                    if queued.id == task_id:
                        env = queued
                        rep.mailbox.remove(queued)
                        rep.assigned -= 1
                        break
                if env is not None:
                    break
            if env is not None:
                break
        if env is None:
            return False
        await self._finish(env, TaskState.FAILED, error="cancelled")
        return True

    def queue_stats(self) -> dict[str, QueueStats]:
        """Per role: tasks waiting to start by priority, and the oldest one's age."""
        now = time.time()
        out: dict[str, QueueStats] = {}
        for name, role in self._roles.items():
            waiting = [entry[2] for entry in role.backlog]
            waiting += [env for rep in role.replicas.values() for env in rep.mailbox]
            depth: dict[int, int] = {}
            for env in waiting:
                depth[env.priority] = depth.get(env.priority, 0) + 1
            oldest = min((env.created_at for env in waiting if env.created_at), default=None)
            out[name] = QueueStats(
                depth=depth, oldest_age=None if oldest is None else max(0.0, now - oldest)
            )
        return out

    async def directory(self) -> dict[str, RoleInfo]:
        return self._directory_now()

    def _directory_now(self) -> dict[str, RoleInfo]:
        return {
            name: RoleInfo(
                role=name,
                types=frozenset(role.types),
                replicas=tuple(
                    ReplicaInfo(
                        agent_id=r.agent.agent_id,
                        state=r.agent.state.value,
                        inflight=r.assigned,
                        capacity=r.agent.concurrency,
                    )
                    for r in role.replicas.values()
                ),
            )
            for name, role in self._roles.items()
        }

    def agent(self, agent_id: str) -> Agent:
        """Return a registered agent by id."""
        return self._replicas[agent_id].agent

    def agents(self) -> list[Agent]:
        """Return every registered agent."""
        return [rep.agent for rep in self._replicas.values()]
