"""One epoch per leadership: the election's epoch reconciled with every store that fences.

A Queen is elected by one store (a Consul session lock, or a Redis lease) and
its writes are fenced by others (the Redis fence key; any store that refuses
a stale epoch). Each keeps its own counter, and nothing ties them together:
a Consul KV that was reset, restored or moved starts again at 1 while Redis
still refuses everything below its fence, and a flushed fence forgets the
epoch every deposed leader must stay below. A leader whose epoch is below a
fence leads but can dispatch nothing.

:class:`EpochReconciler` closes that gap at the two points where it can:

* on election (:meth:`~EpochReconciler.on_elected`): the epoch of this
  leadership is the election's, raised past every fence's current value and
  every known earlier leader's (``floors``, e.g. the last announcement); every
  fence is then advanced to it. The elector holds the lease with that epoch,
  so dispatches, the fence and the announcement carry one number. When a
  fence cannot be raised to it (another leader keeps raising it) the Queen
  steps down with :class:`~swarm.errors.FencingError` instead of leading
  uselessly.
* on each renewal (:meth:`~EpochReconciler.on_renewed`): a fence found below
  the leader's epoch (flushed, restored from an old backup) is raised again;
  one found above it means a newer leader exists, and this one steps down.

Each step is logged and counted (``swarm_fence_reconciled_total``); the epoch
held is the ``swarm_leader_epoch`` gauge.

Example:
    >>> import asyncio
    >>> from discovery.leadership import EpochReconciler
    >>> from discovery.registry import Leadership
    >>> class Fence:  # a store whose fence a previous leader raised to 2
    ...     name = "fence"
    ...     value = 2
    ...     async def current(self): return self.value
    ...     async def advance(self, epoch):
    ...         self.value = max(self.value, epoch)
    ...         return self.value
    >>> fence = Fence()
    >>> reconciler = EpochReconciler(name="queen", fences=[fence])
    >>> lease = Leadership(name="queen", holder="q1", epoch=1, token="t", ttl=10)
    >>> from structlog.testing import capture_logs  # keeps log lines out of the output
    >>> with capture_logs():
    ...     asyncio.run(reconciler.on_elected(lease)), fence.value
    (3, 3)
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Protocol

import structlog

from discovery.registry import Leadership
from swarm.errors import FencingError, LeadershipLost
from swarm.metrics import FENCE_RECONCILED, LEADER_EPOCH

__all__ = ["EpochReconciler", "Fence"]

_log = structlog.get_logger("discovery.leadership")


class Fence(Protocol):
    """A store that refuses writes carrying an epoch below its own (e.g. ``FencedWriter``)."""

    @property
    def name(self) -> str:
        """The leadership it fences (for logs)."""
        ...

    async def current(self) -> int:
        """The epoch the store fences at now (0: none)."""
        ...

    async def advance(self, epoch: int) -> int:
        """Raise the fence to ``epoch`` if it is lower; returns the fence afterwards."""
        ...


class EpochReconciler:
    """Gives each leadership one epoch above every store's, and keeps the fences there.

    Args:
        name: The leadership's name (label of ``swarm_leader_epoch``).
        fences: Every store that fences this leadership's writes.
        floors: Epochs earlier leaders are known to have held (for example the
            last announced leader's), read on election; this leadership goes above them.
        counted_by_election: The election increments the fences' own counter
            (a Redis lease over the fence key), so a fence equal to the
            election's epoch is this leadership's own; otherwise an equal
            fence is an earlier leader's and the epoch goes past it.
        attempts: Reconciliation rounds before giving up (another leader
            keeps raising a fence meanwhile).
    """

    def __init__(
        self,
        *,
        name: str,
        fences: Sequence[Fence],
        floors: Sequence[Callable[[], Awaitable[int]]] = (),
        counted_by_election: bool = False,
        attempts: int = 3,
    ) -> None:
        self.name = name
        self.fences = tuple(fences)
        self.floors = tuple(floors)
        self.counted_by_election = counted_by_election
        self.attempts = attempts

    async def on_elected(self, lease: Leadership) -> int:
        """The epoch of the leadership ``lease`` won, with every fence raised to it.

        Raises:
            FencingError: A fence could not be brought to one epoch in
                :attr:`attempts` rounds; the Queen must not lead.
            TransportError: A store could not be reached (the elector steps down).
        """
        epoch = lease.epoch
        for floor in self.floors:
            seen = await floor()
            if seen >= epoch:
                _log.warning("election epoch not above an earlier leader's; raising it",
                             name=self.name, election_epoch=lease.epoch, earlier=seen,
                             epoch=seen + 1)
                epoch = seen + 1
                FENCE_RECONCILED.inc()
        for _ in range(self.attempts):
            for fence in self.fences:
                seen = await fence.current()
                if seen > epoch or (seen == epoch and not self._own(lease, epoch)):
                    _log.warning("fence at or above the election epoch; raising the epoch",
                                 name=self.name, fence=fence.name, fence_epoch=seen,
                                 election_epoch=lease.epoch, epoch=seen + 1)
                    epoch = seen + 1
                    FENCE_RECONCILED.inc()
            raised = [await fence.advance(epoch) for fence in self.fences]
            if all(value == epoch for value in raised):
                if epoch != lease.epoch:
                    _log.info("leadership epoch reconciled", name=self.name,
                              election_epoch=lease.epoch, epoch=epoch)
                LEADER_EPOCH.labels(name=self.name).set(epoch)
                return epoch
            # Another writer raised a fence past us meanwhile: go again from there.
            _log.warning("a fence moved during reconciliation", name=self.name,
                         epoch=epoch, fences=raised)
        raise FencingError(
            f"leadership {self.name!r}: could not raise every fence to one epoch in "
            f"{self.attempts} rounds (election epoch {lease.epoch}); stepping down"
        )

    def _own(self, lease: Leadership, epoch: int) -> bool:
        # A fence equal to the lease's own epoch is the one its election counted.
        return self.counted_by_election and epoch == lease.epoch

    async def on_renewed(self, lease: Leadership) -> None:
        """Check the fences on a renewal: raise one that fell behind, step down past one.

        Raises:
            LeadershipLost: A fence is above this leader's epoch: a newer leader exists.
        """
        for fence in self.fences:
            seen = await fence.current()
            if seen == lease.epoch:
                continue
            if seen > lease.epoch:
                raise LeadershipLost(
                    f"leadership {self.name!r}: fence {fence.name!r} is at epoch {seen}, "
                    f"past this leader's {lease.epoch}"
                )
            now = await fence.advance(lease.epoch)
            _log.warning("fence below the leader's epoch (flushed or restored); raised again",
                         name=self.name, fence=fence.name, was=seen, epoch=now)
            FENCE_RECONCILED.inc()
            if now > lease.epoch:
                raise LeadershipLost(
                    f"leadership {self.name!r}: fence {fence.name!r} moved to epoch {now}, "
                    f"past this leader's {lease.epoch}"
                )

    async def on_lost(self, lease: Leadership) -> None:
        """Record that this process no longer leads."""
        LEADER_EPOCH.labels(name=self.name).set(0)
