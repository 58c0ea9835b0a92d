"""Routing: message type → capable role → replica.

The :class:`Router` resolves where a task goes from a directory snapshot
(what runtimes report from registrations, or discovery reports from Consul).
It is pure and testable alone; a health filter lets discovery exclude
instances whose checks went critical.

Example:
    >>> from swarm.routing import Router
    >>> from swarm.runtime import RoleInfo, ReplicaInfo
    >>> roles = {"adder": RoleInfo("adder", frozenset({"Add"}), (ReplicaInfo("a1", "ready", 0, 1),))}
    >>> Router().resolve("Add", "", roles)
    'role:adder'
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from swarm.errors import NoRouteError
from swarm.runtime import ReplicaInfo, RoleInfo

__all__ = ["Router", "pick_replica"]

_ACCEPTING = frozenset({"ready", "busy"})


def pick_replica(
    replicas: Sequence[ReplicaInfo], *, avoid: str | None = None
) -> ReplicaInfo | None:
    """Pick the least-loaded accepting replica with free capacity, avoiding one id if possible."""
    best: ReplicaInfo | None = None
    for r in replicas:
        if r.state not in _ACCEPTING or r.inflight >= r.capacity:
            continue
        if best is None or (r.agent_id != avoid, -r.inflight) > (best.agent_id != avoid, -best.inflight):
            best = r
    return best


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
            info = roles.get(role)
            if info is None:
                raise NoRouteError(f"no role {role!r}")
            if type_name not in info.types:
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
