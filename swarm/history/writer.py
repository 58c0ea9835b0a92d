"""Moves finished task records out of Redis: to the history table, or just away.

The settling process hands every finished record to :meth:`HistoryWriter.add`
(a list append on the hot path). With a PostgreSQL history, one background
loop writes them in batches; Redis keeps each record ``retention`` seconds
meanwhile, so a write that waits for PostgreSQL to come back loses nothing
unless the wait outlasts the buffer. Without one, the loop deletes this
process's oldest finished records from Redis once it holds more than
``keep`` (their age is bounded by the record TTL anyway).

The loop survives any error: it logs, counts, backs off and goes on.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import msgspec
import structlog

from swarm.errors import HistoryUnavailable
from swarm.history.settings import HistorySettings
from swarm.ledger import TaskRecord
from swarm.metrics import HISTORY_DROPPED, HISTORY_FAILURES, HISTORY_WRITTEN

__all__ = ["HistoryWriter", "RecordSink"]

_log = structlog.get_logger("swarm.history.writer")
_DECODER = msgspec.msgpack.Decoder(TaskRecord)

#: Writes a batch of finished records (``PostgresHistory.write``).
RecordSink = Callable[[Sequence[TaskRecord]], Awaitable[None]]
#: Deletes the Redis records of finished task ids (the count bound without a history).
Evict = Callable[[list[str]], Awaitable[Any]]


class HistoryWriter:
    """Batches finished records to a sink, or bounds their count in Redis.

    Args:
        settings: Batch size, flush interval, buffer bound and ``keep``.
        sink: Where batches go; None when there is no history table.
        evict: Without a sink: deletes the Redis records of the given task
            ids (called with this process's oldest past ``keep``).
    """

    def __init__(
        self, settings: HistorySettings, *, sink: RecordSink | None, evict: Evict | None = None
    ) -> None:
        if sink is None and evict is None:
            raise ValueError("a HistoryWriter needs a sink or an evict callback")
        self.settings = settings
        self._sink = sink
        self._evict = evict
        self._notes: list[bytes] = []
        self._ids: deque[str] = deque()
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self.written = 0
        self.dropped = 0

    @property
    def buffered(self) -> int:
        """Records waiting for their batch."""
        return len(self._notes)

    def add(self, task_id: str, note: bytes) -> None:
        """Take a finished record (``note``: the MessagePack of its :class:`TaskRecord`)."""
        if self._sink is not None:
            notes = self._notes
            notes.append(note)
            if len(notes) == 1 or len(notes) >= self.settings.batch_max:
                self._idle.clear()
                self._wake.set()
        else:
            ids = self._ids
            ids.append(task_id)
            if len(ids) > self.settings.keep:
                self._wake.set()

    async def flushed(self, timeout: float | None = None) -> bool:
        """Wait until every record taken so far was written; False on timeout."""
        if self._sink is None or (not self._notes and self._idle.is_set()):
            return True
        try:
            async with asyncio.timeout(timeout):
                await self._idle.wait()
        except TimeoutError:
            return False
        return True

    async def run(self) -> None:
        """Write (or evict) until cancelled; a failing pass is logged and retried."""
        failures = 0
        while True:
            await self._wake.wait()
            try:
                if self._sink is not None:
                    await self._flush_some(self._sink)
                else:
                    await self._evict_some()
                failures = 0
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                failures += 1
                HISTORY_FAILURES.inc()
                # HistoryUnavailable is the expected one (PostgreSQL down);
                # anything else is a bug, logged with its type, and retried.
                level = _log.warning if isinstance(exc, HistoryUnavailable) else _log.error
                level("task history write failed", error=repr(exc), failures=failures)
                await asyncio.sleep(min(5.0, 0.1 * 2 ** min(failures, 6)))

    async def _flush_some(self, sink: RecordSink) -> None:
        s = self.settings
        notes = self._notes
        if len(notes) < s.batch_max:
            # Let a batch gather (the first record of a burst woke us).
            await asyncio.sleep(s.flush_interval)
        batch = notes[: s.batch_max]
        del notes[: s.batch_max]
        if not notes:
            self._wake.clear()
        try:
            records = [_DECODER.decode(n) for n in batch]
            started = time.monotonic()
            await sink(records)
        except BaseException:
            # Back to the front, bounded: past the bound the oldest go (they
            # are still in Redis until their retention ends).
            notes[:0] = batch
            excess = len(notes) - s.buffer_max
            if excess > 0:
                del notes[:excess]
                self.dropped += excess
                HISTORY_DROPPED.inc(excess)
            self._wake.set()
            raise
        self.written += len(records)
        HISTORY_WRITTEN.inc(len(records))
        if not notes:
            self._idle.set()
        took = time.monotonic() - started
        _log.debug("history batch written", records=len(records), seconds=took)

    async def _evict_some(self) -> None:
        assert self._evict is not None
        ids = self._ids
        excess = len(ids) - self.settings.keep
        self._wake.clear()
        if excess <= 0:
            return
        gone = [ids.popleft() for _ in range(excess)]
        try:
            await self._evict(gone)
        except BaseException:
            ids.extendleft(reversed(gone))
            self._wake.set()
            raise
