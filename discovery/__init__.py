"""Service discovery: registration, health, live config and leader election.

The :class:`Registry` Protocol has two implementations: :class:`InMemoryRegistry`
(embedded default) and :class:`ConsulRegistry`. :class:`RedisLease` elects a
leader on Redis alone, and :class:`FencedWriter` refuses writes carrying a
stale epoch. :class:`HealthView` / :class:`HealthRouter` keep the Queen from
routing to instances whose checks went critical; :class:`LiveConfig` applies
settings from config keys without restart.

Example:
    >>> import discovery
    >>> discovery.__all__ == sorted(discovery.__all__)
    True
"""

from discovery.connect import open_registry
from discovery.consul import ConsulRegistry
from discovery.election import LeaderElector
from discovery.health import HealthRouter, HealthView
from discovery.leadership import EpochReconciler, Fence
from discovery.live_config import CONFIG_PREFIX, LiveConfig, LiveSettings
from discovery.memory import InMemoryRegistry
from discovery.redis_lease import FENCED_REFUSED, FencedWriter, RedisLease
from discovery.registry import Election, Leadership, Registry, ServiceInstance
from discovery.settings import ConsulSettings
from discovery.wiring import QueenDiscovery, register_agents

__all__ = [
    "CONFIG_PREFIX",
    "FENCED_REFUSED",
    "ConsulRegistry",
    "ConsulSettings",
    "Election",
    "EpochReconciler",
    "Fence",
    "FencedWriter",
    "HealthRouter",
    "HealthView",
    "InMemoryRegistry",
    "LeaderElector",
    "Leadership",
    "LiveConfig",
    "LiveSettings",
    "QueenDiscovery",
    "RedisLease",
    "Registry",
    "ServiceInstance",
    "open_registry",
    "register_agents",
]
