"""The retention and task-history options of both CLIs (queen and agent).

Both CLIs add the same options with :func:`add_options` and build a
:class:`~swarm.history.HistorySettings` with :func:`settings_from`; the
environment is handed in by the CLI (options win over it).

Example:
    >>> import argparse
    >>> p = argparse.ArgumentParser()
    >>> add_options(p)
    >>> args = p.parse_args(["--retention", "90", "--inbox-maxlen", "5000"])
    >>> s = settings_from(args, {"SWARM_POSTGRES_URL": "postgresql://db/h"})
    >>> s.dsn, s.retention, s.inbox_maxlen
    ('postgresql://db/h', 90.0, 5000)
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from typing import Any

from swarm.errors import ConfigError
from swarm.history.settings import DEFAULT_INBOX_MAXLEN, DEFAULT_INBOX_TTL, HistorySettings

__all__ = ["ENVIRONMENT", "add_options", "from_env", "settings_from"]

#: Environment variable of each option (options win).
ENVIRONMENT = {
    "postgres": "SWARM_POSTGRES_URL",
    "retention": "SWARM_RETENTION",
    "inbox_maxlen": "SWARM_INBOX_MAXLEN",
    "inbox_ttl": "SWARM_INBOX_TTL",
    "keep": "SWARM_HISTORY_KEEP",
}
_KINDS: dict[str, type[int] | type[float]] = {
    "retention": float,
    "inbox_maxlen": int,
    "inbox_ttl": float,
    "keep": int,
}


def add_options(parser: argparse.ArgumentParser, *, postgres: bool = True) -> None:
    """Add ``--retention``, ``--inbox-maxlen``, ``--inbox-ttl``, ``--keep`` (and ``--postgres``).

    ``postgres=False`` for a CLI whose ``--postgres`` exists already (the
    swarm's one database: memory tier and task history).
    """
    g = parser.add_argument_group(
        "task history and Redis retention",
        "Redis holds live work; finished tasks go to the PostgreSQL task history (--postgres).",
    )
    if postgres:
        g.add_argument(
            "--postgres",
            metavar="DSN",
            help="PostgreSQL task history, postgresql://...[?schema=name] ($SWARM_POSTGRES_URL);"
            " without it finished tasks are kept in Redis only (by --retention and --keep)",
        )
    g.add_argument(
        "--retention",
        type=float,
        metavar="SECONDS",
        help="seconds a finished task's record stays in Redis (default: 300)",
    )
    g.add_argument(
        "--inbox-maxlen",
        type=int,
        metavar="N",
        help=f"approximate cap of a result inbox stream (default: {DEFAULT_INBOX_MAXLEN})",
    )
    g.add_argument(
        "--inbox-ttl",
        type=float,
        metavar="SECONDS",
        help=f"seconds a result inbox outlives its process (default: {DEFAULT_INBOX_TTL:g})",
    )
    g.add_argument(
        "--keep",
        type=int,
        metavar="N",
        help="without --postgres: finished records this process keeps in Redis at most "
        "(default: 100000)",
    )


def from_env(environ: Mapping[str, str]) -> HistorySettings:
    """:class:`HistorySettings` from the variables of :data:`ENVIRONMENT` (empty means unset).

    Raises:
        ConfigError: A value is invalid.
    """
    return settings_from(argparse.Namespace(), environ)


def settings_from(args: argparse.Namespace, environ: Mapping[str, str]) -> HistorySettings:
    """:class:`HistorySettings` from the environment, overridden by the options.

    Raises:
        ConfigError: A value is invalid.
    """
    values: dict[str, Any] = {}
    for name, var in ENVIRONMENT.items():
        option = getattr(args, name, None)
        if option is not None:
            values[name] = option
        elif environ.get(var):
            raw = environ[var]
            kind = _KINDS.get(name)
            if kind is None:
                values[name] = raw
                continue
            try:
                values[name] = kind(raw)
            except ValueError:
                raise ConfigError(f"{var}={raw!r} is not a number") from None
    dsn = values.pop("postgres", None)
    return HistorySettings.from_dsn(dsn, **values)
