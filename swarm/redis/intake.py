"""Task intake of the Redis runtime: route a task, record it and append it to its stream.

On a standalone server the ledger record and the stream entry are written by
one script (with the fencing check when the task carries an epoch), and the
submits of one event-loop turn that go to the same stream share one script
call. On Redis Cluster the ledger record and the stream are in different
slots, so each task is its own pair of commands.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from typing import Any

import msgspec
import structlog
from redis.exceptions import RedisError, ResponseError

from swarm import constants as C
from swarm.errors import FencingError, NoRouteError, RuntimeClosed, TransportError
from swarm.ledger import TaskRecord
from swarm.messages import Envelope
from swarm.metrics import FENCED_REFUSED
from swarm.redis.bulk import StoreOp, queue_store
from swarm.redis.core import Core, check_cancelled
from swarm.redis.directory import Directory
from swarm.redis.results import Results
from swarm.redis.streams import Pipeline, band_of
from swarm.routing import Router
from swarm.runtime import RoleInfo

__all__ = ["Intake"]

_log = structlog.get_logger("swarm.redis.intake")

_STORE_KEY = ("store",)


class Intake:
    """Accepts tasks: routing, idempotency, fencing, ledger record and stream entry.

    Args:
        core: The runtime's shared state.
        directory: Where roles and replicas are looked up.
        results: Where tasks awaiting a result here are tracked.
        fence: Name of the leadership whose epoch fences submissions, if any.
    """

    def __init__(
        self, core: Core, directory: Directory, results: Results, fence: str | None
    ) -> None:
        self._core = core
        self._directory = directory
        self._results = results
        self._router = Router()
        self.fence = fence
        self._fence_key = C.leader_epoch_key(fence, core.prefix) if fence else None
        self.closed = False
        # One STORE_MANY builder per batcher group key (per fence epoch).
        self._builders: dict[tuple[Any, ...], Callable[[Pipeline, list[StoreOp]], None]] = {}
        # Routes of addressed tasks resolved from one directory snapshot (the
        # one in ``_routes_of``): they depend on nothing else.
        self._routes: dict[tuple[str, str, int], tuple[str, str]] = {}
        self._routes_of: Mapping[str, RoleInfo] | None = None
        # A task's record key is this and its id (RedisLedger.key, without
        # two calls per task).
        self._record_keys = C.ledger_key("", core.prefix)

    async def submit(self, envelope: Envelope) -> str:
        """Queue a task durably and return its id (after close, only local agents' sends)."""
        queued = self.queue(envelope)
        if queued is not None:
            env, reply = queued
            return self.accepted(env, await reply)
        core = self._core
        if self.closed and envelope.sender not in core.replicas:
            raise RuntimeClosed("runtime is stopping; no new tasks are accepted")
        if core.batcher is None:
            raise RuntimeClosed("runtime is not started")
        env = envelope
        recipient, stream = await self.route(env)
        meters = core.meters(stream)
        if meters is not None:
            meters.submitted += 1
        if recipient != env.recipient or env.reply_to is None:
            env = msgspec.structs.replace(
                env, recipient=recipient, reply_to=env.reply_to or core.node_id
            )
        data = core.codec.encode(env)
        if env.idempotency_key is not None:
            if not core.cluster:
                return await self._store_once(env, stream, data)
            # Redis Cluster: the key, the record and the stream are in
            # different slots; the claim is its own step there.
            existing = await core.ledger.claim(env.idempotency_key, env.id)
            if existing is not None:
                return existing.task_id
        if env.reply_to == core.node_id:
            self._results.track(env)
        try:
            if core.cluster:
                fence = self._fence_key if env.epoch else None
                await self._store_one(env, TaskRecord.for_task(env), stream, data, fence)
            else:
                reply = await self._queue_store(env, stream, data)
                if isinstance(reply, Exception):
                    raise reply
        except (RedisError, OSError) as exc:
            err = self._refused(env, exc)
            raise err from (None if isinstance(err, FencingError) else exc)
        return env.id

    async def _store_once(self, env: Envelope, stream: str, data: bytes) -> str:
        """Claim the task's idempotency key and store it, atomically; the key's task id."""
        core = self._core
        ledger = core.ledger
        fence = self._fence_key if env.epoch else None
        if env.reply_to == core.node_id:
            self._results.track(env)
        try:
            (reply,) = await core.batch.call(
                lambda pipe: ledger.queue_store_once(pipe, env, stream, data, fence=fence)
            )
            existing = ledger.parse_store_once(reply)
        except (RedisError, OSError) as exc:
            err = self._refused(env, exc)
            raise err from (None if isinstance(err, FencingError) else exc)
        if existing is not None:
            self._untrack(env)
            return existing
        return env.id

    def queue_watched(self, envelope: Envelope) -> asyncio.Future[TaskRecord] | None:
        """Queue a task as :meth:`queue` does, returning the waiter of its result.

        A failed store fails the waiter as :meth:`submit` would raise it, so
        the submitter awaits only its result. The waiter is registered with
        :meth:`Results.expect <swarm.redis.results.Results.expect>`: pair it
        with :meth:`Results.forget <swarm.redis.results.Results.forget>` unless
        it got a record. None when the task takes the full path.
        """
        prepared = self._prepare(envelope)
        if prepared is None:
            return None
        env, stream, data = prepared
        core = self._core
        results = self._results
        waiter = (
            results.expect_tracked(env)
            if env.reply_to == core.node_id
            else results.expect(env.id)
        )
        key, build = self._group_of(env.epoch)
        # One object is both the store's operation and its watcher.
        op = _WatchedStore(self._record_keys + env.id, stream, env, data, self, waiter)
        batcher = core.batcher
        assert batcher is not None  # _prepare checked
        batcher.watch(key, build, op, op)
        return waiter

    def queue(self, envelope: Envelope) -> tuple[Envelope, asyncio.Future[Any]] | None:
        """:meth:`submit`'s common case without a coroutine: the queued task and its reply.

        Pass the reply to :meth:`accepted`. None when the task takes the full
        path: a directory read, an idempotency claim, Redis Cluster, or a
        runtime that is stopping or not started.
        """
        prepared = self._prepare(envelope)
        if prepared is None:
            return None
        env, stream, data = prepared
        if env.reply_to == self._core.node_id:
            self._results.track(env)
        key, build, op = self._store_op(env, stream, data)
        return env, self._core.batch.add(key, build, op)

    def _prepare(self, envelope: Envelope) -> tuple[Envelope, str, bytes] | None:
        # The common case of submit up to the store: routed from the cached
        # directory and encoded (the caller tracks it).
        core = self._core
        if (
            core.cluster
            or envelope.idempotency_key is not None
            or core.batcher is None
            or (self.closed and envelope.sender not in core.replicas)
        ):
            return None
        roles = self._directory.cached()
        if roles is None:
            return None
        routed = (
            self._routes.get((envelope.type, envelope.recipient, envelope.priority))
            if roles is self._routes_of
            else None
        )
        if routed is None:
            routed = self._route_uncached(envelope, roles)
            if routed is None:
                return None
        recipient, stream = routed
        meters = core.meters(stream)
        if meters is not None:
            meters.submitted += 1
        env = envelope
        if recipient != env.recipient or env.reply_to is None:
            env = msgspec.structs.replace(
                env, recipient=recipient, reply_to=env.reply_to or core.node_id
            )
        return env, stream, core.codec.encode(env)

    def accepted(self, env: Envelope, reply: Any) -> str:
        """``env``'s id once its store ``reply`` (from :meth:`queue`) is in.

        Raises:
            FencingError: The fence refused the task's epoch.
            TransportError: The task could not be stored.
        """
        if isinstance(reply, Exception):
            if isinstance(reply, (RedisError, OSError)):
                err = self._refused(env, reply)
                raise err from (None if isinstance(err, FencingError) else reply)
            raise reply
        return env.id

    def _queue_store(self, env: Envelope, stream: str, data: bytes) -> asyncio.Future[Any]:
        return self._core.batch.add(*self._store_op(env, stream, data))

    def _store_op(
        self, env: Envelope, stream: str, data: bytes
    ) -> tuple[tuple[Any, ...], Callable[[Pipeline, list[StoreOp]], None], StoreOp]:
        key, build = self._group_of(env.epoch)
        return key, build, StoreOp(self._record_keys + env.id, stream, None, data, env)

    def _group_of(
        self, epoch: int
    ) -> tuple[tuple[Any, ...], Callable[[Pipeline, list[StoreOp]], None]]:
        # A task shares one script call with the other submits of this loop
        # turn (of the same epoch, when fenced).
        fence = self._fence_key if epoch else None
        key = ("store", fence, epoch) if fence is not None else _STORE_KEY
        build = self._builders.get(key)
        if build is None:
            build = self._builders[key] = self._store_builder(fence, epoch)
        return key, build

    def _untrack(self, env: Envelope) -> None:
        if env.reply_to == self._core.node_id:
            self._results.untrack(env.id)

    def _refused(self, env: Envelope, exc: BaseException, *, caller: bool = True) -> Exception:
        """The error a failed store raises (the task is no longer outstanding)."""
        if caller:
            check_cancelled()
        self._untrack(env)
        if isinstance(exc, ResponseError) and str(exc).startswith("FENCED"):
            FENCED_REFUSED.labels(name=self.fence or "").inc()
            _log.warning("stale epoch refused", task_id=env.id, detail=str(exc))
            return FencingError(f"task {env.id} refused: {exc}")
        return TransportError(f"could not submit task {env.id}: {exc}")

    def _store_builder(
        self, fence: str | None, epoch: int
    ) -> Callable[[Pipeline, list[StoreOp]], None]:
        def build(pipe: Pipeline, ops: list[StoreOp]) -> None:
            queue_store(pipe, ops, fence=fence, epoch=epoch)

        return build

    async def _store_one(
        self, env: Envelope, record: TaskRecord, stream: str, data: bytes, fence: str | None
    ) -> None:
        # Redis Cluster: the record, the stream and the fence are in different
        # slots, so the task is its own pair of commands.
        core = self._core
        ledger = core.ledger
        if fence is not None:
            # Checked just before the write rather than in the same script. A
            # takeover between the two can let one task of the old epoch
            # through, never more.
            current = int(await core.redis.get(fence) or 0)
            if env.epoch < current:
                raise ResponseError(f"FENCED epoch {env.epoch} is older than {current}")

        def build(pipe: Pipeline) -> None:
            ledger.queue_store(pipe, record)
            pipe.xadd(stream, {"e": data})

        for reply in await core.batch.call(build):
            if isinstance(reply, Exception):
                raise reply

    async def route(self, env: Envelope) -> tuple[str, str]:
        """Return the resolved recipient and the stream the task goes to."""
        for fresh in (False, True):
            roles = None if fresh else self._directory.cached()
            if roles is None:
                roles = await self._directory.snapshot(fresh=fresh)
            try:
                recipient = self._router.resolve(env.type, env.recipient, roles)
            except NoRouteError:
                if fresh:
                    raise
                continue
            return recipient, self._stream_of(recipient, env.priority, roles)
        raise NoRouteError(f"no route for {env.type!r}")  # pragma: no cover - loop returns

    def _route_uncached(
        self, env: Envelope, roles: Mapping[str, RoleInfo]
    ) -> tuple[str, str] | None:
        """:meth:`route` from the cached directory ``roles``; None when that fails.

        The route of an addressed task is kept for later tasks (``_prepare``
        looks it up first).
        """
        key = (env.type, env.recipient, env.priority)
        if roles is not self._routes_of:
            self._routes_of, self._routes = roles, {}
        try:
            recipient = self._router.resolve(env.type, env.recipient, roles)
        except NoRouteError:
            return None
        routed = recipient, self._stream_of(recipient, env.priority, roles)
        if env.recipient:
            # An unaddressed task goes to the role with most free capacity
            # now (and health may change within a snapshot): not cached.
            self._routes[key] = routed
        return routed

    def _stream_of(self, recipient: str, priority: int, roles: Mapping[str, RoleInfo]) -> str:
        core = self._core
        if recipient.startswith("agent:"):
            agent_id = recipient[6:]
            role = next(
                info.role
                for info in roles.values()
                if any(r.agent_id == agent_id for r in info.replicas)
            )
            return C.agent_stream(role, agent_id, core.prefix)
        role = recipient[5:]
        core.roles_seen.add(role)
        return C.task_stream(role, band_of(priority), core.prefix)


class _WatchedStore(StoreOp):
    """A task's store that is its own watcher: a failed store fails the task's waiter."""

    __slots__ = ("intake", "waiter")

    def __init__(
        self,
        record_key: str,
        stream: str,
        env: Envelope,
        data: bytes,
        intake: Intake,
        waiter: asyncio.Future[TaskRecord],
    ) -> None:
        # Not StoreOp.__init__: its check is moot here, and this runs per task.
        self.record_key = record_key
        self.stream = stream
        self.fields = None
        self.data = data
        self.env = env
        self.intake = intake
        self.waiter = waiter

    def failed(self, error: Exception) -> None:
        env = self.env
        assert env is not None
        # The task was not stored: it is no longer outstanding, even when its
        # submitter is gone (cancelled) and nobody hears of the error.
        if isinstance(error, (RedisError, OSError)):
            # Runs in the batcher's task, not the submitter's: no cancel check.
            err = self.intake._refused(env, error, caller=False)
            if not isinstance(err, FencingError):
                err.__cause__ = error
        else:
            self.intake._untrack(env)
            err = error
        if not self.waiter.done():
            self.waiter.set_exception(err)

    def cancel(self) -> None:
        # The batcher stopped before the store's reply: as the submitter's
        # await of that reply would be.
        self.waiter.cancel()
