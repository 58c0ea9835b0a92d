"""Routing: message type → capable role → replica.

The :class:`Router` resolves where a task goes from a directory snapshot
(what runtimes report from registrations, or discovery reports from Consul).
It is pure and testable alone; a health filter lets discovery exclude
instances whose checks went critical.

Example:
    >>> from swarm.routing import Router
    >>> from swarm.runtime import RoleInfo, ReplicaInfo
    >>> replica = ReplicaInfo("a1", "ready", 0, 1)
    >>> roles = {"adder": RoleInfo("adder", frozenset({"Add"}), (replica,))}
    >>> Router().resolve("Add", "", roles)
    'role:adder'
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from swarm.errors import NoRouteError
from swarm.runtime import RoleInfo

__all__ = ["Router"]


class Router:
    """Resolves a task's recipient.

    Args:
        healthy: Optional predicate on agent ids; replicas failing it are not
            routed to (discovery plugs its health view in here).
    """

    def __init__(self, *, healthy: Callable[[str], bool] | None = None) -> None:
        self.healthy = healthy

    def resolve(self, type_name: str, to: str, roles: Mapping[str, RoleInfo]) -> str:
        """Return the recipient for a task of ``type_name`` addressed to ``to``.

        ``to`` may be ``agent:<id>``, ``role:<name>``, a bare role name, or empty
        (any role handling the type; the one with most free capacity wins).

        Raises:
            NoRouteError: Nothing registered can take it.
        """
        if to.startswith("agent:"):
            agent_id = to[6:]
            for info in roles.values():
                if any(r.agent_id == agent_id for r in info.replicas):
                    if type_name not in info.types:
                        raise NoRouteError(f"agent {agent_id!r} does not handle {type_name!r}")
                    return to
            raise NoRouteError(f"no agent with id {agent_id!r}")
        if to:
            role = to[5:] if to.startswith("role:") else to
            found = roles.get(role)
            if found is None:
                raise NoRouteError(f"no role {role!r}")
            if type_name not in found.types:
                raise NoRouteError(f"role {role!r} does not handle {type_name!r}")
            return f"role:{role}"
        candidates = [info for info in roles.values() if type_name in info.types]
        if not candidates:
            raise NoRouteError(f"no agent handles {type_name!r}")
        return f"role:{max(candidates, key=self._free).role}"

    def _free(self, info: RoleInfo) -> int:
        return sum(
            r.capacity - r.inflight
            for r in info.replicas
            if self.healthy is None or self.healthy(r.agent_id)
        )
