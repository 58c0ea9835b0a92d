"""The service registry contract: instances, health, config keys and leader election.

A :class:`Registry` is what agents and the Queen see of Consul (or of the
embedded :class:`~discovery.memory.InMemoryRegistry`): instances register with
a TTL and are kept alive by an owned heartbeat task; readers list or watch the
*healthy* instances of a role; settings live under config keys; and one holder
at a time wins a named :class:`Leadership` whose ``epoch`` grows on every
acquisition and fences writes of a deposed leader.

Example:
    >>> from discovery.registry import ServiceInstance
    >>> inst = ServiceInstance(role="scraper", id="scraper-1", port=8080,
    ...                        capabilities=frozenset({"Scrape"}), version="1.2")
    >>> ServiceInstance.from_meta(role="scraper", id="scraper-1", address="127.0.0.1",
    ...                           port=8080, tags=(), meta=inst.to_meta()) == inst
    True
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

__all__ = [
    "Election",
    "Leadership",
    "Registry",
    "ServiceInstance",
]

# Reserved meta keys: the typed fields travel in Consul's string-only Meta map.
_CAPS = "swarm-capabilities"
_VERSION = "swarm-version"
_METRICS = "swarm-metrics-port"
_RESERVED = frozenset({_CAPS, _VERSION, _METRICS})


@dataclass(frozen=True, slots=True, kw_only=True)
class ServiceInstance:
    """One registered agent (or Queen) instance.

    Attributes:
        role: Service name (the agent's role).
        id: Unique instance id (the agent id).
        address: Where it listens.
        port: Its service port (0 when it serves nothing).
        tags: Free-form tags.
        capabilities: Message types it handles.
        version: Its software version.
        metrics_port: Its Prometheus port (0 when none).
        meta: Further string metadata.
    """

    role: str
    id: str
    address: str = "127.0.0.1"
    port: int = 0
    tags: tuple[str, ...] = ()
    capabilities: frozenset[str] = frozenset()
    version: str = ""
    metrics_port: int = 0
    meta: Mapping[str, str] = field(default_factory=dict, hash=False)

    def __post_init__(self) -> None:
        if not self.role or not self.id:
            raise ValueError("role and id must not be empty")
        clash = _RESERVED.intersection(self.meta)
        if clash:
            raise ValueError(f"meta keys {sorted(clash)} are reserved")

    def to_meta(self) -> dict[str, str]:
        """Flatten the typed fields into a string map (Consul's ``Meta``)."""
        out = dict(self.meta)
        out[_CAPS] = ",".join(sorted(self.capabilities))
        out[_VERSION] = self.version
        out[_METRICS] = str(self.metrics_port)
        return out

    @classmethod
    def from_meta(
        cls,
        *,
        role: str,
        id: str,
        address: str,
        port: int,
        tags: tuple[str, ...],
        meta: Mapping[str, str],
    ) -> ServiceInstance:
        """Rebuild an instance from what :meth:`to_meta` produced."""
        caps = meta.get(_CAPS, "")
        try:
            metrics_port = int(meta.get(_METRICS, "0") or 0)
        except ValueError:
            metrics_port = 0
        return cls(
            role=role,
            id=id,
            address=address,
            port=port,
            tags=tuple(tags),
            capabilities=frozenset(c for c in caps.split(",") if c),
            version=meta.get(_VERSION, ""),
            metrics_port=metrics_port,
            meta={k: v for k, v in meta.items() if k not in _RESERVED},
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class Leadership:
    """A held leadership lease.

    Attributes:
        name: The election's name (e.g. ``"queen"``).
        holder: Who holds it.
        epoch: Fencing token: strictly greater than every earlier holder's.
        token: Backend handle (Consul session id, Redis lease value).
        ttl: Seconds the lease lasts without renewal.
    """

    name: str
    holder: str
    epoch: int
    token: str
    ttl: float


@runtime_checkable
class Election(Protocol):
    """Leader election with fencing epochs.

    Implemented by every :class:`Registry` and by
    :class:`~discovery.redis_lease.RedisLease` alone.
    """

    async def acquire(self, name: str, holder: str, *, ttl: float) -> Leadership | None:
        """Try once to become leader of ``name``.

        Returns:
            The lease, with an epoch greater than any before, or ``None`` when
            someone else holds it (or a lock-delay after a lost holder is running).
        """
        ...

    async def renew(self, lease: Leadership) -> Leadership:
        """Extend a held lease by its TTL.

        Raises:
            LeadershipLost: It expired or someone else holds it now.
        """
        ...

    async def release(self, lease: Leadership) -> None:
        """Give leadership up (no-op when already lost)."""
        ...

    async def current_epoch(self, name: str) -> int:
        """The newest epoch handed out for ``name`` (0 if never)."""
        ...


@runtime_checkable
class Registry(Election, Protocol):
    """Service registration, health, config keys and leader election."""

    async def start(self) -> None:
        """Connect (or start background work).

        Raises:
            DiscoveryError: The backing server is unreachable.
        """
        ...

    async def close(self) -> None:
        """Deregister what this registry registered and stop its tasks."""
        ...

    async def register(
        self, instance: ServiceInstance, *, ttl: float, keepalive: bool = True
    ) -> None:
        """Register an instance whose health check fails unless refreshed within ``ttl``.

        With ``keepalive`` an owned task refreshes it every ``ttl / 3`` seconds
        until :meth:`deregister` or :meth:`close`.
        """
        ...

    async def heartbeat(self, instance_id: str) -> None:
        """Mark an instance's check passing for another TTL."""
        ...

    async def deregister(self, instance_id: str) -> None:
        """Remove an instance (idempotent)."""
        ...

    async def healthy(self, role: str) -> list[ServiceInstance]:
        """Instances of ``role`` whose checks are passing, sorted by id."""
        ...

    def watch(self, role: str) -> AsyncIterator[list[ServiceInstance]]:
        """Yield the healthy instances of ``role`` now, then on every change."""
        ...

    async def get_config(self, key: str) -> bytes | None:
        """Read a config key (``None`` if absent)."""
        ...

    async def put_config(self, key: str, value: bytes) -> None:
        """Write a config key."""
        ...

    async def delete_config(self, key: str) -> None:
        """Delete a config key (idempotent)."""
        ...

    def watch_config(self, prefix: str) -> AsyncIterator[dict[str, bytes]]:
        """Yield every key under ``prefix`` with its value now, then on every change."""
        ...
