"""``open_registry``: a started registry from settings, with an optional in-memory fallback.

Example:
    >>> import asyncio
    >>> from discovery import open_registry
    >>> async def demo():
    ...     reg = await open_registry(None)
    ...     name = type(reg).__name__
    ...     await reg.close()
    ...     return name
    >>> asyncio.run(demo())
    'InMemoryRegistry'
"""

from __future__ import annotations

import structlog

from discovery.consul import ConsulRegistry
from discovery.memory import InMemoryRegistry
from discovery.registry import Registry
from discovery.settings import ConsulSettings
from swarm.errors import AclDenied, DiscoveryError

__all__ = ["open_registry"]

_log = structlog.get_logger("discovery")


async def open_registry(
    settings: ConsulSettings | str | None, *, fallback_to_memory: bool = False
) -> Registry:
    """Start and return a registry.

    Args:
        settings: Consul settings or DSN; ``None`` for the embedded registry.
        fallback_to_memory: When Consul is unreachable, warn and return an
            :class:`InMemoryRegistry` instead of raising.

    Raises:
        DiscoveryError: Consul is unreachable (the message names its address)
            and no fallback was asked for.
        AclDenied: Consul refused the token (never falls back).
    """
    if settings is None:
        memory = InMemoryRegistry()
        await memory.start()
        return memory
    if isinstance(settings, str):
        settings = ConsulSettings.from_dsn(settings)
    consul = ConsulRegistry(settings=settings)
    try:
        await consul.start()
    except AclDenied:
        raise
    except DiscoveryError as exc:
        if not fallback_to_memory:
            raise
        _log.warning(
            "Consul unreachable; running on the in-memory registry (this process only)",
            address=settings.address, error=str(exc),
        )
        memory = InMemoryRegistry()
        await memory.start()
        return memory
    return consul
