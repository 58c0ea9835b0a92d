"""The three Redis clients of a node: commands, pub/sub and blocking stream reads.

They are separate because their traffic patterns differ:

* ``commands`` runs short request/reply commands (XADD, XACK, HSET, scripts)
  with the normal socket timeout;
* ``pubsub`` hands out the dedicated connection of a subscription (a
  subscribed connection cannot run other commands); on Cluster it is a plain
  client of one primary, since a PUBLISH on any node reaches subscribers on
  every node;
* ``blocking`` runs ``XREADGROUP BLOCK``; its socket timeout is strictly
  longer than the block time. redis-py 8 defaults every client to a 5 s socket
  timeout, so a longer block on a default client ends in ``TimeoutError``
  instead of an empty reply.

Every client retries a command after a connection or timeout error with
``Retry(ExponentialWithJitterBackoff(...), settings.retry_attempts)``, and uses
the hiredis parser (redis-py picks it automatically when ``hiredis`` is
installed; see :attr:`RedisClients.hiredis`).

Example:
    >>> import asyncio
    >>> from swarm.redis import RedisClients, RedisSettings
    >>> async def main():
    ...     clients = await RedisClients.connect(RedisSettings.from_dsn("redis://127.0.0.1:6379/0"))
    ...     try:
    ...         return await clients.commands.ping()
    ...     finally:
    ...         await clients.close()
    >>> asyncio.run(main())  # doctest: +SKIP
    True
"""

from __future__ import annotations

import inspect
import ssl as ssl_module
from dataclasses import dataclass, field
from typing import Any, TypeAlias

import structlog
from redis.asyncio import ConnectionPool, Redis, SSLConnection
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from swarm.errors import ConfigError, TransportError
from swarm.redis import fastpath
from swarm.redis.fastpath import HiredisPackConnection, use_hiredis_packer
from swarm.redis.settings import RedisSettings

__all__ = [
    "AnyRedis",
    "HiredisPackConnection",
    "PipelineConnection",
    "RedisClients",
    "close_dedicated",
    "dedicated",
    "make_retry",
    "node_client",
    "use_hiredis_packer",
]

#: A standalone or a Cluster client; both speak the same command API.
AnyRedis: TypeAlias = Redis | RedisCluster

_log = structlog.get_logger("swarm.redis")

_CERT_REQS = {
    "none": ssl_module.CERT_NONE,
    "optional": ssl_module.CERT_OPTIONAL,
    "required": ssl_module.CERT_REQUIRED,
}


def make_retry(settings: RedisSettings) -> Retry:
    """The retry policy of every client: exponential backoff with jitter.

    Only connection and timeout errors are retried; a command error (WRONGTYPE,
    NOSCRIPT, ...) is an answer, not a transport failure.

    Example:
        >>> make_retry(RedisSettings(retry_attempts=3)).get_retries()
        3
    """
    return Retry(
        ExponentialWithJitterBackoff(base=settings.retry_base, cap=settings.retry_cap),
        settings.retry_attempts,
        supported_errors=(RedisConnectionError, RedisTimeoutError),
    )


def _client_kwargs(settings: RedisSettings, *, socket_timeout: float) -> dict[str, Any]:
    kwargs: dict[str, Any] = {
        "username": settings.username,
        "password": settings.password,
        "socket_timeout": socket_timeout,
        "socket_connect_timeout": settings.socket_connect_timeout,
        "socket_keepalive": True,
        "retry": make_retry(settings),
        "health_check_interval": settings.health_check_interval,
        "client_name": settings.client_name,
        "protocol": settings.protocol,
        "decode_responses": False,
    }
    if settings.ssl:
        kwargs.update(
            ssl=True,
            ssl_ca_certs=settings.ssl_ca_certs,
            ssl_certfile=settings.ssl_certfile,
            ssl_keyfile=settings.ssl_keyfile,
            ssl_cert_reqs=_CERT_REQS[settings.ssl_cert_reqs],
            # Python's ssl refuses check_hostname without verification.
            ssl_check_hostname=settings.ssl_check_hostname and settings.ssl_cert_reqs != "none",
        )
    return kwargs


def _standalone(
    settings: RedisSettings,
    *,
    socket_timeout: float,
    host: str | None = None,
    port: int | None = None,
) -> Redis:
    kwargs = _client_kwargs(settings, socket_timeout=socket_timeout)
    if settings.max_connections is not None:
        kwargs["max_connections"] = settings.max_connections
    if settings.unix_socket_path is not None and host is None:
        kwargs["unix_socket_path"] = settings.unix_socket_path
    client = Redis(
        host=host or settings.host,
        port=port or settings.port,
        db=settings.db,
        **kwargs,
    )
    if fastpath.select(settings.fastpath):
        # Before the first connection exists: the pool makes every one of this class.
        use_hiredis_packer(client)
    return client


