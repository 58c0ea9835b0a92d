"""Cross-pollination: push new memories to local subscribers over the memory-sync channel.

Every coordinator publishes a :class:`~memory.records.MemoryNotice` on
:data:`swarm.constants.CHANNEL_MEMORY_SYNC` through the runtime's pub/sub
(in-process or Redis) and listens on it. Pub/sub is at-most-once, so each
:class:`MemorySubscription` keeps a cursor (the highest id delivered); after
being offline, a subscriber calls ``MemoryCoordinator.catch_up(since=cursor)``
to read what it missed from the store of record.

Example:
    >>> from memory.sync import MemorySubscription
    >>> from memory.records import MemoryFilter
    >>> async def cb(memory): ...
    >>> MemorySubscription(name="a", flt=MemoryFilter(), callback=cb).cursor is None
    True
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import structlog

from memory.records import Memory, MemoryEvent, MemoryFilter, MemoryNotice
from memory.tiers.base import strip_vector
from swarm.constants import CHANNEL_MEMORY_SYNC
from swarm.errors import SwarmError
from swarm.messages import Envelope
from swarm.metrics import REJECTED
from swarm.runtime import Runtime, Subscription

__all__ = ["MemoryCallback", "MemorySubscription", "SyncHub"]

MemoryCallback = Callable[[Memory], Awaitable[None]]

_log = structlog.get_logger("memory.sync")


class MemorySubscription:
    """One local subscriber of new memories.

    Attributes:
        name: Label used in logs (e.g. the agent id).
        flt: Which memories it receives (namespaces, tags, kinds...).
        cursor: Highest memory id delivered; pass it to ``catch_up`` after a gap.
        delivered: Memories delivered so far.
    """

    def __init__(self, *, name: str, flt: MemoryFilter, callback: MemoryCallback) -> None:
        self.name = name
        self.flt = flt
        self.callback = callback
        self.cursor: str | None = None
        self.delivered = 0
        self.closed = False
        self._hub: SyncHub | None = None

    async def close(self) -> None:
        """Stop receiving; idempotent."""
        self.closed = True
        if self._hub is not None:
            self._hub.remove(self)


class SyncHub:
    """Publishes notices and fans received ones out to matching subscriptions.

    Args:
        runtime: The runtime whose pub/sub carries notices; ``None`` delivers locally only.
        origin: Id of this coordinator (its own notices are not re-indexed).
        on_remote: Called with each change made by another coordinator.
    """

    def __init__(
        self,
        *,
        runtime: Runtime | None,
        origin: str,
        on_remote: Callable[[MemoryEvent, Memory], None] | None = None,
    ) -> None:
        self.runtime = runtime
        self.origin = origin
        self.on_remote = on_remote
        self._subs: list[MemorySubscription] = []
        self._channel: Subscription | None = None

    async def start(self) -> None:
        """Listen on the memory-sync channel."""
        if self.runtime is not None and self._channel is None:
            self._channel = await self.runtime.subscribe(CHANNEL_MEMORY_SYNC, self._on_envelope)

    async def close(self) -> None:
        """Stop listening."""
        if self._channel is not None:
            await self._channel.close()
            self._channel = None

    def add(self, sub: MemorySubscription) -> MemorySubscription:
        """Register a subscription."""
        sub._hub = self
        self._subs.append(sub)
        return sub

    def remove(self, sub: MemorySubscription) -> None:
        """Unregister a subscription."""
        if sub in self._subs:
            self._subs.remove(sub)

    async def publish(self, memory: Memory, event: MemoryEvent = MemoryEvent.STORED) -> None:
        """Announce a committed change. Failure is logged, never raised: the store has it."""
        if self.runtime is None:
            if event is MemoryEvent.STORED and self._subs:
                await self.dispatch(memory)
            return
        try:
            notice = MemoryNotice(memory=memory, origin=self.origin, event=event)
            await self.runtime.publish(CHANNEL_MEMORY_SYNC, notice, sender=self.origin)
        except SwarmError as exc:
            REJECTED.labels(reason="memory_notice_unsent").inc()
            _log.warning("memory notice not published", memory_id=memory.id, error=repr(exc))

    async def _on_envelope(self, env: Envelope) -> None:
        if self.runtime is None or env.type != MemoryNotice.type_name:
            return
        try:
            notice = self.runtime.codec.decode_payload(env, MemoryNotice)
        except SwarmError as exc:
            REJECTED.labels(reason="memory_notice_malformed").inc()
            _log.warning("malformed memory notice", sender=env.sender, error=repr(exc))
            return
        if notice.origin != self.origin and self.on_remote is not None:
            self.on_remote(notice.event, notice.memory)
        if notice.event is MemoryEvent.STORED:
            await self.dispatch(notice.memory)

    async def dispatch(self, memory: Memory) -> None:
        """Deliver a memory to every matching subscription, in subscription order."""
        memory = strip_vector(memory)
        for sub in list(self._subs):
            if sub.closed or not sub.flt.matches(memory):
                continue
            try:
                await sub.callback(memory)
            except Exception as exc:
                # One broken subscriber must not starve the others.
                REJECTED.labels(reason="memory_subscriber_error").inc()
                _log.warning("memory subscriber failed", name=sub.name, error=repr(exc))
            sub.cursor = memory.id if sub.cursor is None or memory.id > sub.cursor else sub.cursor
            sub.delivered += 1
