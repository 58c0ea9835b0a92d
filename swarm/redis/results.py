"""Results of the Redis runtime: the submitter's inbox, waiters and outstanding tasks.

An agent that settles a task appends the final record to the submitting
node's inbox stream; the node's inbox reader resolves the waiters. Notes in a
stream may be lost with a server restart, so the ledger stays the truth:
waiters poll it for tasks waiting a while, and ``wait()`` reads it first, so a
reconnected submitter still gets its results.

The inbox belongs to its reader: the reader trims the entries it has read
(``XTRIM MINID``) and keeps a TTL on the stream while it lives, so the inbox
of a node that exited or died expires ``inbox_ttl`` seconds later. Settling
agents append with ``NOMKSTREAM``: a late result never brings an expired
inbox back (its task's record says how it ended).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import msgspec
import structlog
from redis.exceptions import RedisError

from swarm.codec import DECODE_FAILURES
from swarm.errors import DecodeError, SwarmTimeout
from swarm.ledger import FINAL_STATES, TaskRecord
from swarm.messages import Envelope
from swarm.metrics import REJECTED
from swarm.redis.connections import close_dedicated, dedicated
from swarm.redis.core import Core, check_cancelled
from swarm.redis.ledger import record_from_hash
from swarm.redis.streams import flat_fields, stream_pairs

if TYPE_CHECKING:
    from swarm.redis.intake import Intake

__all__ = ["INBOX_KEEP", "Results", "next_id"]

_log = structlog.get_logger("swarm.redis.results")

_BAD_NOTE: tuple[type[Exception], ...] = (DecodeError, *DECODE_FAILURES)
_RECORD_DECODER = msgspec.msgpack.Decoder(TaskRecord)
_RECORDS_DECODER = msgspec.msgpack.Decoder(list[TaskRecord])
_SWEEP_EVERY = 2.0
# An inbox is trimmed once this many results were read since its last trim,
# or this many seconds after it: it holds at most about a second of results.
_TRIM_AFTER = 500
_TRIM_EVERY = 0.5

# KEYS: inbox. ARGV: first entry id to keep ("": trim nothing), TTL in ms.
# (Re)creates the inbox empty when it is gone (first start, or it expired
# while this node could not reach Redis), trims what the reader has read,
# and renews the TTL that ends it once its reader is gone.
INBOX_KEEP = """
if redis.call('EXISTS', KEYS[1]) == 0 then
  redis.call('XADD', KEYS[1], 'MAXLEN', '0', '*', 'x', '')
