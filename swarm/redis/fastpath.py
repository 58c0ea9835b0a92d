"""redis-py's internals, behind one door: the fast paths of the Redis runtime and memory tier.

The Redis runtime's hot paths and the memory hot tier skip layers of
redis-py's asyncio client that cost more Python than the round trip they
wrap: hiredis packing on the connection (:class:`HiredisPackConnection`),
pipelines that keep their connection and skip the retry closure
(:func:`held_pipeline`), a single-connection client without the wrappers
(:func:`dedicated_client`) and commands packed by hand into one buffer
(:class:`PackedSender`). Each leans on redis-py names that are not its public
API (``_writer``, ``_single_conn_lock``, pipeline internals, its serializer),
and every such use lives in this module and nowhere else (a test greps the
source tree for them).

They were verified against the redis-py series in :data:`VERIFIED`.
:func:`select` turns them on only for those; on any other redis-py, or when
settings turn them off (``RedisSettings.fastpath``, ``RedisHotSettings.fastpath``;
the CLIs read ``SWARM_REDIS_FASTPATH=0``), callers use redis-py's public API
(pipelines, ``execute_command``, ``evalsha``), after one warning. A new redis-py
release then costs speed, never correctness.

Example:
    >>> from swarm.redis import fastpath
    >>> fastpath.verified("8.2.0"), fastpath.verified("9.0.0")
    (True, False)
    >>> fastpath.select(True, version="9.0.0")
    False
"""

from __future__ import annotations

import asyncio
import codecs
import copy
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from typing import Any, Protocol, cast

import redis
import redis.utils
import structlog
from redis.asyncio import Connection, ConnectionPool, Redis
from redis.asyncio.client import Pipeline
from redis.asyncio.retry import Retry
from redis.connection import HiredisRespSerializer
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from swarm.errors import ConfigError

_hiredis_pack: Callable[[tuple[Any, ...]], bytes] | None
try:
    import hiredis

    # Typed here as what it takes: any tuple of str, bytes and numbers.
    _hiredis_pack = hiredis.pack_command
except ImportError:  # optional: the Python packer does the same, slower
    _hiredis_pack = None

__all__ = [
    "ENV_VAR",
    "HIREDIS_AVAILABLE",
    "INSTALLED",
    "VERIFIED",
    "HiredisPackConnection",
    "PackedCommand",
    "PackedSender",
    "active",
    "configure_from",
    "dedicated_client",
    "default",
    "held_pipeline",
    "pack_commands",
    "select",
    "set_default",
    "use_hiredis_packer",
    "verified",
]

#: The redis-py release series (major.minor) the fast paths were verified with.
VERIFIED: tuple[str, ...] = ("8.1", "8.2")

#: The installed redis-py's version, as :func:`select` judges it.
INSTALLED: str = redis.__version__

#: Whether replies are parsed (and commands can be packed) by hiredis's C code.
HIREDIS_AVAILABLE: bool = bool(redis.utils.HIREDIS_AVAILABLE)

#: The environment variable the CLIs read (see :func:`configure_from`).
ENV_VAR = "SWARM_REDIS_FASTPATH"

_BOOLS = {"1": True, "true": True, "yes": True, "on": True,
          "0": False, "false": False, "no": False, "off": False}

_log = structlog.get_logger("swarm.redis.fastpath")

# The process-wide default of the settings' ``fastpath`` fields; an edge (a CLI,
# a test harness) sets it from its environment before building settings.
_default = True
# One warning per reason and process, not one per client.
_warned: set[str] = set()


def verified(version: str) -> bool:
    """Whether ``version`` of redis-py is in a series the fast paths were verified with."""
    return ".".join(version.split(".")[:2]) in VERIFIED


def default() -> bool:
    """The default of the settings' ``fastpath`` fields (True unless :func:`set_default`)."""
    return _default


def set_default(enabled: bool) -> None:
    """Set the process-wide default of the ``fastpath`` settings fields.

    For an edge that reads its environment (``SWARM_REDIS_FASTPATH``); settings
    built afterwards without an explicit ``fastpath`` take it.
    """
    global _default
    _default = enabled


def configure_from(environ: Mapping[str, str]) -> None:
    """Set the default from ``SWARM_REDIS_FASTPATH`` in ``environ`` (unset or empty: unchanged).

    For the CLIs, which pass ``os.environ``; library code never reads the environment.

    Raises:
        ConfigError: The value is not a boolean.
    """
    raw = environ.get(ENV_VAR, "").strip().lower()
    if not raw:
        return
    if raw not in _BOOLS:
        raise ConfigError(f"{ENV_VAR}={raw!r} is not a boolean (use 1/0, true/false, yes/no)")
    set_default(_BOOLS[raw])


