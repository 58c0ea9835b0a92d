"""Health-aware routing: the healthy set from :meth:`Registry.watch`, as a router filter.

:class:`HealthView` keeps, per watched role, the instances whose checks pass
(one owned watcher task per role) and answers :meth:`HealthView.is_healthy`.
:class:`HealthRouter` is a :class:`~swarm.routing.Router` that uses it: when
some replica of the chosen role is unhealthy, the task is addressed to a
healthy replica (``agent:<id>``) so the runtime cannot hand it to the sick
one; when all are healthy the runtime balances (and reclaims) as before.

Example:
    >>> import asyncio
    >>> from discovery import HealthView, InMemoryRegistry, ServiceInstance
    >>> async def demo():
    ...     reg = InMemoryRegistry()
    ...     await reg.register(ServiceInstance(role="coder", id="c1"), ttl=5)
    ...     view = HealthView(registry=reg, roles=["coder"])
    ...     await view.start()
    ...     ok = view.is_healthy("c1"), view.is_healthy("c2")
    ...     await view.close()
    ...     await reg.close()
    ...     return ok
    >>> from structlog.testing import capture_logs  # keeps log lines out of the output
    >>> with capture_logs():
    ...     asyncio.run(demo())
    (True, False)
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Mapping

import structlog

from discovery.registry import Registry, ServiceInstance
from swarm.errors import NoRouteError
from swarm.routing import Router
from swarm.runtime import RoleInfo
from swarm.tasks import TaskSet

__all__ = ["HealthRouter", "HealthView"]

_log = structlog.get_logger("discovery.health")


class HealthView:
    """The healthy instances of some roles, kept current from the registry.

    Args:
        registry: Where health comes from.
        roles: Roles to watch from :meth:`start` (more with :meth:`watch_role`).
        unknown_healthy: Answer for agent ids the registry never reported
            (e.g. local agents that do not register); default ``False``.
    """

    def __init__(
        self, *, registry: Registry, roles: Iterable[str] = (), unknown_healthy: bool = False
    ) -> None:
        self.registry = registry
        self.unknown_healthy = unknown_healthy
        self._roles = list(dict.fromkeys(roles))
        self._instances: dict[str, list[ServiceInstance]] = {}
        self._healthy: set[str] = set()
        self._known: set[str] = set()
        self._ready: dict[str, asyncio.Event] = {}
        self._changed = asyncio.Condition()
        self._tasks = TaskSet("health-view")

    async def start(self, *, timeout: float | None = 10.0) -> None:
        """Start watching and wait for each role's first snapshot."""
        for role in self._roles:
            self.watch_role(role)
        async with asyncio.timeout(timeout):
            for ev in list(self._ready.values()):
                await ev.wait()

    def watch_role(self, role: str) -> None:
        """Start watching ``role`` (idempotent)."""
        if role in self._ready:
            return
        if role not in self._roles:
            self._roles.append(role)
        self._ready[role] = asyncio.Event()
        self._tasks.supervise(lambda: self._watch(role), name=f"watch:{role}")

    async def _watch(self, role: str) -> None:
        async for instances in self.registry.watch(role):
            self._instances[role] = instances
            self._known.update(i.id for i in instances)
            self._healthy = {i.id for insts in self._instances.values() for i in insts}
            _log.debug("health changed", role=role, healthy=[i.id for i in instances])
            self._ready[role].set()
            async with self._changed:
                self._changed.notify_all()

    async def close(self) -> None:
        """Stop the watchers."""
        await self._tasks.close()

    def is_healthy(self, agent_id: str) -> bool:
        """Whether ``agent_id`` is a passing instance (plug into ``Router(healthy=...)``)."""
        if agent_id in self._healthy:
            return True
        return self.unknown_healthy and agent_id not in self._known

    def instances(self, role: str) -> list[ServiceInstance]:
        """The healthy instances of ``role`` last seen."""
        return list(self._instances.get(role, ()))

    async def wait_until(self, predicate: Callable[[], bool], *, timeout: float) -> None:
        """Wait until ``predicate()`` holds after some health change.

        Raises:
            TimeoutError: It did not within ``timeout`` seconds.
        """
        async with asyncio.timeout(timeout), self._changed:
            await self._changed.wait_for(predicate)


class HealthRouter(Router):
    """A router that never picks an unhealthy replica.

    Args:
        healthy: Predicate on agent ids, usually :meth:`HealthView.is_healthy`.
    """

    def __init__(self, *, healthy: Callable[[str], bool]) -> None:
        super().__init__(healthy=healthy)

    def resolve(self, type_name: str, to: str, roles: Mapping[str, RoleInfo]) -> str:
        """Resolve as :class:`Router` does, then steer around unhealthy replicas.

        Raises:
            NoRouteError: No route, or no healthy replica in the chosen role.
        """
        target = super().resolve(type_name, to, roles)
        if not target.startswith("role:") or self.healthy is None:
            return target
        role = target[5:]
        replicas = roles[role].replicas
        healthy = [r for r in replicas if self.healthy(r.agent_id)]
        if len(healthy) == len(replicas) and replicas:
            return target
        if not healthy:
            raise NoRouteError(f"no healthy instance of role {role!r}")
        # Most free capacity first (a full one still beats none: it queues there).
        pick = max(healthy, key=lambda r: (r.capacity - r.inflight, -r.inflight))
        return f"agent:{pick.agent_id}"