def _cluster(settings: RedisSettings, *, socket_timeout: float) -> RedisCluster:
    kwargs = _client_kwargs(settings, socket_timeout=socket_timeout)
    if settings.max_connections is not None:
        kwargs["max_connections"] = settings.max_connections
    return RedisCluster(
        startup_nodes=[ClusterNode(host, port) for host, port in settings.nodes],
        require_full_coverage=True,
        **kwargs,
    )


def node_client(node: ClusterNode) -> Redis:
    """A standalone client of one cluster node, with the node's own connection options."""
    kwargs = {k: v for k, v in node.connection_kwargs.items() if k != "max_connections"}
    pool: ConnectionPool = ConnectionPool(connection_class=node.connection_class, **kwargs)
    return Redis(connection_pool=pool)


def _derive_cluster(cluster: RedisCluster, socket_timeout: float) -> RedisCluster:
    """A second client of the same cluster with another socket timeout."""
    accepted = inspect.signature(RedisCluster.__init__).parameters
    kwargs = dict(cluster.connection_kwargs)
    connection_class = kwargs.pop("connection_class", None)
    kwargs = {k: v for k, v in kwargs.items() if k in accepted and k not in ("host", "port")}
    kwargs.update(
        socket_timeout=socket_timeout,
        ssl=isinstance(connection_class, type) and issubclass(connection_class, SSLConnection),
        retry=cluster.retry,
    )
    nodes = [ClusterNode(node.host, node.port) for node in cluster.get_nodes()]
    nodes = nodes or [ClusterNode(node.host, node.port) for node in cluster.startup_nodes]
    return RedisCluster(startup_nodes=nodes, **kwargs)


def _socket_timeout(client: AnyRedis) -> float | None:
    if isinstance(client, RedisCluster):
        value = client.nodes_manager.connection_kwargs.get("socket_timeout")
    else:
        value = client.connection_pool.connection_kwargs.get("socket_timeout")
    return None if value is None else float(value)


def _with_socket_timeout(client: Redis, timeout: float) -> Redis:
    pool = client.connection_pool
    kwargs = dict(pool.connection_kwargs)
    kwargs["socket_timeout"] = timeout
    return Redis(connection_pool=ConnectionPool(connection_class=pool.connection_class, **kwargs))


async def _aclose(client: AnyRedis) -> None:
    if isinstance(client, RedisCluster):
        await client.aclose()
    else:
        await client.aclose(close_connection_pool=True)


@dataclass(frozen=True, slots=True, kw_only=True)
class RedisClients:
    """The commands, pub/sub and blocking-read clients of one node.

    Build it with :meth:`connect` (from settings; owns and closes the clients)
    or :meth:`from_clients` (wraps clients you own; closes only what it derived).

    Attributes:
        commands: Short request/reply commands.
        pubsub: Source of subscription connections (always a standalone client;
            on Cluster, a client of one primary).
        blocking: ``XREADGROUP BLOCK`` reads; socket timeout > ``settings.block_time``.
        settings: The settings in effect (block time, key prefix, ...).
    """

    commands: AnyRedis
    pubsub: Redis
    blocking: AnyRedis
    settings: RedisSettings
    _owned: tuple[AnyRedis, ...] = field(default=(), repr=False)

    @property
    def cluster(self) -> bool:
        """Whether the commands client talks to a Redis Cluster."""
        return isinstance(self.commands, RedisCluster)

    @property
    def hiredis(self) -> bool:
        """Whether replies are parsed by hiredis (the C parser) rather than pure Python."""
        return fastpath.HIREDIS_AVAILABLE

    @classmethod
    async def connect(cls, settings: RedisSettings) -> RedisClients:
        """Create the three clients from settings and check the server answers.

        Raises:
            TransportError: The server (or cluster) cannot be reached.
        """
        if not fastpath.HIREDIS_AVAILABLE:
            _log.warning("hiredis is not installed; Redis replies use the slow Python parser")
        commands: AnyRedis
        blocking: AnyRedis
        if settings.cluster:
            commands = _cluster(settings, socket_timeout=settings.socket_timeout)
            blocking = _cluster(settings, socket_timeout=settings.blocking_timeout)
        else:
            commands = _standalone(settings, socket_timeout=settings.socket_timeout)
            blocking = _standalone(settings, socket_timeout=settings.blocking_timeout)
        owned: list[AnyRedis] = [commands, blocking]
        try:
            if isinstance(commands, RedisCluster):
                await commands.initialize()
                assert isinstance(blocking, RedisCluster)
                await blocking.initialize()
                primary = commands.get_primaries()[0]
                pubsub = _standalone(
                    settings,
                    socket_timeout=settings.socket_timeout,
                    host=primary.host,
                    port=int(primary.port),
                )
            else:
                await commands.ping()
                pubsub = _standalone(settings, socket_timeout=settings.socket_timeout)
            owned.append(pubsub)
        except (RedisError, OSError) as exc:
            for client in owned:
                await _aclose(client)
            raise TransportError(
                f"cannot reach Redis at {settings.redacted_dsn()}: {type(exc).__name__}: {exc}"
            ) from exc
        return cls(
            commands=commands,
            pubsub=pubsub,
            blocking=blocking,
            settings=settings,
            _owned=tuple(owned),
        )

    @classmethod
    def from_clients(
        cls,
        commands: AnyRedis,
        *,
        pubsub: Redis | None = None,
        blocking: AnyRedis | None = None,
        settings: RedisSettings | None = None,
    ) -> RedisClients:
        """Wrap existing clients; :meth:`close` leaves them open for their owner.

        A missing ``pubsub`` client is ``commands`` itself (a subscription
        takes its own connection from the pool; on Cluster, a client of one
        primary is derived). A missing ``blocking`` client is ``commands`` when
        its socket timeout already exceeds the block time, else a derived
        client with a longer timeout.

        Raises:
            ConfigError: ``blocking``'s socket timeout does not exceed the
                block time, or ``commands`` is a RedisCluster not initialised
                yet and no ``pubsub`` client was given.

        Example:
            >>> from redis.asyncio import Redis
            >>> settings = RedisSettings(block_time=2)
            >>> c = RedisClients.from_clients(Redis(socket_timeout=5), settings=settings)
            >>> c.blocking is c.commands
            True
        """
        settings = settings or RedisSettings()
        owned: list[AnyRedis] = []
        if pubsub is None:
            if isinstance(commands, RedisCluster):
                pubsub = (
                    node_client(commands.get_primaries()[0]) if _initialised(commands) else None
                )
                if pubsub is None:
                    raise ConfigError("pass pubsub= or an initialised RedisCluster")
                owned.append(pubsub)
            else:
                pubsub = commands
        if blocking is None:
            timeout = _socket_timeout(commands)
            if timeout is None or timeout > settings.block_time:
                blocking = commands
            elif isinstance(commands, RedisCluster):
                blocking = _derive_cluster(commands, settings.blocking_timeout)
                owned.append(blocking)
            else:
                blocking = _with_socket_timeout(commands, settings.blocking_timeout)
                owned.append(blocking)
        else:
            timeout = _socket_timeout(blocking)
            if timeout is not None and timeout <= settings.block_time:
                raise ConfigError(
                    f"blocking client's socket timeout ({timeout}s) must exceed "
                    f"block_time ({settings.block_time}s)"
                )
        return cls(
            commands=commands,
            pubsub=pubsub,
            blocking=blocking,
            settings=settings,
            _owned=tuple(owned),
        )

    async def close(self) -> None:
        """Close the clients this object created; idempotent."""
        for client in self._owned:
            await _aclose(client)


