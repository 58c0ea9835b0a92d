"""Broadcast over Redis pub/sub, with a watchdog for silently dead subscriptions.

Delivery is **at-most-once**: a message published while a subscriber is
disconnected (server restart, network cut, reconnect in progress) is lost for
that subscriber, and a subscriber whose buffer is full drops new messages
(counted as ``subscriber_overflow``). Nothing that must not be lost may travel
only on pub/sub; durable work goes through Redis Streams.

All subscriptions of a broadcaster share one subscribed connection, read by
one listener task that decodes each message once and hands it to every
subscriber's bounded queue; each subscriber's callback runs in its own task,
so a slow callback delays only itself.

A half-open TCP connection (the peer or a middlebox vanished without a FIN or
RST) passes redis-py's health check, because that check only *writes* a PING
on a subscribed connection. The watchdog therefore sends ``PING <token>``
through the subscription every ``watchdog_interval`` seconds and expects the
pong with that token within ``pong_timeout``; when it is missing, the listener
is cancelled, the connection dropped, and a new one subscribes every channel
again. Connection errors take the same path, with exponential backoff.
:attr:`RedisBroadcaster.reconnects` counts completed resubscriptions and
:meth:`RedisBroadcaster.wait_for_reconnects` waits for them.

On Redis Cluster, ``PUBLISH`` on any node reaches subscribers on every node,
so the subscription connection goes to one primary (``RedisClients.pubsub``)
and the returned receiver count covers that node only.

Example:
    >>> import asyncio
    >>> from redis.asyncio import Redis
    >>> from swarm.messages import Envelope, Kind
    >>> from swarm.redis import RedisBroadcaster
    >>> async def main():
    ...     bus = RedisBroadcaster(redis=Redis(), watchdog_interval=5.0)
    ...     await bus.start()
    ...     got = asyncio.Queue()
    ...     sub = await bus.subscribe("demo:channel", got.put)
    ...     env = Envelope(id="1", kind=Kind.EVENT, type="", sender="me")
    ...     await bus.publish("demo:channel", env)
    ...     env = await got.get()
    ...     await sub.close()
    ...     await bus.stop()
    ...     return env.id
    >>> asyncio.run(main())  # doctest: +SKIP
    '1'
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

import msgspec
import structlog
from prometheus_client import Counter
from redis.asyncio import ConnectionPool, Redis
from redis.asyncio.client import PubSub
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff, NoBackoff
from redis.exceptions import RedisError

from swarm.codec import DECODE_FAILURES, Codec
from swarm.errors import DecodeError, MessageTooLarge, RuntimeClosed, SwarmTimeout, TransportError
from swarm.messages import Envelope, new_id
from swarm.metrics import REJECTED
from swarm.redis.connections import AnyRedis, RedisClients, node_client
from swarm.runtime import EventCallback
from swarm.tasks import TaskSet

__all__ = ["RECONNECTS", "RedisBroadcaster", "RedisSubscription"]

RECONNECTS = Counter(
    "swarm_redis_pubsub_reconnects_total",
    "Subscription connections re-established, by cause",
    ["reason"],
)

_log = structlog.get_logger("swarm.redis.broadcast")

_TRANSPORT_ERRORS = (RedisError, OSError)


class RedisSubscription:
    """One callback subscribed to one channel; close it to stop receiving.

    Messages wait in a bounded queue and are handed to the callback, one at a
    time and in order, by a task owned by the broadcaster.
    """

    def __init__(
        self, broadcaster: RedisBroadcaster, channel: str, callback: EventCallback, buffer: int
    ) -> None:
        self.channel = channel
        self._broadcaster = broadcaster
        self._callback = callback
        self._queue: asyncio.Queue[Envelope] = asyncio.Queue(maxsize=buffer)
        self._closed = False
        self._task = broadcaster._tasks.supervise(self._drain, name=f"subscriber:{channel}")

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called (or the broadcaster stopped)."""
        return self._closed

    def _offer(self, envelope: Envelope) -> None:
        try:
            self._queue.put_nowait(envelope)
        except asyncio.QueueFull:
            REJECTED.labels(reason="subscriber_overflow").inc()
            _log.warning("subscriber buffer full; broadcast dropped", channel=self.channel)

    async def _drain(self) -> None:
        while True:
            envelope = await self._queue.get()
            try:
                await self._callback(envelope)
            except Exception as exc:
                # A broken subscriber must not take the channel down with it.
                REJECTED.labels(reason="subscriber_error").inc()
                _log.warning(
                    "subscriber failed",
                    channel=self.channel,
                    type=envelope.type,
                    error=repr(exc),
                )

    async def close(self) -> None:
        """Stop receiving; idempotent. Messages still queued are dropped."""
        if self._closed:
            return
        self._closed = True
        self._task.cancel()
        await asyncio.wait({self._task})
        await self._broadcaster._remove(self)


