"""A client of the swarm's HTTP API: :class:`SwarmClient` and the ``queenswarm`` command.

Example:
    >>> from swarm.client import NotLeader, SwarmClient
    >>> SwarmClient("http://127.0.0.1:8080").url, issubclass(NotLeader, Exception)
    ('http://127.0.0.1:8080', True)
"""

from swarm.client.errors import (
    ApiRequestError,
    BadRequest,
    Conflict,
    Forbidden,
    NotFound,
    NotLeader,
    Overloaded,
    PayloadTooLarge,
    ServiceUnavailable,
    Unauthorized,
)
from swarm.client.http import SwarmClient

# Modules kept as namespaces (``swarm.client.cli.main``), not re-exported.
_NAMESPACE_MODULES = ("cli", "errors", "http")

__all__ = [
    "ApiRequestError",
    "BadRequest",
    "Conflict",
    "Forbidden",
    "NotFound",
    "NotLeader",
    "Overloaded",
    "PayloadTooLarge",
    "ServiceUnavailable",
    "SwarmClient",
    "Unauthorized",
]