def _initialised(cluster: RedisCluster) -> bool:
    try:
        return bool(cluster.get_primaries())
    except RedisError:
        return False


class PipelineConnection:
    """Non-transactional pipelines that all run on one connection, held until :meth:`close`.

    For a caller with at most one round trip in flight (the pipeline batcher):
    taking a connection from the pool and handing it back costs every round
    trip a lock, bookkeeping and observability hooks, and redis-py hands a
    pipeline's connection back in a task of its own (``asyncio.shield``), so
    the caller saw its replies two loop turns late. The first pipeline takes
    the connection from the pool as usual (its errors are the pipeline's). A
    Cluster client routes each command itself, so its pipelines use its pools.

    Args:
        client: The client whose pool lends the connection.
    """

    def __init__(self, client: AnyRedis) -> None:
        self._client = client
        #: The held connection, once a pipeline has made one.
        self.held: Any = None

    def pipeline(self) -> Any:
        """A pipeline on the held connection (redis-py's own off the fast path)."""
        client = self._client
        if not isinstance(client, Redis) or not fastpath.active(client):
            return client.pipeline(transaction=False)
        return fastpath.held_pipeline(client, self)

    async def close(self) -> None:
        """Hand the held connection back to the pool."""
        conn, self.held = self.held, None
        if conn is not None and isinstance(self._client, Redis):
            await self._client.connection_pool.release(conn)


def dedicated(client: AnyRedis, *, raw: tuple[str, ...] = ()) -> AnyRedis:
    """A client of ``client``'s pool that keeps one connection for all its commands.

    For a loop of blocking reads, one at a time: it skips taking a connection
    from the pool and handing it back around every read. Hand the connection
    back with :func:`close_dedicated`. A Cluster client is returned as is.

    Args:
        client: The client whose pool to use.
        raw: Commands whose replies the dedicated client returns unparsed (as
            the server sent them: no redis-py response callback).
    """
    if isinstance(client, Redis):
        own = (
            fastpath.dedicated_client(client)
            if fastpath.active(client)
            else Redis(connection_pool=client.connection_pool, single_connection_client=True)
        )
        for command in raw:
            if command in own.response_callbacks:
                del own.response_callbacks[command]
        return own
    return client


async def close_dedicated(client: AnyRedis, base: AnyRedis) -> None:
    """Hand the connection of a :func:`dedicated` client of ``base`` back to the pool."""
    if client is not base and isinstance(client, Redis):
        await client.aclose(close_connection_pool=False)
