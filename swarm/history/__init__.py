"""Task history: finished tasks leave Redis for PostgreSQL.

Redis holds live work (queued and running tasks); a finished task's record
stays there :attr:`HistorySettings.retention` seconds, is written in batches
to a PostgreSQL table by :class:`HistoryWriter` and read back through
:class:`TaskHistory` (the runtime's ``history``; ``get`` falls through to
it when Redis no longer has the record).

Example:
    >>> from swarm.history import HistorySettings
    >>> HistorySettings.from_dsn("postgresql://127.0.0.1/db?retention=60").retention
    60.0
"""

from swarm.history.memory import LIVE_STATES, LedgerHistory
from swarm.history.settings import (
    DEFAULT_INBOX_MAXLEN,
    DEFAULT_INBOX_TTL,
    DEFAULT_RETENTION,
    HistorySettings,
)
from swarm.history.store import LiveTasks, PostgresHistory, TaskHistory, check_query
from swarm.history.writer import HistoryWriter, RecordSink

__all__ = [
    "DEFAULT_INBOX_MAXLEN",
    "DEFAULT_INBOX_TTL",
    "DEFAULT_RETENTION",
    "LIVE_STATES",
    "HistorySettings",
    "HistoryWriter",
    "LedgerHistory",
    "LiveTasks",
    "PostgresHistory",
    "RecordSink",
    "TaskHistory",
    "check_query",
]
