"""``LeaderElector``: keep trying to lead, renew while leading, step down when lost.

One owned task per elector. A standby retries :meth:`Election.acquire` every
``retry_interval``; the leader renews every ``ttl / 3`` and steps down at once
when renewal fails or when renewal could not succeed before the lease would
have run out (so a paused process never believes it still leads past its
TTL). ``epoch`` is the fencing token to stamp on dispatches and ledger writes
(``Intake(epoch=elector.current)``); it is 0 while not leading.

Example:
    >>> import asyncio
    >>> from discovery import InMemoryRegistry, LeaderElector
    >>> async def demo():
    ...     reg = InMemoryRegistry()
    ...     a = LeaderElector(election=reg, name="queen", holder="q1", ttl=5)
    ...     await a.start()
    ...     await a.wait_leading(timeout=5)
    ...     epoch = a.epoch
    ...     await a.close()
    ...     return epoch
    >>> from structlog.testing import capture_logs  # keeps log lines out of the output
    >>> with capture_logs():
    ...     asyncio.run(demo())
    1
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Awaitable, Callable

import structlog

from discovery.registry import Election, Leadership
from swarm.errors import LeadershipLost, TransportError
from swarm.tasks import TaskSet

__all__ = ["LeaderElector"]

_log = structlog.get_logger("discovery.election")
Hook = Callable[[Leadership], Awaitable[None]]
#: ``on_elected``: may return the epoch this leadership uses (see :class:`LeaderElector`).
ElectedHook = Callable[[Leadership], Awaitable[int | None]]


class LeaderElector:
    """Runs one candidate of a named election.

    Args:
        election: A registry or :class:`~discovery.redis_lease.RedisLease`.
        name: The election's name.
        holder: This candidate's id.
        ttl: Lease TTL in seconds.
        retry_interval: Seconds between acquisition attempts while standing by.
        on_elected: Awaited after winning, before the win is visible (``leading``,
            ``epoch``, :meth:`wait_leading`); it may return the epoch of this
            leadership (at least the lease's: see
            :class:`~discovery.leadership.EpochReconciler`), which the elector
            then holds. If it raises, the candidate steps down and campaigns again.
        on_lost: Awaited after losing leadership.
        on_renewed: Awaited after each renewal; raising
            :class:`~swarm.errors.LeadershipLost` steps down.
    """

    def __init__(
        self,
        *,
        election: Election,
        name: str,
        holder: str,
        ttl: float,
        retry_interval: float = 0.5,
        on_elected: ElectedHook | None = None,
        on_lost: Hook | None = None,
        on_renewed: Hook | None = None,
    ) -> None:
        self.election = election
        self.name = name
        self.holder = holder
        self.ttl = ttl
        self.retry_interval = retry_interval
        self.on_elected = on_elected
        self.on_lost = on_lost
        self.on_renewed = on_renewed
        self.lease: Leadership | None = None
        self._changed = asyncio.Condition()
        self._tasks = TaskSet(f"elector:{holder}")
        self._closing = False

    @property
    def leading(self) -> bool:
        """Whether this candidate holds the lease."""
        return self.lease is not None

    @property
    def epoch(self) -> int:
        """The held lease's epoch, 0 when not leading."""
        return self.lease.epoch if self.lease is not None else 0

    def current(self) -> int:
        """The epoch as a callable (for ``Intake(epoch=...)``)."""
        return self.epoch

    async def start(self) -> None:
        """Start campaigning."""
        self._tasks.spawn(self._run(), name=f"elect:{self.name}")

    async def close(self) -> None:
        """Stop, releasing leadership if held."""
        # Python 3.11's asyncio.wait_for (inside redis-py's writes) can swallow
        # a cancellation; the loop then also ends on this flag.
        self._closing = True
        await self._tasks.close()
        if self.lease is not None:
            lease, self.lease = self.lease, None
            try:
                await self.election.release(lease)
            except TransportError as exc:
                _log.warning("release failed", name=self.name, error=str(exc))

    async def wait_leading(self, *, timeout: float) -> None:
        """Wait until this candidate leads.

        Raises:
            TimeoutError: Not within ``timeout`` seconds.
        """
        async with asyncio.timeout(timeout), self._changed:
            await self._changed.wait_for(lambda: self.lease is not None)

    async def _elect(self, lease: Leadership) -> None:
        # The hook runs before the win is visible: nothing dispatches with an
        # epoch the fences would refuse.
        if self.on_elected is not None:
            epoch = await self.on_elected(lease)
            if epoch is not None and epoch != lease.epoch:
                if epoch < lease.epoch:
                    raise ValueError(f"on_elected lowered the epoch {lease.epoch} to {epoch}")
                lease = dataclasses.replace(lease, epoch=epoch)
        self.lease = lease
        async with self._changed:
            self._changed.notify_all()
        _log.info("elected", name=self.name, holder=self.holder, epoch=lease.epoch)

    async def _set(self, lease: Leadership | None) -> None:
        old, self.lease = self.lease, lease
        async with self._changed:
            self._changed.notify_all()
        if lease is None and old is not None:
            _log.warning("leadership lost", name=self.name, holder=self.holder, epoch=old.epoch)
            if self.on_lost is not None:
                await self.on_lost(old)

    async def _run(self) -> None:
        while not self._closing:
            if self.lease is None:
                acquired = time.monotonic()
                try:
                    lease = await self.election.acquire(self.name, self.holder, ttl=self.ttl)
                except TransportError as exc:
                    _log.warning("acquire failed", name=self.name, error=str(exc))
                    lease = None
                if lease is None:
                    await asyncio.sleep(self.retry_interval)
                    continue
                try:
                    await self._elect(lease)
                except Exception as exc:
                    # E.g. the fence could not be raised: leading unfenced is
                    # unsafe, so give the lease back and campaign again.
                    _log.error("on_elected failed; stepping down", name=self.name,
                               error=repr(exc))
                    self.lease = None
                    await self._release_quietly(lease)
                    await asyncio.sleep(self.retry_interval)
                    continue
                valid_until = acquired + self.ttl
            await asyncio.sleep(self.ttl / 3)
            lease = self.lease
            assert lease is not None
            try:
                if time.monotonic() >= valid_until:
                    # We were paused past our TTL: someone else may lead now.
                    raise LeadershipLost("lease ran out before renewal")
                started = time.monotonic()
                await self.election.renew(lease)
                valid_until = started + self.ttl
                if self.on_renewed is not None:
                    await self._check(lease)
            except (LeadershipLost, TransportError) as exc:
                _log.warning("renewal failed", name=self.name, error=str(exc))
                if time.monotonic() < valid_until and not isinstance(exc, LeadershipLost):
                    continue  # transient: retry while the lease is surely ours
                try:
                    await self._set(None)
                except Exception as exc:
                    _log.error("on_lost failed", name=self.name, error=repr(exc))
                await self._release_quietly(lease)

    async def _check(self, lease: Leadership) -> None:
        """``on_renewed``: LeadershipLost steps down; any other failure is only logged."""
        assert self.on_renewed is not None
        try:
            await self.on_renewed(lease)
        except LeadershipLost:
            raise
        except Exception as exc:
            _log.warning("renewal check failed", name=self.name, error=repr(exc))

    async def _release_quietly(self, lease: Leadership) -> None:
        try:
            await self.election.release(lease)
        except TransportError as exc:
            _log.warning("release failed", name=self.name, error=str(exc))
