"""Settings of a swarm process: the one typed object the assembly layer builds from.

Environment variables are read only by the CLIs, which hand the mapping to
:meth:`SwarmSettings.from_env` explicitly; library code takes a settings
object, never the environment.

Example:
    >>> from swarm.settings import SwarmSettings
    >>> s = SwarmSettings.from_env({"SWARM_REDIS_URL": "redis://h:6379/0", "SWARM_LOG_JSON": "1"})
    >>> s.redis_url, s.log_json, s.agents
    ('redis://h:6379/0', True, None)
    >>> SwarmSettings.from_dsn("redis://h:6379/1", http="127.0.0.1:8080").http_address
    ('127.0.0.1', 8080)
    >>> SwarmSettings(lease_ttl=0)
    Traceback (most recent call last):
    ...
    swarm.errors.ConfigError: lease TTL must be a positive number of seconds, not 0
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from swarm.errors import ConfigError
from swarm.history.options import from_env as history_from_env
from swarm.history.settings import HistorySettings
from swarm.llm.settings import LlmSettings

__all__ = ["LOG_LEVELS", "SwarmSettings", "check_positive", "redacted_url"]

#: Accepted log level names.
LOG_LEVELS = ("debug", "info", "warning", "error", "critical")
#: Schemes of a Redis URL, as :class:`swarm.redis.RedisSettings` parses them.
REDIS_SCHEMES = ("redis", "rediss", "redis+cluster", "rediss+cluster", "unix")
#: Schemes of a Consul URL, as :class:`discovery.ConsulSettings` parses them.
CONSUL_SCHEMES = ("consul", "consuls", "http", "https")
POSTGRES_SCHEMES = ("postgresql", "postgres")
_HISTORY = HistorySettings()
_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"", "0", "false", "no", "off"})


def _flag(name: str, value: str) -> bool:
    v = value.strip().lower()
    if v in _TRUE:
        return True
    if v in _FALSE:
        return False
    raise ConfigError(f"{name}={value!r} is not a boolean (use 1/0, true/false, yes/no)")


def check_positive(what: str, value: float | None, *, zero: bool = False) -> None:
    """Raise :class:`ConfigError` unless ``value`` is a finite number > 0 (>= 0 with ``zero``).

    Example:
        >>> check_positive("visibility timeout", 0)
        Traceback (most recent call last):
        ...
        swarm.errors.ConfigError: visibility timeout must be a positive number of seconds, not 0
    """
    if value is None:
        return
    ok = math.isfinite(value) and (value >= 0 if zero else value > 0)
    if not ok:
        kind = "a number of seconds >= 0" if zero else "a positive number of seconds"
        raise ConfigError(f"{what} must be {kind}, not {value:g}")


def redacted_url(url: str) -> str:
    """``url`` with any password replaced by ``***`` (safe to log or print).

    Example:
        >>> redacted_url("postgresql://bee:secret@db:5432/swarm")
        'postgresql://bee:***@db:5432/swarm'
    """
    scheme, sep, rest = url.partition("://")
    userinfo, at, tail = rest.rpartition("@")
    if at and ":" in userinfo:
        userinfo = userinfo.split(":", 1)[0] + ":***"
    elif at and userinfo:
        userinfo = "***"  # a bare token (consul://TOKEN@host) is a secret too
    return f"{scheme}{sep}{userinfo}{at}{tail}"


@dataclass(frozen=True, slots=True, kw_only=True)
class SwarmSettings:
    """What a swarm process runs against; see :class:`swarm.service.SwarmService`.

    Attributes:
        redis_url: Redis server (``redis://``, ``rediss://``, ``redis+cluster://``,
            ``unix:///path/redis.sock``);
            ``None`` for the embedded in-process runtime.
        consul_url: Consul agent (``consul://``, ``consuls://``, ``http(s)://``);
            ``None`` for none (leadership then rests on a Redis lease).
        postgres_url: PostgreSQL DSN of the memory coordinator's durable tier;
            ``None`` keeps memory in the process.
        agents: ``module:factory`` returning the agents to run (or a
            :class:`~swarm.service.Bundle`); ``None`` for the installed
            ``queenswarm.agents`` entry point named ``default``.
        http: ``HOST:PORT`` of the HTTP API; ``None`` serves none.
        tokens_file: File of API tokens (``ROLE SHA256HEX [NAME]`` per line).
        tokens: API tokens from the environment, ``ROLE:SECRET`` (already split).
        lease_ttl: TTL of the Queen's leadership lease and of Consul checks.
        leader_timeout: Longest wait of a Queen that must lead to run a job;
            ``None`` waits as long as it takes.
        drain_timeout: Longest wait for in-flight work on shutdown.
        task_timeout: Longest wait for any one task of the bundled job.
        log_level: One of :data:`LOG_LEVELS`.
        log_json: Render logs as JSON lines instead of console text.
        retention: Seconds a finished task's record stays in Redis (then
            only the task history in ``postgres_url`` has it).
        inbox_maxlen: Approximate cap of a result inbox stream.
        inbox_ttl: Seconds a result inbox outlives its process.
        history_keep: Without PostgreSQL, finished records a process keeps
            (in Redis, or in its memory when embedded) at most.
        redis_fastpath: Let the Redis clients use the fast paths over redis-py
            internals (:mod:`swarm.redis.fastpath`, only on a verified redis-py);
            False keeps them on redis-py's public API.
        llm: The model layer's settings (offline without ``ANTHROPIC_API_KEY``).
    """

    redis_url: str | None = None
    consul_url: str | None = None
    postgres_url: str | None = None
    agents: str | None = None
    http: str | None = None
    tokens_file: str | None = None
    tokens: tuple[str, ...] = ()
    lease_ttl: float = 10.0
    leader_timeout: float | None = 30.0
    drain_timeout: float = 30.0
    task_timeout: float = 60.0
    log_level: str = "warning"
    log_json: bool = False
    retention: float = _HISTORY.retention
    inbox_maxlen: int = _HISTORY.inbox_maxlen
    inbox_ttl: float = _HISTORY.inbox_ttl
    history_keep: int = _HISTORY.keep
    redis_fastpath: bool = True
    llm: LlmSettings = dataclasses.field(default_factory=LlmSettings)

    def __post_init__(self) -> None:
        if self.log_level not in LOG_LEVELS:
            raise ConfigError(f"log level {self.log_level!r} is not one of {', '.join(LOG_LEVELS)}")
        if self.agents is not None:
            module, sep, attr = self.agents.partition(":")
            if not (module and sep and attr):
                raise ConfigError(f"agents {self.agents!r} must look like 'package.module:factory'")
        if self.redis_url is not None:
            _check_url("redis", self.redis_url, REDIS_SCHEMES)
        if self.consul_url is not None:
            _check_url("consul", self.consul_url, CONSUL_SCHEMES)
        if self.postgres_url is not None:
            _check_url("postgres", self.postgres_url, POSTGRES_SCHEMES)
        if self.http is not None:
            _http_address(self.http)
        check_positive("lease TTL", self.lease_ttl)
        check_positive("leader timeout", self.leader_timeout)
        check_positive("drain timeout", self.drain_timeout, zero=True)
        check_positive("task timeout", self.task_timeout)
        _ = self.history  # validates the retention and inbox bounds

    @property
    def history(self) -> HistorySettings:
        """Retention, inbox bounds and the task history (in ``postgres_url``'s database).

        The history keeps its own schema (``queenswarm_history``): a ``schema``
        parameter of ``postgres_url`` is the memory tier's.
        """
        return HistorySettings(
            dsn=None if self.postgres_url is None else _without_schema(self.postgres_url),
            retention=self.retention,
            inbox_maxlen=self.inbox_maxlen,
            inbox_ttl=self.inbox_ttl,
            keep=self.history_keep,
        )

    @property
    def http_address(self) -> tuple[str, int] | None:
        """``(host, port)`` of the HTTP API, or ``None``."""
        return None if self.http is None else _http_address(self.http)

    @property
    def shared(self) -> bool:
        """Whether other processes may share this swarm (then Queens elect a leader)."""
        return self.redis_url is not None or self.consul_url is not None

    @classmethod
    def from_dsn(cls, dsn: str, **overrides: object) -> SwarmSettings:
        """Settings for a Redis-backed swarm at ``dsn`` (``redis://user:pass@host:port/db``).

        Raises:
            ConfigError: The DSN is not a Redis URL.
        """
        return cls(redis_url=dsn, **overrides)  # type: ignore[arg-type]

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> SwarmSettings:
        """Read the ``SWARM_*`` variables from ``environ``; empty means unset.

        ``SWARM_REDIS_URL``, ``SWARM_CONSUL_URL``, ``SWARM_POSTGRES_URL``,
        ``SWARM_AGENTS``, ``SWARM_HTTP``, ``SWARM_TOKENS_FILE``, ``SWARM_TOKENS``
        (``ROLE:SECRET`` separated by commas), ``SWARM_LOG_LEVEL``, ``SWARM_LOG_JSON``,
        ``SWARM_RETENTION``, ``SWARM_INBOX_MAXLEN``, ``SWARM_INBOX_TTL``, ``SWARM_HISTORY_KEEP``,
        ``SWARM_REDIS_FASTPATH`` (default on); the model layer's (``ANTHROPIC_API_KEY``,
        ``SWARM_LLM*``) through :meth:`~swarm.llm.settings.LlmSettings.from_env`.

        Raises:
            ConfigError: A value is invalid.
        """
        tokens = tuple(t.strip() for t in environ.get("SWARM_TOKENS", "").split(",") if t.strip())
        history = history_from_env(environ)
        return cls(
            redis_url=environ.get("SWARM_REDIS_URL") or None,
            consul_url=environ.get("SWARM_CONSUL_URL") or None,
            postgres_url=environ.get("SWARM_POSTGRES_URL") or None,
            agents=environ.get("SWARM_AGENTS") or None,
            http=environ.get("SWARM_HTTP") or None,
            tokens_file=environ.get("SWARM_TOKENS_FILE") or None,
            tokens=tokens,
            log_level=(environ.get("SWARM_LOG_LEVEL") or "warning").lower(),
            log_json=_flag("SWARM_LOG_JSON", environ.get("SWARM_LOG_JSON", "")),
            retention=history.retention,
            inbox_maxlen=history.inbox_maxlen,
            inbox_ttl=history.inbox_ttl,
            history_keep=history.keep,
            redis_fastpath=_flag(
                "SWARM_REDIS_FASTPATH", environ.get("SWARM_REDIS_FASTPATH", "").strip() or "1"
            ),
            llm=LlmSettings.from_env(environ),
        )

    def replace(self, **changes: object) -> SwarmSettings:
        """A copy with ``changes`` applied (validated again)."""
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]


def _without_schema(dsn: str) -> str:
    parts = urlsplit(dsn)
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k != "schema"]
    return urlunsplit(parts._replace(query=urlencode(query)))


def _check_url(what: str, url: str, schemes: tuple[str, ...]) -> None:
    parts = urlsplit(url)
    if parts.scheme not in schemes or not (parts.netloc or parts.path):
        allowed = ", ".join(f"{s}://" for s in schemes)
        raise ConfigError(f"{what} URL {redacted_url(url)!r} must start with one of {allowed}")


def _http_address(text: str) -> tuple[str, int]:
    host, sep, port_text = text.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port_text.isdigit() or not 0 <= int(port_text) < 65536:
        raise ConfigError(f"HTTP address {text!r} must look like HOST:PORT, e.g. 127.0.0.1:8080")
    return host, int(port_text)
