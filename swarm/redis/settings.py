"""Connection settings for Redis, parsed from a DSN.

One frozen value object describes how to reach Redis (standalone or Cluster,
plain or TLS, ACL user) and how the clients behave (timeouts, stream block
time, retries). It is built from a URL with :meth:`RedisSettings.from_dsn`;
environment variables are read by CLI code only, never here.

Accepted URLs::

    redis://[[user]:password@]host[:port][/db][?option=value&...]
    rediss://...                      TLS
    redis+cluster://host[:port][,host[:port]...][?...]   Redis Cluster
    rediss+cluster://...              Redis Cluster over TLS

``?cluster=true`` on a plain ``redis://`` URL selects Cluster mode too. The
query options are the field names below (``key_prefix`` may be spelled
``prefix``); an unknown option is a :class:`~swarm.errors.ConfigError`, so a
typo never silently falls back to a default.

Example:
    >>> from swarm.redis.settings import RedisSettings
    >>> s = RedisSettings.from_dsn("rediss://bee:s3cret@cache.local:6380/2?block_time=10")
    >>> (s.host, s.port, s.db, s.username, s.ssl, s.block_time)
    ('cache.local', 6380, 2, 'bee', True, 10.0)
    >>> s.blocking_socket_timeout > s.block_time
    True
    >>> s.redacted_dsn().startswith("rediss://bee:***@cache.local:6380/2")
    True
    >>> RedisSettings.from_dsn("redis+cluster://10.0.0.1:7000,10.0.0.2:7001").nodes
    (('10.0.0.1', 7000), ('10.0.0.2', 7001))
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import parse_qsl, quote, unquote, urlencode

from swarm.constants import KEY_PREFIX
from swarm.errors import ConfigError
from swarm.redis.fastpath import default as fastpath_default

__all__ = ["CertReqs", "RedisSettings"]

CertReqs = Literal["none", "optional", "required"]

DEFAULT_PORT = 6379
_SCHEMES = {
    "redis": (False, False),
    "rediss": (True, False),
    "redis+cluster": (False, True),
    "rediss+cluster": (True, True),
}
_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})
_ALIASES = {"prefix": "key_prefix"}
# Options that describe the address rather than behaviour: never in the query.
_NOT_QUERY = frozenset({"nodes", "username", "password", "ssl", "db"})


@dataclass(frozen=True, slots=True, kw_only=True)
class RedisSettings:
    """How to reach Redis and how the clients behave.

    Attributes:
        nodes: ``(host, port)`` pairs; one for standalone, startup nodes for Cluster.
        db: Database number (standalone only; Cluster has only database 0).
        username: ACL user name, or None for the default user.
        password: Password of the user, or None. Never shown by ``repr``.
        ssl: Use TLS (``rediss://``).
        ssl_ca_certs: CA bundle file to verify the server with.
        ssl_certfile: Client certificate file (mutual TLS).
        ssl_keyfile: Private key of the client certificate.
        ssl_cert_reqs: Whether the server certificate must verify.
        ssl_check_hostname: Whether the server name must match its certificate.
        cluster: Talk to a Redis Cluster.
        key_prefix: Prefix of every key and stream the swarm writes.
        socket_timeout: Seconds a command may wait for its reply.
        socket_connect_timeout: Seconds a connection attempt may take.
        block_time: Seconds a blocking stream read (``XREADGROUP BLOCK``) waits.
        blocking_socket_timeout: Socket timeout of the blocking-read client;
            defaults to ``block_time + socket_timeout`` and must exceed
            ``block_time``, or every idle block would end in a timeout error.
        retry_attempts: Retries of a command after a connection or timeout error.
        retry_base: First retry backoff in seconds (exponential, with jitter).
        retry_cap: Largest retry backoff in seconds.
        health_check_interval: Seconds of idleness after which a pooled
            connection is PINGed before use (0 disables).
        watchdog_interval: Seconds between the pub/sub watchdog's PINGs through
            the subscription connection (see ``RedisBroadcaster``).
        max_connections: Pool size limit per client (None: redis-py's default).
        client_name: ``CLIENT SETNAME`` of the connections, for ``CLIENT LIST``.
        protocol: RESP version. 2 by default so replies have the same shape on
            every supported redis-py version (redis-py 8 defaults to RESP3).
        fastpath: Use the fast paths over redis-py internals
            (:mod:`swarm.redis.fastpath`) where the installed redis-py is one
            they were verified with; False always uses redis-py's public API.
            Defaults to :func:`swarm.redis.fastpath.default` (True unless an
            edge turned it off, as the CLIs do for ``SWARM_REDIS_FASTPATH=0``).
        unix_socket_path: Reach a standalone server through this Unix socket
            (``unix:///path/to/redis.sock?db=N``) instead of ``nodes``.
    """

    nodes: tuple[tuple[str, int], ...] = (("127.0.0.1", DEFAULT_PORT),)
    db: int = 0
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    ssl: bool = False
    ssl_ca_certs: str | None = None
    ssl_certfile: str | None = None
    ssl_keyfile: str | None = None
    ssl_cert_reqs: CertReqs = "required"
    ssl_check_hostname: bool = True
    cluster: bool = False
    key_prefix: str = KEY_PREFIX
    socket_timeout: float = 5.0
    socket_connect_timeout: float = 5.0
    block_time: float = 5.0
    blocking_socket_timeout: float | None = None
    retry_attempts: int = 5
    retry_base: float = 0.05
    retry_cap: float = 2.0
    health_check_interval: float = 30.0
    watchdog_interval: float = 5.0
    max_connections: int | None = None
    client_name: str | None = None
    protocol: Literal[2, 3] = 2
    fastpath: bool = field(default_factory=fastpath_default)
    unix_socket_path: str | None = None

    def __post_init__(self) -> None:
        if self.unix_socket_path is not None and (self.cluster or self.ssl):
            raise ConfigError("a unix:// socket is a standalone server without TLS")
        if not self.nodes:
            raise ConfigError("at least one Redis node is required")
        for host, port in self.nodes:
            if not host:
                raise ConfigError("empty Redis host")
            if not 0 < port < 65536:
                raise ConfigError(f"Redis port out of range: {port}")
        if len(self.nodes) > 1 and not self.cluster:
            raise ConfigError("several Redis hosts are only valid for a cluster URL")
        if self.db < 0:
            raise ConfigError(f"Redis db must not be negative: {self.db}")
        if self.cluster and self.db != 0:
            raise ConfigError("Redis Cluster has only database 0")
        if self.ssl_cert_reqs not in ("none", "optional", "required"):
            raise ConfigError(
                f"ssl_cert_reqs must be none, optional or required: {self.ssl_cert_reqs!r}"
            )
        if not self.ssl and (self.ssl_ca_certs or self.ssl_certfile or self.ssl_keyfile):
            raise ConfigError("TLS file options need a rediss:// URL")
        if self.ssl_keyfile and not self.ssl_certfile:
            raise ConfigError("ssl_keyfile needs ssl_certfile")
        if not self.key_prefix or any(c in self.key_prefix for c in "{} \t\r\n"):
            raise ConfigError(
                f"key_prefix must be non-empty without braces or spaces: {self.key_prefix!r}"
            )
        for name in ("socket_timeout", "socket_connect_timeout", "block_time", "watchdog_interval"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"{name} must be positive")
        if self.blocking_socket_timeout is None:
            object.__setattr__(
                self, "blocking_socket_timeout", self.block_time + self.socket_timeout
            )
        elif not self.blocking_socket_timeout > self.block_time:
            raise ConfigError(
                f"blocking_socket_timeout ({self.blocking_socket_timeout}s) must exceed "
                f"block_time ({self.block_time}s), or idle blocking reads time out"
            )
        if self.retry_attempts < 0:
            raise ConfigError("retry_attempts must not be negative")
        if self.retry_base < 0 or self.retry_cap < self.retry_base:
            raise ConfigError("need 0 <= retry_base <= retry_cap")
        if self.health_check_interval < 0:
            raise ConfigError("health_check_interval must not be negative")
        if self.max_connections is not None and self.max_connections < 1:
            raise ConfigError("max_connections must be at least 1")
        if self.protocol not in (2, 3):
            raise ConfigError(f"protocol must be 2 or 3: {self.protocol!r}")

    @property
    def host(self) -> str:
        """Host of the first node."""
        return self.nodes[0][0]

    @property
    def port(self) -> int:
        """Port of the first node."""
        return self.nodes[0][1]

    @property
    def block_ms(self) -> int:
        """``block_time`` in milliseconds, as ``XREADGROUP BLOCK`` takes it."""
        return max(1, round(self.block_time * 1000))

    @property
    def blocking_timeout(self) -> float:
        """The effective socket timeout of the blocking-read client (always > ``block_time``)."""
        assert self.blocking_socket_timeout is not None  # set in __post_init__
        return self.blocking_socket_timeout

    def replace(self, **changes: Any) -> RedisSettings:
        """Return a copy with some fields changed (validated again).

        Example:
            >>> RedisSettings().replace(key_prefix="t1").key_prefix
            't1'
        """
        if "block_time" in changes or "socket_timeout" in changes:
            # The derived default must follow its inputs unless set explicitly.
            changes.setdefault("blocking_socket_timeout", None)
        return dataclasses.replace(self, **changes)

    @classmethod
    def from_dsn(cls, dsn: str, **overrides: Any) -> RedisSettings:
        """Parse a ``redis://``, ``rediss://`` or ``redis+cluster://`` URL.

        Args:
            dsn: The URL. User name and password may be percent-encoded.
            **overrides: Fields that take precedence over the URL.

        Raises:
            ConfigError: The URL or one of its options is invalid.

        Example:
            >>> s = RedisSettings.from_dsn("redis://localhost/3?prefix=t1&cluster=false")
            >>> (s.db, s.key_prefix, s.cluster)
            (3, 't1', False)
        """
        scheme, sep, rest = dsn.partition("://")
        if sep and scheme.lower() == "unix":
            return _from_unix_dsn(dsn, rest, overrides)
        if not sep or scheme.lower() not in _SCHEMES:
            raise ConfigError(
                f"not a Redis URL (redis://, rediss://, redis+cluster://, unix://): {_redact(dsn)}"
            )
        ssl, cluster = _SCHEMES[scheme.lower()]
        rest = rest.partition("#")[0]
        rest, _, query = rest.partition("?")
        netloc, _, path = rest.partition("/")
        userinfo, at, hostlist = netloc.rpartition("@")
        values: dict[str, Any] = {"ssl": ssl, "cluster": cluster}
        if at:
            user, colon, password = userinfo.partition(":")
            values["username"] = unquote(user) or None
            if colon:
                values["password"] = unquote(password)
        values["nodes"] = tuple(
            _parse_node(part, dsn) for part in (hostlist or "127.0.0.1").split(",")
        )
        if path.strip("/"):
            values["db"] = _to_int("db", path.strip("/"))
        for key, raw in parse_qsl(query, keep_blank_values=True, strict_parsing=False):
            name = _ALIASES.get(key, key)
            if name == "db":
                values["db"] = _to_int("db", raw)
            elif name == "cluster":
                values["cluster"] = cluster or _to_bool(key, raw)
            else:
                values[name] = _convert(name, raw)
        values.update(overrides)
        try:
            return cls(**values)
        except TypeError as exc:  # an unexpected keyword in ``overrides``
            raise ConfigError(str(exc)) from exc

    def to_dsn(self) -> str:
        """Render the settings as a URL that :meth:`from_dsn` parses back to equal settings.

        The URL contains the password; log :meth:`redacted_dsn` instead.
        """
        return self._dsn(redact=False)

    def redacted_dsn(self) -> str:
        """The URL with the password replaced by ``***``, for logs and errors."""
        return self._dsn(redact=True)

    def _dsn(self, *, redact: bool) -> str:
        scheme = ("rediss" if self.ssl else "redis") + ("+cluster" if self.cluster else "")
        auth = ""
        if self.username is not None or self.password is not None:
            auth = quote(self.username or "", safe="")
            if self.password is not None:
                auth += ":" + ("***" if redact else quote(self.password, safe=""))
            auth += "@"
        hosts = ",".join(f"[{h}]:{p}" if ":" in h else f"{h}:{p}" for h, p in self.nodes)
        defaults = RedisSettings()
        query: list[tuple[str, str]] = []
        if self.unix_socket_path is not None:
            scheme, hosts = "unix", quote(self.unix_socket_path)
            query.append(("db", str(self.db)))
        for f in dataclasses.fields(self):
            if f.name in _NOT_QUERY or f.name in ("cluster", "unix_socket_path"):
                continue
            value = getattr(self, f.name)
            if (
                f.name == "blocking_socket_timeout"
                and value == self.block_time + self.socket_timeout
            ):
                continue
            if value != getattr(defaults, f.name):
                query.append((f.name, _render(value)))
        qs = ("?" + urlencode(query)) if query else ""
        if self.unix_socket_path is not None:
            return f"{scheme}://{auth}{hosts}{qs}"
        return f"{scheme}://{auth}{hosts}/{self.db}{qs}"


_FIELD_TYPES: dict[str, str] = {
    "ssl_ca_certs": "str?",
    "ssl_certfile": "str?",
    "ssl_keyfile": "str?",
    "ssl_cert_reqs": "str",
    "ssl_check_hostname": "bool",
    "key_prefix": "str",
    "socket_timeout": "float",
    "socket_connect_timeout": "float",
    "block_time": "float",
    "blocking_socket_timeout": "float?",
    "retry_attempts": "int",
    "retry_base": "float",
    "retry_cap": "float",
    "health_check_interval": "float",
    "watchdog_interval": "float",
    "max_connections": "int?",
    "client_name": "str?",
    "protocol": "int",
    "fastpath": "bool",
}


def _convert(name: str, raw: str) -> Any:
    kind = _FIELD_TYPES.get(name)
    if kind is None:
        known = ", ".join(sorted([*_FIELD_TYPES, "cluster", "db", "prefix"]))
        raise ConfigError(f"unknown Redis URL option {name!r} (known: {known})")
    optional = kind.endswith("?")
    if optional and raw in ("", "none", "None"):
        return None
    kind = kind.rstrip("?")
    if kind == "bool":
        return _to_bool(name, raw)
    if kind == "int":
        return _to_int(name, raw)
    if kind == "float":
        try:
            value = float(raw)
        except ValueError:
            raise ConfigError(f"Redis URL option {name} must be a number: {raw!r}") from None
        if value != value or value in (float("inf"), float("-inf")):
            raise ConfigError(f"Redis URL option {name} must be finite: {raw!r}")
        return value
    return raw


def _to_bool(name: str, raw: str) -> bool:
    low = raw.strip().lower()
    if low in _TRUE:
        return True
    if low in _FALSE:
        return False
    raise ConfigError(f"Redis URL option {name} must be true or false: {raw!r}")


def _to_int(name: str, raw: str) -> int:
    try:
        return int(raw)
    except ValueError:
        raise ConfigError(f"Redis URL option {name} must be an integer: {raw!r}") from None


def _render(value: Any) -> str:
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _parse_node(part: str, dsn: str) -> tuple[str, int]:
    part = part.strip()
    if part.startswith("["):  # IPv6 literal
        host, bracket, tail = part[1:].partition("]")
        if not bracket:
            raise ConfigError(f"bad IPv6 host in Redis URL: {_redact(dsn)}")
        port_text = tail[1:] if tail.startswith(":") else ""
        if tail and not tail.startswith(":"):
            raise ConfigError(f"bad host in Redis URL: {_redact(dsn)}")
    else:
        host, _, port_text = part.partition(":")
    if not host:
        raise ConfigError(f"missing host in Redis URL: {_redact(dsn)}")
    port = _to_int("port", port_text) if port_text else DEFAULT_PORT
    return unquote(host), port


def _from_unix_dsn(dsn: str, rest: str, overrides: dict[str, Any]) -> RedisSettings:
    """``unix://[user:password@]/path/to/redis.sock[?db=N&...]``."""
    rest = rest.partition("#")[0]
    rest, _, query = rest.partition("?")
    userinfo, at, path = rest.rpartition("@")
    if not path.startswith("/"):
        raise ConfigError(f"unix:// needs an absolute socket path: {_redact(dsn)}")
    values: dict[str, Any] = {"unix_socket_path": unquote(path)}
    if at:
        user, colon, password = userinfo.partition(":")
        values["username"] = unquote(user) or None
        if colon:
            values["password"] = unquote(password)
    for key, raw in parse_qsl(query, keep_blank_values=True, strict_parsing=False):
        name = _ALIASES.get(key, key)
        if name == "db":
            values["db"] = _to_int("db", raw)
        elif name in ("cluster", "ssl", "nodes", "unix_socket_path"):
            raise ConfigError(f"option {key!r} does not apply to a unix:// socket")
        else:
            values[name] = _convert(name, raw)
    values.update(overrides)
    try:
        return RedisSettings(**values)
    except TypeError as exc:
        raise ConfigError(str(exc)) from exc


def _redact(dsn: str) -> str:
    scheme, sep, rest = dsn.partition("://")
    userinfo, at, tail = rest.partition("@")
    if at and ":" in userinfo:
        userinfo = userinfo.split(":", 1)[0] + ":***"
    return f"{scheme}{sep}{userinfo}{at}{tail}"