def select(enabled: bool, *, version: str | None = None) -> bool:
    """Whether to use the fast paths: asked for, and on a verified redis-py.

    Logs one warning (per reason and process) when the public API is used instead.

    Args:
        enabled: What the settings ask for.
        version: The redis-py version to judge (default: the installed one).
    """
    version = INSTALLED if version is None else version
    if not enabled:
        _warn_once("off", "redis-py fast path turned off by settings; using redis-py's public API")
        return False
    if not verified(version):
        _warn_once(
            version,
            f"redis-py {version} is not a version the fast path was verified with "
            f"({', '.join(v + '.x' for v in VERIFIED)}); using redis-py's public API",
        )
        return False
    return True


def _warn_once(reason: str, message: str) -> None:
    if reason not in _warned:
        _warned.add(reason)
        _log.warning(message)


def active(client: Any) -> bool:
    """Whether ``client``'s connections are the fast path's (see :func:`use_hiredis_packer`)."""
    return isinstance(client, Redis) and issubclass(
        client.connection_pool.connection_class, HiredisPackConnection
    )


class _Packer(Protocol):
    def pack(self, *args: Any) -> list[bytes]: ...


class HiredisPackConnection(Connection):
    """An asyncio connection that packs commands with hiredis's C packer.

    redis-py's asyncio connection packs every command in Python; on the task
    hot path (several commands per task, ten-odd arguments each) that was the
    largest single cost in profiles.
    """

    # redis-py 8.2 left the serializer's constructor unannotated (8.1 typed
    # it); the cast gives it one signature mypy accepts on both.
    _packer = cast("Callable[[], _Packer]", HiredisRespSerializer)()

    async def send_packed_command(
        self, command: str | bytes | Iterable[bytes], check_health: bool = True
    ) -> None:
        """Write a packed command, in this loop turn when the socket takes it at once.

        redis-py bounds every write with ``asyncio.wait_for``, which on Python
        3.11 runs the write as a task of its own: a task, a timer and two more
        loop turns per command, and the write waits behind every callback
        already queued (on a sequential request/reply path, that is each hop's
        latency). A write that leaves nothing in the transport's buffer cannot
        time out, so only a backed-up socket waits for the drain, bounded by the
        socket timeout as before. Health checks and reconnects take redis-py's path.
        """
        writer = getattr(self, "_writer", None)
        reader = getattr(self, "_reader", None)
        if writer is not None and (
            writer.transport.is_closing() or (reader is not None and reader.at_eof())
        ):
            # The server closed it while it sat idle (a restart, CLIENT KILL,
            # an idle timeout): nothing was sent on it, so a fresh connection
            # is safe, as the pool's check of a connection it lends out.
            await self.disconnect(nowait=True)
            writer = None
        if (
            writer is None
            or reader is None
            or (
                check_health
                and self.health_check_interval
                and asyncio.get_running_loop().time() > self.next_health_check
            )
        ):
            await super().send_packed_command(command, check_health)
            return
        if isinstance(command, str):
            command = command.encode()
        if isinstance(command, bytes):
            command = [command]
        try:
            writer.writelines(command)
            if writer.transport.get_write_buffer_size() and self.socket_timeout:
                await asyncio.wait_for(writer.drain(), self.socket_timeout)
            else:
                # Nothing buffered (or no timeout configured, as redis-py):
                # raises a connection error the reader already saw.
                await writer.drain()
        except TimeoutError:
            await self.disconnect(nowait=True)
            raise RedisTimeoutError("Timeout writing to socket") from None
        except OSError as exc:
            await self.disconnect(nowait=True)
            raise RedisConnectionError(f"Error while writing to socket: {exc!r}") from exc
        except BaseException:
            # A write cut short leaves the connection in an unknown state.
            await self.disconnect(nowait=True)
            raise

    def pack_command(self, *args: Any) -> list[bytes]:
        # Straight to the C packer: redis-py's serializer first copies every
        # argument through a Python generator (to turn bytearray and
        # memoryview into bytes), which cost as much as the packing itself at
        # twenty-odd arguments per task.
        first = args[0]
        if " " in first if isinstance(first, str) else b" " in first:
            args = (*first.split(), *args[1:])
        if _hiredis_pack is not None:  # installed with redis[hiredis]; see use_hiredis_packer
            try:
                return [_hiredis_pack(args)]
            except TypeError:
                # Arguments the C packer does not take (bytearray; or invalid,
                # which redis-py reports as DataError): redis-py's serializer.
                pass
        return self._packer.pack(*args)


