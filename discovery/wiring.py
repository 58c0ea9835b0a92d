"""Wiring a Queen and agents to a registry, for the process CLIs and embedders.

:class:`QueenDiscovery` gives a :class:`~swarm.queen.Queen` health-aware
routing (a :class:`~discovery.health.HealthView` over the roles in the
runtime's directory, rescanned for new roles), leader election whose epoch
stamps every task the Queen's intake builds, its own registration with a TTL
check (so its leadership session dies with it), and optionally live config.
:func:`register_agents` registers a runtime's local agents.

Example:
    >>> import asyncio
    >>> from structlog.testing import capture_logs
    >>> from swarm import InProcessRuntime, Queen
    >>> from discovery import InMemoryRegistry, QueenDiscovery
    >>> async def demo():
    ...     runtime = InProcessRuntime()
    ...     await runtime.start()
    ...     queen = Queen(runtime=runtime, queen_id="q1")
    ...     wired = QueenDiscovery(queen=queen, registry=InMemoryRegistry(), ttl=5)
    ...     await wired.start()
    ...     await wired.elector.wait_leading(timeout=5)
    ...     epoch = queen.intake.epoch()
    ...     await wired.close()
    ...     await runtime.stop()
    ...     return epoch
    >>> with capture_logs():
    ...     asyncio.run(demo())
    1
"""

from __future__ import annotations

import asyncio
from typing import Any

from discovery.election import ElectedHook, Hook, LeaderElector
from discovery.health import HealthRouter, HealthView
from discovery.live_config import CONFIG_PREFIX, LiveConfig
from discovery.registry import Election, Registry, ServiceInstance
from swarm.tasks import TaskSet

__all__ = ["QueenDiscovery", "register_agents"]


async def register_agents(
    registry: Registry, agents: Any, *, ttl: float, address: str = "127.0.0.1",
    version: str = "",
) -> list[ServiceInstance]:
    """Register every agent (with keepalive) and return the instances.

    Args:
        registry: Where to register.
        agents: Iterable of :class:`~swarm.agent.base.Agent` (e.g. ``runtime.agents()``).
        ttl: Check TTL in seconds.
        address: Address advertised for them.
        version: Software version advertised.
    """
    out = []
    for agent in agents:
        inst = ServiceInstance(
            role=agent.role, id=agent.agent_id, address=address,
            capabilities=frozenset(agent.capabilities), version=version,
        )
        await registry.register(inst, ttl=ttl)
        out.append(inst)
    return out


class QueenDiscovery:
    """Connects a Queen to discovery; :meth:`start` / :meth:`close` around its life.

    Args:
        queen: The Queen (routes by health and stamps the epoch once started).
        registry: Health, config and (by default) election come from here.
        election: Where leadership is decided (default: ``registry``; a
            :class:`~discovery.redis_lease.RedisLease` when Consul is absent).
        ttl: Leadership lease TTL, and the Queen's own check TTL.
        roles: Roles to watch besides those in the runtime's directory.
        rescan_interval: Seconds between directory scans for new roles.
        live_config: Apply ``swarm/config/...`` keys to the runtime and Queen.
        on_elected: Awaited on winning, before the win is visible; may return
            the leadership's epoch (:meth:`~discovery.leadership.EpochReconciler.on_elected`).
        on_lost: Awaited on losing leadership.
        on_renewed: Awaited after each lease renewal (e.g.
            :meth:`~discovery.leadership.EpochReconciler.on_renewed`).
    """

    def __init__(
        self,
        *,
        queen: Any,
        registry: Registry,
        election: Election | None = None,
        ttl: float = 10.0,
        roles: tuple[str, ...] = (),
        rescan_interval: float = 2.0,
        live_config: bool = False,
        config_prefix: str = CONFIG_PREFIX,
        on_elected: ElectedHook | None = None,
        on_lost: Hook | None = None,
        on_renewed: Hook | None = None,
    ) -> None:
        self.queen = queen
        self.registry = registry
        self.ttl = ttl
        self.rescan_interval = rescan_interval
        self.view = HealthView(registry=registry, roles=roles)
        self.router = HealthRouter(healthy=self.view.is_healthy)
        self.elector = LeaderElector(
            election=election or registry, name="queen", holder=queen.queen_id, ttl=ttl,
            on_elected=on_elected, on_lost=on_lost, on_renewed=on_renewed,
        )
        self.live = (
            LiveConfig(registry=registry, prefix=config_prefix, runtime=queen.runtime, queen=queen)
            if live_config else None
        )
        self._tasks = TaskSet(f"queen-discovery:{queen.queen_id}")

    @property
    def leading(self) -> bool:
        """Whether this Queen leads (a standby should not dispatch)."""
        return self.elector.leading

    async def start(self) -> None:
        """Register the Queen, watch health, campaign, and apply live config."""
        await self.registry.register(ServiceInstance(role="queen", id=self.queen.queen_id),
                                     ttl=self.ttl)
        for role in await self.queen.runtime.directory():
            self.view.watch_role(role)
        await self.view.start()
        self.queen.set_dispatch(router=self.router, epoch=self.elector.current)
        await self.elector.start()
        if self.live is not None:
            await self.live.start()
        self._tasks.spawn(self._rescan(), name="rescan")

    async def _rescan(self) -> None:
        while True:
            await asyncio.sleep(self.rescan_interval)
            for role in await self.queen.runtime.directory():
                self.view.watch_role(role)

    async def close(self) -> None:
        """Step down, stop watching and deregister the Queen."""
        await self._tasks.close()
        if self.live is not None:
            await self.live.close()
        await self.elector.close()
        await self.view.close()
        await self.registry.deregister(self.queen.queen_id)
