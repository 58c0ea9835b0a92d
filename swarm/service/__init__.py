"""The swarm as a service: one assembly layer, an HTTP API with auth, and bundles.

:class:`SwarmService` builds a running swarm from one
:class:`~swarm.settings.SwarmSettings` (runtime, registry, leadership and
fencing, memory, live config, HTTP API); both CLIs and library users go
through it. :class:`Bundle` is what a process runs, found through
``--agents`` or the ``queenswarm.agents`` entry point.

Example:
    >>> from swarm.service import SwarmService, load_bundle
    >>> SwarmService.__name__, callable(load_bundle)
    ('SwarmService', True)
"""

from swarm.service.assembly import ROUTES_ENTRY_POINT_GROUP, RouteInstaller, SwarmService
from swarm.service.bundle import ENTRY_POINT_GROUP, Bundle, JobOutcome, load_bundle
from swarm.service.leadership import LeaderInfo, Leadership

# Modules kept as namespaces (``swarm.service.api.TaskView``), not re-exported.
_NAMESPACE_MODULES = ("api", "auth", "http", "openapi", "problems", "queues")

__all__ = [
    "ENTRY_POINT_GROUP",
    "ROUTES_ENTRY_POINT_GROUP",
    "Bundle",
    "JobOutcome",
    "LeaderInfo",
    "Leadership",
    "RouteInstaller",
    "SwarmService",
    "load_bundle",
]
