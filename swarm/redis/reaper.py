"""Background upkeep of the Redis runtime: reclaim, promote due retries, trim streams.

* Leases: a local delivery running past the visibility timeout is cancelled
  and redelivered.
* Reclaim: entries of consumers without a heartbeat (their agent died) are
  claimed at once; entries idle past the visibility timeout are claimed
  too, by the least loaded local replica of their role.
* Promotion: retries due in a role's delayed set go back to their stream.
* Trim: acked entries are trimmed from the task streams now and then.
* Burial: a replica without a heartbeat for ``BURY_AFTER`` seconds, whose
  entries the reclaim just took over, leaves the replicas hash, and its own
  stream is deleted (the tasks still aimed at it are dead-lettered).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import msgspec
import structlog
from redis.exceptions import RedisError

from swarm import constants as C
from swarm.errors import HistoryUnavailable
from swarm.history.store import PostgresHistory
from swarm.metrics import HISTORY_FAILURES
from swarm.redis.consumer import Consumer
from swarm.redis.core import BANDS, Core, Replica, check_cancelled
from swarm.redis.directory import BURY_AFTER, Directory, ReplicaBeat
from swarm.redis.settle import Settler
from swarm.redis.streams import BURY, ORPHANS, PROMOTE, RECLAIM, TRIM, parse_entries

__all__ = ["Reaper"]

_log = structlog.get_logger("swarm.redis.reaper")

_TRIM_EVERY = 30.0


class Reaper:
    """Runs the reaper and the retry promoter of one runtime.

    Args:
        core: The runtime's shared state.
        consumer: Takes reclaimed entries in.
        directory: Tells which replicas are alive.
        settler: Records the tasks of a buried agent as dead.
    """

    def __init__(
        self, core: Core, consumer: Consumer, directory: Directory, settler: Settler
    ) -> None:
        self._core = core
        self._consumer = consumer
        self._directory = directory
        self._settler = settler

    async def reap(self) -> None:
        """Expire leases, reclaim entries and trim streams, until cancelled."""
        core = self._core
        interval = min(1.0, core.visibility_timeout / 4)
        min_idle = max(1, int(core.visibility_timeout * 1000))
        last_trim = time.monotonic()
        while True:
            await asyncio.sleep(interval)
            now = time.monotonic()
            for rep in list(core.replicas.values()):
                for d in list(rep.inflight.values()):
                    if d.lease_until < now and d.interrupted is None and d.worker is not None:
                        _log.warning(
                            "visibility timeout; redelivering",
                            task_id=d.envelope.id,
                            agent_id=rep.agent.agent_id,
                        )
                        d.interrupted = "visibility timeout"
                        d.worker.cancel()
            try:
                await self._reclaim(min_idle)
                if now - last_trim > _TRIM_EVERY:
                    last_trim = now
                    await self._trim()
            except (RedisError, OSError) as exc:
                check_cancelled()
                _log.warning("reaper pass failed", error=repr(exc))

    async def _reclaim(self, min_idle: int) -> None:
        # The least loaded replica takes a dead agent's entries even when it is
        # full: under a backlog nobody ever has a free slot, and an orphan must
        # not wait for the backlog to drain.
        core = self._core
        by_role: dict[str, Replica] = {}
        for rep in core.replicas.values():
            if rep.agent.accepting and not rep.dead:
                best = by_role.get(rep.role)
                if best is None or rep.free > best.free:
                    by_role[rep.role] = rep
        for role, rep in by_role.items():
            live, gone = await self._directory.replicas_of(role)
            for band in BANDS:
                if rep.dead:
                    break
                stream = C.task_stream(role, band, core.prefix)
                await self._claim(
                    rep, stream, "claimed a dead agent's entry", ORPHANS, max(1, rep.free), *live
                )
                # Claimed even into a full replica (one at a time): it runs them
                # after its current task; should one wait here past the timeout,
                # the consumer leaves it for the next reaper instead of running a
                # copy another replica may have claimed.
                await self._claim(
                    rep, stream, "reclaimed an idle entry", RECLAIM, min_idle, max(1, rep.free)
                )
            for agent_id, beat in gone:
                if not rep.dead:
                    await self.bury(role, agent_id, beat, "agent declared dead")

    async def bury(self, role: str, agent_id: str, beat: bytes, error: str) -> None:
        """Remove a departed agent's heartbeat (unless ``beat`` changed) and its own stream.

        The tasks still aimed at it go to the dead letters, recorded dead.
        ``beat`` empty: the caller removed the heartbeat itself (a clean leave).
        """
        core = self._core
        moved = await core.redis.eval(
            BURY,
            3,
            C.agent_stream(role, agent_id, core.prefix),
            C.dead_letter_stream(role, core.prefix),
            C.replicas_key(role, core.prefix),
            agent_id,
            beat,
            error,
            repr(time.time()),
            C.DEAD_LETTER_MAXLEN,
        )
        if moved is None:
            return  # it beat again: not dead after all
        if beat:
            _log.warning("buried a dead agent", role=role, agent_id=agent_id, tasks=len(moved))
            history = core.ledger.history
            if isinstance(history, PostgresHistory):
                core.tasks.spawn(self._recover(history, agent_id, beat), name="history-repair")
        if moved:
            await self._settler.abandon(moved, f"{error}: {agent_id}")

    async def _recover(self, history: PostgresHistory, agent_id: str, beat: bytes) -> None:
        """Write to the history what a dead agent finished in its last moments.

        Its process wrote its records in batches; those of the batch it died
        with are still in Redis (within the retention), so they are found
        there and written (a task already in the history keeps its row).
        """
        try:
            last = msgspec.msgpack.decode(beat, type=ReplicaBeat).at
        except (msgspec.DecodeError, msgspec.ValidationError):
            last = time.time() - BURY_AFTER * 2
        # Its last batch was at most a flush interval (and a heartbeat) old when it died.
        since = last - 5.0 - self._core.history.flush_interval
        try:
            records = await self._core.ledger.finished_by(agent_id, since)
            for i in range(0, len(records), self._core.history.batch_max):
                await history.write(records[i : i + self._core.history.batch_max])
        except (RedisError, OSError, HistoryUnavailable) as exc:
            check_cancelled()
            HISTORY_FAILURES.inc()
            _log.warning("could not repair a dead agent's history", error=repr(exc))
            return
        if records:
            _log.info("wrote a dead agent's last records to the history", count=len(records))

    async def _claim(self, rep: Replica, stream: str, what: str, script: str, *args: Any) -> None:
        """Run a claim script (``ORPHANS`` or ``RECLAIM``) for ``rep`` and accept what it took."""
        raw = await self._core.redis.eval(
            script, 1, stream, C.TASK_GROUP, rep.agent.agent_id, *args
        )
        for entry in parse_entries(raw):
            _log.warning(
                what,
                stream=stream,
                entry_id=entry.entry_id,
                agent_id=rep.agent.agent_id,
                deliveries=entry.deliveries,
            )
            await self._consumer.accept(rep, stream, entry)

    async def _trim(self) -> None:
        core = self._core
        for role in {rep.role for rep in core.replicas.values()}:
            for band in BANDS:
                await core.redis.eval(TRIM, 1, C.task_stream(role, band, core.prefix), C.TASK_GROUP)

    async def promote(self) -> None:
        """Move due retries back to their streams, until cancelled."""
        core = self._core
        while True:
            await asyncio.sleep(max(0.01, min(0.1, core.retry.base_delay)))
            roles = {rep.role for rep in core.replicas.values()}
            try:
                for role in roles:
                    await core.redis.eval(
                        PROMOTE, 1, C.delayed_key(role, core.prefix), repr(time.time()), 100
                    )
            except (RedisError, OSError) as exc:
                check_cancelled()
                _log.warning("retry promotion failed", error=repr(exc))