def use_hiredis_packer(client: Any) -> bool:
    """Make new connections of a standalone client we own pack with hiredis.

    Returns whether its connections are the fast path's (hiredis installed,
    plain standalone connections); applying it twice is harmless.
    """
    if not HIREDIS_AVAILABLE or not isinstance(client, Redis):
        return False
    pool = client.connection_pool
    if pool.connection_class is HiredisPackConnection:
        return True
    if pool.connection_class is not Connection:
        return False
    pool.connection_class = HiredisPackConnection
    return True




class _Holder(Protocol):
    held: Any


def held_pipeline(client: Redis, holder: _Holder) -> Pipeline:
    """A non-transactional pipeline on the connection ``holder`` keeps between pipelines.

    The connection is taken from ``holder.held`` (None: the pipeline takes one
    from the pool as usual) and put back there when the pipeline resets.
    """
    pipe = _HeldPipeline(client.connection_pool, client.response_callbacks, False, None)
    pipe.holder = holder
    # Taken, not shared: a second pipeline meanwhile gets its own from the pool.
    pipe.connection, holder.held = holder.held, None
    return pipe


def dedicated_client(client: Redis) -> Redis:
    """A single-connection client of ``client``'s pool, its commands without redis-py's wrappers."""
    return _DedicatedRedis(connection_pool=client.connection_pool, single_connection_client=True)


class _HeldPipeline(Pipeline):
    """A standalone pipeline whose connection its :class:`PipelineConnection` keeps."""

    holder: _Holder

    async def execute(self, raise_on_error: bool = True) -> list[Any]:
        """Run the queued commands; on a live held connection, without redis-py's wrappers.

        redis-py wraps every pipeline in a retry closure, an observability
        record, HIMPORT preparation passes and a second packing pass that joins
        the commands into one buffer: more Python than the write and the read
        themselves for the batcher's one or two commands. A held connection
        that is up runs its attempts directly; the first is the first of the
        client's retry policy, so a failed one leaves the policy's remaining
        attempts (with ``retry_attempts=0``, none: a script whose reply was
        lost is not run twice).
        """
        conn = self.connection
        stack = self.command_stack
        if (
            conn is None
            or not stack
            or self.scripts
            or self.watching
            or self.is_transaction
            or self.explicit_transaction
            or not isinstance(conn, HiredisPackConnection)
            or not conn.is_connected
        ):
            return await super().execute(raise_on_error)
        chunks: list[bytes] = []
        pack = conn.pack_command
        for args, _ in stack:
            chunks += pack(*args)
        parse = self.parse_response

        async def attempt() -> list[Any]:
            await conn.send_packed_command(chunks)
            replies: list[Any] = []
            for args, options in stack:
                try:
                    replies.append(await parse(conn, args[0], **options))
                except ResponseError as exc:
                    replies.append(exc)
            return replies

        try:
            try:
                response = await attempt()
            except (RedisConnectionError, RedisTimeoutError) as exc:
                response = await _retry_rest(conn, attempt, exc)
        except BaseException:
            await self.reset()
            raise
        try:
            if raise_on_error:
                self.raise_first_error(stack, response)
        finally:
            await self.reset()
        return response

    async def reset(self) -> None:  # type: ignore[override]
        # Kept for the holder's next pipeline rather than handed back to the
        # pool (which redis-py does under ``asyncio.shield``: a task of its
        # own, two loop turns before the caller sees its replies).
        conn, self.connection = self.connection, None
        reset: Any = super().reset  # untyped in redis-py
        await reset()
        if conn is not None:
            if conn.should_reconnect():  # type: ignore[no-untyped-call]  # as the pool on release
                await conn.disconnect()
            self.holder.held = conn


class _DedicatedRedis(Redis):
    """A single-connection client for one loop of blocking reads, one command at a time."""

    async def execute_command(self, *args: Any, **options: Any) -> Any:
        """Run a command; on its live connection, one attempt without redis-py's wrappers.

        As for the held pipeline: redis-py's retry closure and observability
        record cost more than the read's own parsing, and run after the reply
        arrived, on the path of every task when they come one at a time.
        The direct attempt is the first of the client's retry policy; after a
        connection error the policy's remaining attempts run, as redis-py's
        own retry would.
        """
        lock: asyncio.Lock | None = getattr(self, "_single_conn_lock", None)
        conn = self.connection
        if lock is None or not isinstance(conn, HiredisPackConnection) or not conn.is_connected:
            # First use (redis-py connects), or a redis-py without the lock.
            return await super().execute_command(*args, **options)  # type: ignore[no-untyped-call]
        packed = conn.pack_command(*args)

        async def attempt() -> Any:
            await conn.send_packed_command(packed)
            return await self.parse_response(conn, args[0], **options)

        # Held across the retries, as redis-py holds it.
        async with lock:
            try:
                return await attempt()
            except (RedisConnectionError, RedisTimeoutError) as exc:
                return await _retry_rest(conn, attempt, exc)


