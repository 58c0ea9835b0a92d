"""A client of the swarm's HTTP API: :class:`SwarmClient` and the ``queenswarm`` command.

Example:
    >>> import swarm.client
    >>> swarm.client.__all__ == sorted(swarm.client.__all__)
    True
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