class RedisBroadcaster:
    """Publishes envelopes to Redis channels and calls subscribers with what arrives.

    Args:
        clients: The node's clients; publishes go through ``clients.commands``
            and the subscription connection comes from ``clients.pubsub``.
        redis: Instead of ``clients``, one existing client used for both.
        codec: Encodes and decodes envelopes (and enforces the size limit).
        watchdog_interval: Seconds between watchdog PINGs on the subscription
            (default: ``clients.settings.watchdog_interval``, else 5).
        pong_timeout: Seconds the pong may take before the connection is
            declared dead (default: half of ``watchdog_interval``).
        subscriber_buffer: Messages queued per subscriber before new ones drop.
        subscribe_timeout: Seconds :meth:`subscribe` waits for the server's
            confirmation (default: the clients' socket timeout).
        reconnect_backoff: ``(base, cap)`` seconds of the exponential backoff
            between failed reconnect attempts.

    Raises:
        ValueError: Neither or both of ``clients`` and ``redis`` were given,
            or an interval is not positive.
    """

    def __init__(
        self,
        *,
        clients: RedisClients | None = None,
        redis: AnyRedis | None = None,
        codec: Codec | None = None,
        watchdog_interval: float | None = None,
        pong_timeout: float | None = None,
        subscriber_buffer: int = 10_000,
        subscribe_timeout: float | None = None,
        reconnect_backoff: tuple[float, float] = (0.05, 2.0),
    ) -> None:
        if (clients is None) == (redis is None):
            raise ValueError("pass exactly one of clients= or redis=")
        if watchdog_interval is None:
            watchdog_interval = clients.settings.watchdog_interval if clients is not None else 5.0
        if watchdog_interval <= 0 or (pong_timeout is not None and pong_timeout <= 0):
            raise ValueError("watchdog_interval and pong_timeout must be positive")
        if subscriber_buffer < 1:
            raise ValueError("subscriber_buffer must be at least 1")
        self.codec = codec or Codec()
        self.watchdog_interval = watchdog_interval
        self.pong_timeout = pong_timeout if pong_timeout is not None else watchdog_interval / 2
        self.subscriber_buffer = subscriber_buffer
        publisher = clients.commands if clients is not None else redis
        assert publisher is not None
        self._publisher: AnyRedis = publisher
        self._subscriber_source: Redis | None = clients.pubsub if clients is not None else None
        self._derived_source: Redis | None = None
        self._subscribe_timeout = subscribe_timeout
        self._backoff = ExponentialWithJitterBackoff(
            base=reconnect_backoff[0], cap=reconnect_backoff[1]
        )
        self._tasks = TaskSet("redis-broadcast")
        self._subs: dict[str, list[RedisSubscription]] = {}
        self._waiters: dict[str, list[asyncio.Future[None]]] = {}
        self._confirmed: set[str] = set()
        self._pool: ConnectionPool | None = None
        self._pubsub: PubSub | None = None
        self._listener: asyncio.Task[None] | None = None
        self._pending_reconnect: str | None = None
        self._session_channels: frozenset[str] = frozenset()
        self._pong_token = ""
        self._pong = asyncio.Event()
        self._changed = asyncio.Condition()
        self._reconnects = 0
        self._pongs = 0
        self.last_pong: float | None = None
        self._running = False
        self._restart_lock = asyncio.Lock()

    # -- lifecycle ---------------------------------------------------------

    @property
    def running(self) -> bool:
        """Whether :meth:`start` was called and :meth:`stop` was not."""
        return self._running

    @property
    def reconnects(self) -> int:
        """Completed reconnects: each one re-subscribed every channel (confirmed by the server)."""
        return self._reconnects

    @property
    def pongs(self) -> int:
        """Watchdog pongs received so far (:attr:`last_pong` holds the loop time of the last)."""
        return self._pongs

    @property
    def connected(self) -> bool:
        """Whether the subscription connection is up and every channel confirmed."""
        return self._pubsub is not None and set(self._subs) <= self._confirmed

    async def start(self) -> None:
        """Open the subscription connection (in the background) and start the watchdog."""
        if self._running:
            return
        source = self._subscriber_source
        if source is None:
            if isinstance(self._publisher, RedisCluster):
                # Any node will do: a PUBLISH reaches subscribers on every node.
                await self._publisher.initialize()
                source = self._derived_source = node_client(self._publisher.get_primaries()[0])
            else:
                source = self._publisher
        self._pool = _private_pool(source)
        if self._subscribe_timeout is None:
            timeout = self._pool.connection_kwargs.get("socket_timeout")
            self._subscribe_timeout = float(timeout or 5.0)
        self._running = True
        self._listener = self._spawn_listener(None)
        self._tasks.supervise(self._watchdog, name="watchdog")

    @property
    def healthy(self) -> bool:
        """False while the listener, watchdog or a subscriber loop keeps failing."""
        return self._tasks.healthy

    async def stop(self) -> None:
        """Close every subscription and the connection; idempotent.

        Messages still queued for subscribers are dropped (at-most-once).
        """
        if not self._running:
            return
        self._running = False
        for subs in list(self._subs.values()):
            for sub in subs:
                sub._closed = True
        self._subs.clear()
        await self._tasks.close()
        await self._drop(self._pubsub)
        self._pubsub = None
        if self._pool is not None:
            await self._pool.aclose()
            self._pool = None
        for waiters in self._waiters.values():
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_exception(RuntimeClosed("the broadcaster stopped"))
        self._waiters.clear()
        if self._derived_source is not None:
            await self._derived_source.aclose(close_connection_pool=True)
            self._derived_source = None

    async def __aenter__(self) -> RedisBroadcaster:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # -- publish / subscribe ----------------------------------------------

    async def publish(self, channel: str, envelope: Envelope) -> int:
        """Broadcast an envelope on a channel (at-most-once).

        Returns:
            How many subscriber connections received it (on Cluster: on the
            node that took the PUBLISH).

        Raises:
            EncodeError, MessageTooLarge: The envelope cannot be sent.
            TransportError: Redis did not take the message.
        """
        data = self.codec.encode(envelope)
        try:
            return int(await self._publisher.publish(channel, data))
        except _TRANSPORT_ERRORS as exc:
            raise TransportError(f"publish on {channel!r} failed: {exc}") from exc

    async def subscribe(self, channel: str, callback: EventCallback) -> RedisSubscription:
        """Call ``callback`` with every envelope published on ``channel`` from now on.

        Returns once the server confirmed the subscription; when the
        connection is down it returns after ``subscribe_timeout`` with the
        subscription registered, and it becomes active on reconnect.

        Raises:
            RuntimeClosed: The broadcaster is not running.
        """
        if not self._running:
            raise RuntimeClosed("the broadcaster is not running")
        sub = RedisSubscription(self, channel, callback, self.subscriber_buffer)
        self._subs.setdefault(channel, []).append(sub)
        if channel in self._confirmed:
            return sub
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.setdefault(channel, []).append(waiter)
        pubsub = self._pubsub
        try:
            if pubsub is not None:
                with contextlib.suppress(*_TRANSPORT_ERRORS):
                    # On failure the listener sees the broken connection and
                    # resubscribes every registered channel, this one included.
                    await pubsub.subscribe(channel)
            try:
                async with asyncio.timeout(self._subscribe_timeout):
                    await asyncio.shield(waiter)
            except TimeoutError:
                _log.warning(
                    "subscription not confirmed yet; active once reconnected", channel=channel
                )
        finally:
            waiters = self._waiters.get(channel, [])
            if waiter in waiters:
                waiters.remove(waiter)
            if not waiters:
                self._waiters.pop(channel, None)
        return sub

    async def wait_for_reconnects(self, count: int, *, timeout: float | None = None) -> None:
        """Wait until :attr:`reconnects` reaches ``count``.

        Raises:
            SwarmTimeout: Not reached within ``timeout`` seconds.
        """
        try:
            async with asyncio.timeout(timeout), self._changed:
                await self._changed.wait_for(lambda: self._reconnects >= count)
        except TimeoutError:
            raise SwarmTimeout(
                f"{self._reconnects} reconnects after {timeout}s, expected {count}"
            ) from None

    async def wait_for_pongs(self, count: int, *, timeout: float | None = None) -> None:
        """Wait until :attr:`pongs` reaches ``count`` (the watchdog saw the connection alive).

        Raises:
            SwarmTimeout: Not reached within ``timeout`` seconds.
        """
        try:
            async with asyncio.timeout(timeout), self._changed:
                await self._changed.wait_for(lambda: self._pongs >= count)
        except TimeoutError:
            raise SwarmTimeout(f"{self._pongs} pongs after {timeout}s, expected {count}") from None

    async def _remove(self, sub: RedisSubscription) -> None:
        subs = self._subs.get(sub.channel)
        if subs is None or sub not in subs:
            return
        subs.remove(sub)
        if subs:
            return
        del self._subs[sub.channel]
        self._confirmed.discard(sub.channel)
        pubsub = self._pubsub
        if pubsub is not None:
            with contextlib.suppress(*_TRANSPORT_ERRORS):
                await pubsub.unsubscribe(sub.channel)

    # -- listener -----------------------------------------------------------

    def _spawn_listener(self, reason: str | None) -> asyncio.Task[None]:
        # Supervised: a listener that died of a bug would leave every
        # subscriber of this process deaf while the watchdog waits for it.
        first = [reason]

        def listen() -> Coroutine[Any, Any, None]:
            why = first.pop() if first else "listener_restart"
            return self._listen(reason=why)

        return self._tasks.supervise(listen, name="listener")

    async def _listen(self, *, reason: str | None) -> None:
        """Hold one subscription connection after another until cancelled."""
        failures = 0
        while True:
            pubsub: PubSub | None = None
            try:
                assert self._pool is not None
                pubsub = PubSub(connection_pool=self._pool)
                await pubsub.connect()  # type: ignore[no-untyped-call]
                self._confirmed.clear()
                self._pending_reconnect = reason
                self._session_channels = frozenset(self._subs)
                self._pubsub = pubsub
                if self._session_channels:
                    await pubsub.subscribe(*self._session_channels)
                else:
                    await self._session_ready()
                failures = 0
                while True:
                    message = await pubsub.get_message(timeout=None)
                    if message is not None:
                        await self._on_message(message)
            except _TRANSPORT_ERRORS as exc:
                failures += 1
                reason = "connection_error"
                _log.warning(
                    "subscription connection lost", error=_describe(exc), failures=failures
                )
            finally:
                if self._pubsub is pubsub:
                    self._pubsub = None
                await self._drop(pubsub)
            if failures >= 2:
                await self._move_to_another_node()
            await asyncio.sleep(self._backoff.compute(failures))

    async def _move_to_another_node(self) -> None:
        """On Cluster, subscribe through another primary when this one keeps failing."""
        cluster = self._publisher
        if not isinstance(cluster, RedisCluster) or self._pool is None:
            return
        kwargs = self._pool.connection_kwargs
        current = (str(kwargs.get("host")), int(kwargs.get("port") or 0))
        others = [n for n in cluster.get_primaries() if (n.host, int(n.port)) != current]
        if not others:
            return
        node = random.choice(others)
        old_pool, old_source = self._pool, self._derived_source
        self._derived_source = node_client(node)
        self._pool = _private_pool(self._derived_source)
        _log.info("subscription moves to another cluster node", node=node.name)
        await old_pool.aclose()
        if old_source is not None:
            await old_source.aclose(close_connection_pool=True)

    async def _on_message(self, message: dict[str, Any]) -> None:
        kind = message["type"]
        if kind == "message":
            self._dispatch(_text(message["channel"]), message["data"])
        elif kind == "pong":
            if _text(message["data"]) == self._pong_token:
                self._pong.set()
                self.last_pong = asyncio.get_running_loop().time()
                async with self._changed:
                    self._pongs += 1
                    self._changed.notify_all()
        elif kind == "subscribe":
            channel = _text(message["channel"])
            if channel in self._subs:  # not closed while the confirmation travelled
                self._confirmed.add(channel)
            for waiter in self._waiters.pop(channel, []):
                if not waiter.done():
                    waiter.set_result(None)
            if self._pending_reconnect is not None and all(
                c in self._confirmed for c in self._session_channels if c in self._subs
            ):
                await self._session_ready()
        elif kind == "unsubscribe":
            channel = _text(message["channel"])
            if channel not in self._subs:
                self._confirmed.discard(channel)

    async def _session_ready(self) -> None:
        reason, self._pending_reconnect = self._pending_reconnect, None
        if reason is None:
            return
        RECONNECTS.labels(reason=reason).inc()
        _log.info(
            "subscription re-established", reason=reason, channels=len(self._session_channels)
        )
        async with self._changed:
            self._reconnects += 1
            self._changed.notify_all()

    def _dispatch(self, channel: str, data: Any) -> None:
        subs = self._subs.get(channel)
        if not subs:
            return
        try:
            envelope = self.codec.decode(data)
        except MessageTooLarge as exc:
            self._reject("oversized", channel, exc, len(data))
            return
        except DecodeError as exc:
            self._reject(_decode_failure(data), channel, exc, len(data))
            return
        for sub in subs:
            sub._offer(envelope)

    @staticmethod
    def _reject(reason: str, channel: str, exc: Exception, size: int) -> None:
        REJECTED.labels(reason=reason).inc()
        _log.warning(
            "broadcast rejected", reason=reason, channel=channel, size=size, error=str(exc)
        )

    # -- watchdog -----------------------------------------------------------

    async def _watchdog(self) -> None:
        """PING through the subscription; no pong in time means the connection is dead."""
        while True:
            await asyncio.sleep(self.watchdog_interval)
            pubsub = self._pubsub
            if pubsub is None:
                continue  # the listener is reconnecting on its own
            self._pong_token = new_id()
            self._pong.clear()
            try:
                async with asyncio.timeout(self.pong_timeout):
                    await pubsub.ping(self._pong_token)
                    await self._pong.wait()
            except (TimeoutError, *_TRANSPORT_ERRORS) as exc:
                if pubsub is self._pubsub:
                    _log.warning(
                        "subscription silent; reconnecting",
                        pong_timeout=self.pong_timeout,
                        error=_describe(exc),
                    )
                    await self._restart_listener("pong_timeout")

    async def _restart_listener(self, reason: str) -> None:
        async with self._restart_lock:
            old = self._listener
            if old is not None:
                old.cancel()
                await asyncio.wait({old})
            if self._running:
                self._listener = self._spawn_listener(reason)

    @staticmethod
    async def _drop(pubsub: PubSub | None) -> None:
        if pubsub is None:
            return
        try:
            # aclose() waits for a lock a stuck reader could hold; never hang here.
            async with asyncio.timeout(1.0):
                # Annotated in redis-py 8.2, not in 8.1: one form for both.
                aclose: Callable[[], Awaitable[None]] = pubsub.aclose
                await aclose()
        except (TimeoutError, *_TRANSPORT_ERRORS):
            connection: Any = getattr(pubsub, "connection", None)
            if connection is not None:
                with contextlib.suppress(*_TRANSPORT_ERRORS):
                    await connection.disconnect(nowait=True)


def _private_pool(source: Redis) -> ConnectionPool:
    """A pool for subscription connections, like ``source``'s but without redis-py's retry.

    A broken subscription must surface to the listener, so that every
    reconnect takes one path (ours), which resubscribes all channels and is
    counted; redis-py's health check is superseded by the watchdog.
    """
    base = source.connection_pool
    kwargs = dict(base.connection_kwargs)
    kwargs.update(retry=Retry(NoBackoff(), 0), health_check_interval=0)
    return ConnectionPool(connection_class=base.connection_class, **kwargs)


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes | bytearray) else str(value)


_NOT_MSGPACK: tuple[type[Exception], ...] = (*DECODE_FAILURES, TypeError)


def _decode_failure(data: Any) -> str:
    """``malformed`` for broken bytes or a broken envelope, ``foreign`` for other msgpack data."""
    try:
        value = msgspec.msgpack.decode(data)
    except _NOT_MSGPACK:
        return "malformed"
    if isinstance(value, dict) and "id" in value and "kind" in value:
        return "malformed"
    return "foreign"
