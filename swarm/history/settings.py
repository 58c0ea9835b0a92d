"""How long Redis keeps what, and where finished tasks go: :class:`HistorySettings`.

Redis holds live work; PostgreSQL holds history. A finished task's record
stays in Redis ``retention`` seconds (so a submitter that looks a moment
later finds it there), is written to the PostgreSQL history table in
batches, and then leaves Redis. Without a ``dsn`` there is no history table:
Redis keeps a finished record ``retention`` seconds, and each settling
process deletes its oldest ones early past ``keep`` records.

Example:
    >>> from swarm.history.settings import HistorySettings
    >>> s = HistorySettings.from_dsn("postgresql://pg.local/ops?schema=hist&retention=120")
    >>> s.dsn, s.schema, s.retention
    ('postgresql://pg.local/ops', 'hist', 120.0)
    >>> HistorySettings().retention_seconds
    300
"""

from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from swarm.errors import ConfigError

__all__ = ["DEFAULT_INBOX_MAXLEN", "DEFAULT_INBOX_TTL", "DEFAULT_RETENTION", "HistorySettings"]

#: Seconds a finished task's record stays in Redis.
DEFAULT_RETENTION = 300.0
#: Approximate entries an inbox stream is capped at (a reader normally
#: trims it as it reads; the cap bounds an inbox whose reader stalls).
DEFAULT_INBOX_MAXLEN = 10_000
#: Seconds an inbox outlives the last sign of life of its owner.
DEFAULT_INBOX_TTL = 60.0

_IDENT = re.compile(r"[a-z_][a-z0-9_]{0,62}")
_FLOATS = ("retention", "inbox_ttl", "flush_interval", "command_timeout")
_INTS = ("inbox_maxlen", "keep", "batch_max", "buffer_max", "pool_size")


@dataclass(frozen=True, slots=True, kw_only=True)
class HistorySettings:
    """Retention of finished tasks in Redis, inbox bounds, and the PostgreSQL task history.

    Attributes:
        dsn: PostgreSQL URL of the task history, or None for none (Redis
            then keeps finished records by age and count only).
        schema: Schema of the history table (created on start).
        retention: Seconds a finished task's record stays in Redis.
        keep: Without a history table: finished records a settling process
            keeps in Redis at most; it deletes its oldest ones past that.
        inbox_maxlen: Approximate cap of an inbox stream's entries.
        inbox_ttl: Seconds an inbox outlives its owner (refreshed while it lives).
        batch_max: Most records written to PostgreSQL in one statement.
        flush_interval: Seconds a finished record may wait for its batch.
        buffer_max: Records buffered while PostgreSQL is down; past that the
            oldest are dropped from the buffer (they stay in Redis until
            ``retention`` ends) and counted.
        pool_size: PostgreSQL connections of the history.
        command_timeout: Seconds one PostgreSQL statement may take.
    """

    dsn: str | None = field(default=None, repr=False)
    schema: str = "queenswarm_history"
    retention: float = DEFAULT_RETENTION
    keep: int = 100_000
    inbox_maxlen: int = DEFAULT_INBOX_MAXLEN
    inbox_ttl: float = DEFAULT_INBOX_TTL
    batch_max: int = 5000
    flush_interval: float = 0.2
    buffer_max: int = 500_000
    pool_size: int = 4
    command_timeout: float = 30.0

    def __post_init__(self) -> None:
        if self.dsn is not None and urlsplit(self.dsn).scheme not in ("postgres", "postgresql"):
            raise ConfigError("history DSN must start with postgresql:// or postgres://")
        if not _IDENT.fullmatch(self.schema):
            raise ConfigError(f"history schema {self.schema!r} is not a lowercase SQL identifier")
        for name in _FLOATS:
            value = getattr(self, name)
            if not (isinstance(value, int | float) and math.isfinite(value) and value > 0):
                raise ConfigError(f"{name} must be a positive number of seconds: {value!r}")
        if self.retention < 1:
            raise ConfigError(f"retention must be at least 1 second: {self.retention!r}")
        for name in _INTS:
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ConfigError(f"{name} must be a positive integer: {value!r}")
        if self.inbox_maxlen < 100:
            raise ConfigError("inbox_maxlen below 100 would cut results before they are read")
        if self.inbox_ttl < 5:
            raise ConfigError("inbox_ttl must be at least 5 seconds (it is refreshed every 2)")

    @property
    def retention_seconds(self) -> int:
        """``retention`` as whole seconds (the TTL Redis takes), at least 1."""
        return max(1, math.ceil(self.retention))

    @property
    def inbox_ttl_ms(self) -> int:
        """``inbox_ttl`` in milliseconds (``PEXPIRE``)."""
        return max(1, round(self.inbox_ttl * 1000))

    def replace(self, **changes: Any) -> HistorySettings:
        """A copy with ``changes`` applied (validated again)."""
        try:
            return dataclasses.replace(self, **changes)
        except TypeError as exc:
            raise ConfigError(str(exc)) from None

    @classmethod
    def from_dsn(cls, dsn: str | None, **overrides: Any) -> HistorySettings:
        """Parse ``postgresql://...[?schema=name&retention=s&...]``; keyword overrides win.

        The query may set any field but ``dsn``; other query parameters stay
        in the DSN for the PostgreSQL driver. ``None`` gives settings without
        a history table.

        Raises:
            ConfigError: Not a PostgreSQL URL, or an option is invalid.
        """
        if dsn is None:
            return cls(**overrides)
        parts = urlsplit(dsn)
        if parts.scheme not in ("postgres", "postgresql"):
            raise ConfigError("history DSN must start with postgresql:// or postgres://")
        ours: dict[str, Any] = {}
        rest: list[tuple[str, str]] = []
        for key, raw in parse_qsl(parts.query, keep_blank_values=True):
            if key == "schema":
                ours[key] = raw
            elif key in _FLOATS:
                ours[key] = _number(key, raw, float)
            elif key in _INTS:
                ours[key] = _number(key, raw, int)
            else:
                rest.append((key, raw))
        clean = urlunsplit(parts._replace(query=urlencode(rest)))
        ours.update(overrides)
        try:
            return cls(dsn=clean, **ours)
        except TypeError as exc:
            raise ConfigError(str(exc)) from None


def _number(name: str, raw: str, kind: type[int] | type[float]) -> int | float:
    try:
        return kind(raw)
    except ValueError:
        raise ConfigError(f"history option {name} must be a number: {raw!r}") from None
