"""Settings of a swarm process, as the CLI assembles them.

Environment variables are read only by :mod:`swarm.cli`, which hands the
mapping to :meth:`SwarmSettings.from_env` explicitly; library code takes a
settings object, never the environment.

Example:
    >>> from swarm.settings import SwarmSettings
    >>> s = SwarmSettings.from_env({"SWARM_REDIS_URL": "redis://h:6379/0", "SWARM_LOG_JSON": "1"})
    >>> s.redis_url, s.log_json, s.agents
    ('redis://h:6379/0', True, 'agents:default_swarm')
    >>> SwarmSettings.from_dsn("redis://h:6379/1").redis_url
    'redis://h:6379/1'
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from swarm.errors import ConfigError
from swarm.history.options import from_env as history_from_env
from swarm.history.settings import HistorySettings

__all__ = ["SwarmSettings"]

#: The ``--agents`` factory used when none is configured.
DEFAULT_AGENTS = "agents:default_swarm"
#: Accepted log level names.
LOG_LEVELS = ("debug", "info", "warning", "error", "critical")
_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"", "0", "false", "no", "off"})


def _flag(name: str, value: str) -> bool:
    v = value.strip().lower()
    if v in _TRUE:
        return True
    if v in _FALSE:
        return False
    raise ConfigError(f"{name}={value!r} is not a boolean (use 1/0, true/false, yes/no)")


@dataclass(frozen=True, slots=True, kw_only=True)
class SwarmSettings:
    """What a ``python -m swarm.queen`` process runs against.

    Attributes:
        redis_url: Redis server (``redis://`` or ``rediss://``); ``None`` for the
            embedded in-process runtime.
        consul_url: Consul agent (``http://`` or ``https://``); ``None`` for none.
        agents: ``module:factory`` returning the agents to run.
        log_level: One of :data:`LOG_LEVELS`.
        log_json: Render logs as JSON lines instead of console text.
        history: Retention of finished tasks in Redis, inbox bounds and the
            PostgreSQL task history (``SWARM_POSTGRES_URL``, ``SWARM_RETENTION``,
            ``SWARM_INBOX_MAXLEN``, ``SWARM_INBOX_TTL``, ``SWARM_HISTORY_KEEP``).
    """

    redis_url: str | None = None
    consul_url: str | None = None
    agents: str = DEFAULT_AGENTS
    log_level: str = "warning"
    log_json: bool = False
    history: HistorySettings = field(default_factory=HistorySettings)

    def __post_init__(self) -> None:
        if self.log_level not in LOG_LEVELS:
            raise ConfigError(f"log level {self.log_level!r} is not one of {', '.join(LOG_LEVELS)}")
        module, sep, attr = self.agents.partition(":")
        if not (module and sep and attr):
            raise ConfigError(f"agents {self.agents!r} must look like 'package.module:factory'")
        if self.redis_url is not None:
            _check_url("redis", self.redis_url, ("redis", "rediss", "unix"))
        if self.consul_url is not None:
            _check_url("consul", self.consul_url, ("http", "https"))

    @classmethod
    def from_dsn(cls, dsn: str, **overrides: object) -> SwarmSettings:
        """Settings for a Redis-backed swarm at ``dsn`` (``redis://user:pass@host:port/db``).

        Raises:
            ConfigError: The DSN is not a Redis URL.
        """
        return cls(redis_url=dsn, **overrides)  # type: ignore[arg-type]

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> SwarmSettings:
        """Read ``SWARM_REDIS_URL``, ``SWARM_CONSUL_URL``, ``SWARM_AGENTS``,
        ``SWARM_LOG_LEVEL``, ``SWARM_LOG_JSON`` and the history's variables
        (:data:`swarm.history.options.ENVIRONMENT`) from ``environ``; empty means unset.

        Raises:
            ConfigError: A value is invalid.
        """
        return cls(
            redis_url=environ.get("SWARM_REDIS_URL") or None,
            consul_url=environ.get("SWARM_CONSUL_URL") or None,
            agents=environ.get("SWARM_AGENTS") or DEFAULT_AGENTS,
            log_level=(environ.get("SWARM_LOG_LEVEL") or "warning").lower(),
            log_json=_flag("SWARM_LOG_JSON", environ.get("SWARM_LOG_JSON", "")),
            history=history_from_env(environ),
        )

    def replace(self, **changes: object) -> SwarmSettings:
        """A copy with ``changes`` applied (validated again)."""
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]


def _check_url(what: str, url: str, schemes: tuple[str, ...]) -> None:
    parts = urlsplit(url)
    if parts.scheme not in schemes or not (parts.netloc or parts.path):
        allowed = " or ".join(f"{s}://" for s in schemes)
        raise ConfigError(f"{what} URL {url!r} must start with {allowed}")
