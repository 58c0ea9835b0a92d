"""The embedded registry: Consul's semantics in one process, TTL expiry included.

Health is evaluated from the clock on every read (an instance whose TTL ran
out is critical; one critical for longer than ``deregister_critical_after`` is
removed), and watchers are woken on every mutation and at the next deadline,
so a stalled instance drops out of :meth:`InMemoryRegistry.watch` on its own.

Example:
    >>> import asyncio
    >>> from discovery import InMemoryRegistry, ServiceInstance
    >>> async def demo():
    ...     reg = InMemoryRegistry()
    ...     await reg.start()
    ...     await reg.register(ServiceInstance(role="coder", id="c1"), ttl=5)
    ...     lease = await reg.acquire("queen", "q1", ttl=5)
    ...     ids = [i.id for i in await reg.healthy("coder")]
    ...     await reg.close()
    ...     return ids, lease.epoch
    >>> asyncio.run(demo())
    (['c1'], 1)
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

from discovery.registry import Leadership, ServiceInstance
from swarm.errors import LeadershipLost
from swarm.tasks import TaskSet

__all__ = ["InMemoryRegistry"]


@dataclass(slots=True)
class _Entry:
    instance: ServiceInstance
    ttl: float
    expires: float
    status: str = "passing"
    critical_since: float | None = None


@dataclass(slots=True)
class _Lock:
    holder: str
    token: str
    expires: float
    epoch: int


class InMemoryRegistry:
    """A :class:`~discovery.registry.Registry` held in this process.

    Args:
        clock: Monotonic seconds (injectable for tests).
        lock_delay: Seconds a leadership stays unacquirable after its holder's
            lease expired without release (Consul's ``LockDelay``).
        deregister_critical_after: Seconds after which a critical instance is
            removed (Consul's ``DeregisterCriticalServiceAfter``); ``None`` keeps it.
    """

    def __init__(
        self,
        *,
        clock: Callable[[], float] = time.monotonic,
        lock_delay: float = 1.0,
        deregister_critical_after: float | None = 60.0,
    ) -> None:
        self._clock = clock
        self.lock_delay = lock_delay
        self.deregister_critical_after = deregister_critical_after
        self._entries: dict[str, _Entry] = {}
        self._config: dict[str, bytes] = {}
        self._locks: dict[str, _Lock] = {}
        self._delayed: dict[str, float] = {}
        self._epochs: dict[str, int] = {}
        self._tokens = itertools.count(1)
        self._changed = asyncio.Event()
        self._tasks = TaskSet("registry:memory")
        self._keepalives: dict[str, asyncio.Task[None]] = {}

    # -- lifecycle ---------------------------------------------------------
    async def start(self) -> None:
        """Nothing to connect to."""

    async def close(self) -> None:
        """Stop keepalives and drop this registry's instances."""
        await self._tasks.close()
        self._keepalives.clear()
        self._entries.clear()
        self._notify()

    def _notify(self) -> None:
        # Wake every current waiter, then arm a fresh event for the next change.
        self._changed.set()
        self._changed = asyncio.Event()

    # -- instances -----------------------------------------------------------
    async def register(
        self, instance: ServiceInstance, *, ttl: float, keepalive: bool = True
    ) -> None:
        """Register (or replace) an instance, passing for ``ttl`` seconds."""
        if ttl <= 0:
            raise ValueError("ttl must be positive")
        self._entries[instance.id] = _Entry(instance, ttl, self._clock() + ttl)
        old = self._keepalives.pop(instance.id, None)
        if old is not None:
            old.cancel()
        if keepalive:
            self._keepalives[instance.id] = self._tasks.supervise(
                lambda: self._keepalive(instance.id, ttl), name=f"keepalive:{instance.id}"
            )
        self._notify()

    async def _keepalive(self, instance_id: str, ttl: float) -> None:
        while instance_id in self._entries:
            await asyncio.sleep(ttl / 3)
            try:
                await self.heartbeat(instance_id)
            except KeyError:
                return  # reaped meanwhile; the owner registers again if it wants to

    async def heartbeat(self, instance_id: str) -> None:
        """Refresh an instance's TTL; a critical instance turns passing."""
        self._sweep()
        entry = self._entries.get(instance_id)
        if entry is None:
            raise KeyError(instance_id)
        entry.expires = self._clock() + entry.ttl
        if entry.status != "passing":
            entry.status = "passing"
            entry.critical_since = None
            self._notify()

    async def fail(self, instance_id: str) -> None:
        """Mark an instance critical now (as a failing check would)."""
        entry = self._entries[instance_id]
        entry.expires = self._clock()
        self._sweep()

    async def deregister(self, instance_id: str) -> None:
        """Remove an instance and stop its keepalive."""
        task = self._keepalives.pop(instance_id, None)
        if task is not None and task is not asyncio.current_task():
            task.cancel()
        if self._entries.pop(instance_id, None) is not None:
            self._notify()

    def _sweep(self) -> float | None:
        """Apply TTL expiry; return seconds until the next deadline."""
        now = self._clock()
        changed = False
        nxt: float | None = None
        for iid, e in list(self._entries.items()):
            if e.status == "passing" and e.expires <= now:
                e.status, e.critical_since = "critical", e.expires
                changed = True
            if e.status == "passing":
                deadline: float | None = e.expires
            elif self.deregister_critical_after is not None and e.critical_since is not None:
                deadline = e.critical_since + self.deregister_critical_after
                if deadline <= now:
                    del self._entries[iid]
                    changed = True
                    continue
            else:
                deadline = None
            if deadline is not None and (nxt is None or deadline < nxt):
                nxt = deadline
        if changed:
            self._notify()
        return None if nxt is None else max(0.0, nxt - now)

    async def healthy(self, role: str) -> list[ServiceInstance]:
        """Passing instances of ``role``, sorted by id."""
        self._sweep()
        return sorted(
            (e.instance for e in self._entries.values()
             if e.instance.role == role and e.status == "passing"),
            key=lambda i: i.id,
        )

    async def _changes(self) -> AsyncIterator[None]:
        while True:
            waiter = self._changed
            delay = self._sweep()
            yield
            if waiter is not self._changed:
                continue  # something changed while the consumer was busy
            timeout = None if delay is None else min(max(delay, 0.01), 1.0)
            try:
                await asyncio.wait_for(waiter.wait(), timeout)
            except TimeoutError:
                pass

    async def watch(self, role: str) -> AsyncIterator[list[ServiceInstance]]:
        """Yield the healthy instances of ``role`` now and after every change."""
        last: list[ServiceInstance] | None = None
        async for _ in self._changes():
            now = await self.healthy(role)
            if now != last:
                last = now
                yield now

    # -- config -----------------------------------------------------------------
    async def get_config(self, key: str) -> bytes | None:
        """Read a config key."""
        return self._config.get(key)

    async def put_config(self, key: str, value: bytes) -> None:
        """Write a config key."""
        self._config[key] = bytes(value)
        self._notify()

    async def delete_config(self, key: str) -> None:
        """Delete a config key."""
        if self._config.pop(key, None) is not None:
            self._notify()

    async def watch_config(self, prefix: str) -> AsyncIterator[dict[str, bytes]]:
        """Yield the keys under ``prefix`` now and after every change."""
        last: dict[str, bytes] | None = None
        async for _ in self._changes():
            now = {k: v for k, v in self._config.items() if k.startswith(prefix)}
            if now != last:
                last = now
                yield dict(now)

    # -- election ------------------------------------------------------------------
    def _live_lock(self, name: str) -> _Lock | None:
        lock = self._locks.get(name)
        now = self._clock()
        if lock is not None and lock.expires <= now:
            # Expired without release: the holder may still think it leads,
            # so nobody may take over until the lock-delay has passed.
            del self._locks[name]
            self._delayed[name] = lock.expires + self.lock_delay
            lock = None
        return lock

    async def acquire(self, name: str, holder: str, *, ttl: float) -> Leadership | None:
        """Try once to lead ``name``."""
        if self._live_lock(name) is not None or self._delayed.get(name, 0.0) > self._clock():
            return None
        epoch = self._epochs[name] = self._epochs.get(name, 0) + 1
        token = f"mem-{next(self._tokens)}"
        self._locks[name] = _Lock(holder, token, self._clock() + ttl, epoch)
        return Leadership(name=name, holder=holder, epoch=epoch, token=token, ttl=ttl)

    async def renew(self, lease: Leadership) -> Leadership:
        """Extend a held lease."""
        lock = self._live_lock(lease.name)
        if lock is None or lock.token != lease.token:
            raise LeadershipLost(f"leadership {lease.name!r} of {lease.holder!r} was lost")
        lock.expires = self._clock() + lease.ttl
        return lease

    async def release(self, lease: Leadership) -> None:
        """Give leadership up."""
        lock = self._live_lock(lease.name)
        if lock is not None and lock.token == lease.token:
            del self._locks[lease.name]

    async def current_epoch(self, name: str) -> int:
        """The newest epoch of ``name``."""
        return self._epochs.get(name, 0)