end
if ARGV[1] ~= '' then redis.call('XTRIM', KEYS[1], 'MINID', ARGV[1]) end
return redis.call('PEXPIRE', KEYS[1], ARGV[2])
"""


def next_id(entry_id: bytes) -> str:
    """The smallest stream id after ``entry_id`` (``XTRIM MINID`` keeps it and later ones)."""
    ms, _, seq = entry_id.partition(b"-")
    return f"{int(ms)}-{int(seq or b'0') + 1}"


class Results:
    """Tracks the tasks this node submitted and resolves their waiters.

    Args:
        core: The runtime's shared state.
    """

    def __init__(self, core: Core) -> None:
        self._core = core
        self._waiters: dict[str, list[asyncio.Future[TaskRecord]]] = {}
        # expect()'s waiters, one per task and no list each (the send path).
        self._expected: dict[str, asyncio.Future[TaskRecord]] = {}
        self.pending: dict[str, Envelope] = {}
        self.idle = asyncio.Event()
        self.idle.set()
        #: The last inbox entry read (set before the reader starts).
        self.position = b"0-0"

    def track(self, env: Envelope) -> None:
        """Count ``env`` as outstanding until its result arrives."""
        pending = self.pending
        if not pending:
            # Set exactly while nothing is pending: clear it only when that ends.
            self.idle.clear()
        pending[env.id] = env

    def untrack(self, task_id: str) -> None:
        """Stop counting a task as outstanding."""
        if self.pending.pop(task_id, None) is not None and not self.pending:
            self.idle.set()

    def cancel_waiters(self) -> None:
        """Cancel every waiter (the runtime stops)."""
        for waiters in self._waiters.values():
            for fut in waiters:
                if not fut.done():
                    fut.cancel()
        for fut in self._expected.values():
            if not fut.done():
                fut.cancel()

    async def read_inbox(self) -> None:
        """Read this node's inbox from after :attr:`position` until cancelled.

        The position moves past an entry before it is handled: a reader
        restarted by its supervisor does not meet the same entry again.
        """
        # One connection for the blocking reads, kept across them; replies as
        # the server sent them (redis-py's XREAD callback changes shape with
        # the protocol, and builds a dict per entry).
        blocking = dedicated(self._core.blocking, raw=("XREAD",))
        try:
            await self._read_inbox(self.position, blocking)
        finally:
            await close_dedicated(blocking, self._core.blocking)

    async def _read_inbox(self, last: bytes, blocking: Any) -> None:
        core = self._core
        failures = 0
        last_sweep = time.monotonic()
        inbox = core.inbox
        on_result = self._on_result
        ttl_ms = core.history.inbox_ttl_ms
        touch_every = core.history.inbox_ttl / 4
        touched = time.monotonic()
        unkept = 0
        while True:
            check_cancelled()
            try:
                reply = await blocking.xread({inbox: last}, count=1000, block=core.block_ms)
                failures = 0
            except (RedisError, OSError) as exc:
                check_cancelled()
                failures += 1
                _log.warning("inbox read failed", error=repr(exc))
                await asyncio.sleep(min(2.0, 0.05 * 2 ** min(failures, 6)))
                continue
            for _key, items in stream_pairs(reply):
                unkept += len(items)
                for entry_id, fields in items:
                    last = self.position = entry_id
                    on_result(fields)
            now = time.monotonic()
            if unkept and (unkept >= _TRIM_AFTER or now - touched > _TRIM_EVERY):
                # What was read is trimmed, in the round trip the results'
                # waiters queue next (no round trip of its own); batched, so
                # a busy inbox costs one trim per few hundred results.
                self._keep(inbox, next_id(last), ttl_ms)
                touched, unkept = now, 0
            elif now - touched > touch_every:
                touched = now
                self._keep(inbox, "", ttl_ms)
            if reply:
                # Let the resolved waiters run, and the round trip they queue
                # (a sequential submitter's next task) go out before our next
                # read, which cannot return before that task's result anyway.
                await asyncio.sleep(0)
                await core.batch.written()
            if self.pending and time.monotonic() - last_sweep > _SWEEP_EVERY:
                last_sweep = time.monotonic()
                await self._sweep()

    def _keep(self, inbox: str, first: str, ttl_ms: int) -> None:
        def build(pipe: Any) -> None:
            pipe.eval(INBOX_KEEP, 1, inbox, first, ttl_ms)

        self._core.batch.enqueue(build)

    def _on_result(self, fields: list[bytes] | dict[bytes, bytes]) -> None:
        # An entry holds one note ("r") or, from a settle script that
        # finished several of our tasks, an array of them ("rs"). Its fields
        # come flat from a raw read, as a dict from redis-py's (Cluster).
        fields = flat_fields(fields)
        try:
            if len(fields) != 2:
                raise DecodeError(f"{len(fields) // 2} fields, not one")
            name, data = fields
            if name == b"r":
                records: list[TaskRecord] | tuple[TaskRecord] = (_RECORD_DECODER.decode(data),)
            elif name == b"rs":
                records = _RECORDS_DECODER.decode(data)
            else:
                raise DecodeError("no record field")
        except _BAD_NOTE as exc:
            REJECTED.labels(reason="malformed_result").inc()
            _log.warning("rejected inbox entry", error=repr(exc))
            return
        resolve = self._resolve
        for record in records:
            if record.state in FINAL_STATES:  # record.final, without a call per task
                resolve(record)

    def resolve_final(self, record: TaskRecord) -> None:
        """Resolve the waiters of a task that ended outside a settle (e.g. cancelled)."""
        if record.final:
            self._resolve(record)

    def _resolve(self, record: TaskRecord) -> None:
        # A waiter resolved with a record is no longer registered (its
        # submitter need not forget it).
        task_id = record.task_id
        pending = self.pending
        if pending.pop(task_id, None) is not None and not pending:
            self.idle.set()
        expected = self._expected.pop(task_id, None)
        if expected is not None and not expected.done():
            expected.set_result(record)
        if self._waiters:
            for fut in self._waiters.pop(task_id, ()):
                if not fut.done():
                    fut.set_result(record)

    async def _sweep(self) -> None:
        # Results are notes in a stream that a server restart may have lost:
        # the ledger is the truth, so poll it for tasks waiting a while.
        core = self._core
        ledger = core.ledger
        ids = list(self.pending)[:5000]
        try:
            pipe = core.redis.pipeline(transaction=False)
            for task_id in ids:
                pipe.hgetall(ledger.key(task_id))
            raws = await pipe.execute()
        except (RedisError, OSError) as exc:
            check_cancelled()
            _log.warning("ledger sweep failed", error=repr(exc))
            return
        for raw in raws:
            if raw:
                record = record_from_hash(raw)
                if record.final:
                    self._resolve(record)

    async def submit_and_wait(
        self,
        env: Envelope,
        submit: Callable[[Envelope], Awaitable[str]],
        *,
        timeout: float | None = None,
        queue: Intake | None = None,
    ) -> TaskRecord:
        """Submit ``env`` with ``submit`` and wait for its final record.

        The waiter exists before the submit: the inbox reader may read the
        result before the submit's own reply has been read (both arrive
        together when the task is quick), and a waiter registered after the
        submit would then find the task settled and read its record from the
        ledger, one round trip more.

        With ``queue``, a task that :meth:`Intake.queue` takes is submitted
        without a coroutine of its own (``submit`` takes the others).
        (Without a timeout, :meth:`Intake.queue_watched` is cheaper still.)

        Raises:
            SwarmTimeout: No final record within ``timeout`` seconds of the submit.
        """
        fut = self.expect(env.id)
        try:
            queued = queue.queue(env) if queue is not None else None
            if queue is None or queued is None:
                task_id = await submit(env)
            else:
                # Awaits the store's reply itself: no submit coroutine per task.
                task_id = queue.accepted(queued[0], await queued[1])
            if task_id != env.id:
                # An idempotent duplicate: the earlier task's result.
                return await self.wait(task_id, timeout=timeout)
            if timeout is None:
                return await fut
            try:
                async with asyncio.timeout(timeout):
                    return await fut
            except TimeoutError:
                raise SwarmTimeout(f"task {task_id} not finished within {timeout}s") from None
        finally:
            self.forget(env.id, fut)

    def expect(self, task_id: str) -> asyncio.Future[TaskRecord]:
        """A waiter for a task about to be submitted here, resolved like :meth:`wait`'s.

        Registered before the submit, so a result that arrives before the
        submitter resumes still finds it. Pair with :meth:`forget`.
        """
        fut: asyncio.Future[TaskRecord] = asyncio.get_running_loop().create_future()
        if task_id in self._expected:
            self._waiters.setdefault(task_id, []).append(fut)
        else:
            self._expected[task_id] = fut
        return fut

    def expect_tracked(self, env: Envelope) -> asyncio.Future[TaskRecord]:
        """:meth:`track` and :meth:`expect` of a task about to be submitted here, in one call."""
        pending = self.pending
        if not pending:
            self.idle.clear()
        pending[env.id] = env
        fut: asyncio.Future[TaskRecord] = asyncio.get_running_loop().create_future()
        task_id = env.id
        if task_id in self._expected:
            self._waiters.setdefault(task_id, []).append(fut)
        else:
            self._expected[task_id] = fut
        return fut

    def forget(self, task_id: str, fut: asyncio.Future[TaskRecord]) -> None:
        """Drop a waiter from :meth:`expect` (resolved, or the submit failed)."""
        if self._expected.get(task_id) is fut:
            del self._expected[task_id]
            return
        waiters = self._waiters.get(task_id)
        if waiters and fut in waiters:
            waiters.remove(fut)
            if not waiters:
                del self._waiters[task_id]

    async def wait(self, task_id: str, *, timeout: float | None = None) -> TaskRecord:
        """Wait for a task's final record (see :meth:`swarm.runtime.Runtime.wait`)."""
        fut: asyncio.Future[TaskRecord] = asyncio.get_running_loop().create_future()
        if timeout is None and task_id in self.pending and task_id not in self._waiters:
            # The common case (our own task, one waiter, no deadline): no
            # timeout scope and no list.
            self._waiters[task_id] = [fut]
            try:
                return await fut
            finally:
                if self._waiters.get(task_id) == [fut]:
                    del self._waiters[task_id]
        self._waiters.setdefault(task_id, []).append(fut)
        try:
            async with asyncio.timeout(timeout):
                if task_id in self.pending:
                    # Ours and not finished: the inbox reader resolves ``fut``
                    # (or the ledger sweep does, should the note be lost).
                    return await fut
                rec = await self._get_record(task_id)
                if rec is None:
                    raise KeyError(task_id)
                if rec.final:
                    return rec
                if task_id not in self.pending and rec.recipient:
                    # Submitted elsewhere (or before a restart): poll the
                    # ledger besides listening to our inbox.
                    return await self._poll(task_id, fut)
                return await fut
        except TimeoutError:
            raise SwarmTimeout(f"task {task_id} not finished within {timeout}s") from None
        finally:
            self.forget(task_id, fut)

    async def _get_record(self, task_id: str) -> TaskRecord | None:
        key = self._core.ledger.key(task_id)
        (raw,) = await self._core.batch.call(lambda pipe: pipe.hgetall(key))
        if isinstance(raw, Exception):
            raise raw
        if raw:
            return record_from_hash(raw)
        # Gone from Redis after its retention: the history has it.
        history = self._core.ledger.history
        return await history.get(task_id) if history is not None else None

    async def _poll(self, task_id: str, fut: asyncio.Future[TaskRecord]) -> TaskRecord:
        delay = 0.05
        while True:
            done, _ = await asyncio.wait({fut}, timeout=delay)
            if done:
                return fut.result()
            rec = await self._get_record(task_id)
            if rec is not None and rec.final:
                return rec
            delay = min(1.0, delay * 2)