async def _retry_rest(conn: Any, attempt: Callable[[], Awaitable[Any]], error: Exception) -> Any:
    """The attempts ``conn``'s retry policy has left after a failed first one.

    Each failure drops the connection, as redis-py does before a retry; the
    next attempt reconnects. A policy of no retries raises ``error``.
    """
    await conn.disconnect()
    policy: Retry = conn.retry
    retries = policy.get_retries()
    if retries == 0:
        raise error
    rest = copy.copy(policy)
    if retries > 0:  # negative: retry for ever
        rest.update_retries(retries - 1)

    async def failed(_: Exception) -> None:
        await conn.disconnect()

    return await rest.call_with_retry(attempt, failed)


#: One command to pack: its leading arguments, its keys, its trailing arguments,
#: and whether its keys may share one bulk-string header (keys of one length).
PackedCommand = tuple[Sequence[Any], Sequence[str], Sequence[Any], bool]


def _bulk(value: object) -> str:
    text = str(value)
    return f"${len(text)}\r\n{text}\r\n"


def _pack_joined(head: Sequence[Any], keys: Sequence[str], tail: Sequence[Any]) -> bytes | None:
    """A command in RESP from one string join, or None when its arguments do not allow it.

    Keys of one length in ASCII (the usual: one prefix, fixed-length ids)
    share one bulk-string header, so the keys need no per-key Python step
    (nor hiredis's per-argument formatting).
    """
    if not keys:
        return None
    size = len(keys[0])
    if min(map(len, keys)) != size or max(map(len, keys)) != size:
        return None
    header = f"${size}\r\n"
    text = "".join([
        f"*{len(head) + len(keys) + len(tail)}\r\n", *[_bulk(a) for a in head],
        header, f"\r\n{header}".join(keys), "\r\n", *[_bulk(a) for a in tail],
    ])
    if not text.isascii():
        return None
    return text.encode("ascii")


def pack_commands(commands: Iterable[PackedCommand], encoding: str, errors: str) -> bytes:
    """The commands in the Redis protocol (RESP), in one buffer.

    What redis-py's pipeline would send, without its per-argument Python
    steps (a fifth of the client CPU per operation at a hundred per batch):
    with hiredis's C packer when installed and the client encodes in UTF-8
    (what hiredis does), else in a Python loop.
    """
    if _hiredis_pack is not None and encoding == "utf-8" and errors == "strict":
        parts: list[bytes] = []
        for head, keys, tail, join in commands:
            if join and (packed := _pack_joined(head, keys, tail)) is not None:
                parts.append(packed)
            else:
                parts.append(_hiredis_pack((*head, *keys, *tail)))
        return b"".join(parts)
    out = bytearray()
    for head, keys, tail, _ in commands:
        out += b"*%d\r\n" % (len(head) + len(keys) + len(tail))
        for arg in (*head, *keys, *tail):
            if arg.__class__ is not bytes:
                # str, or int: what redis-py's encoder does for those types.
                arg = str(arg).encode(encoding, errors)
            out += b"$%d\r\n%b\r\n" % (len(arg), arg)
    return bytes(out)


class PackedSender:
    """Commands packed by hand, sent in one buffer on a pooled connection of a standalone client.

    As a pipeline does: the client's retry policy applies to connection
    errors (so every command sent this way must be idempotent), an error reply
    is returned in its place, and a connection left mid-reply (error,
    cancellation) is closed by redis-py.

    Args:
        client: A standalone client (``redis.asyncio.Redis``).
    """

    def __init__(self, client: Redis) -> None:
        self._pool: ConnectionPool = client.connection_pool
        kwargs = self._pool.connection_kwargs
        self._encoding: tuple[str, str] = (
            codecs.lookup(kwargs.get("encoding", "utf-8")).name,
            kwargs.get("encoding_errors", "strict"),
        )

    async def send(self, commands: Sequence[PackedCommand]) -> list[Any]:
        """Run ``commands`` in one round trip; their replies (error replies in their place)."""
        payload = pack_commands(commands, *self._encoding)
        count = len(commands)
        pool: Any = self._pool  # get_connection is unannotated in redis-py
        conn: Any = await pool.get_connection()

        async def round_trip() -> list[Any]:
            await conn.send_packed_command(payload)
            replies: list[Any] = []
            for _ in range(count):
                try:
                    replies.append(await conn.read_response())
                except ResponseError as exc:
                    replies.append(exc)
            return replies

        async def failed(error: Exception) -> None:
            await conn.disconnect()

        try:
            result: list[Any] = await conn.retry.call_with_retry(round_trip, failed)
            return result
        finally:
            await pool.release(conn)
