from __future__ import annotations

import pytest

from swarm import NoRouteError, ReplicaInfo, RoleInfo, Router


def roles() -> dict[str, RoleInfo]:
    return {
        "a": RoleInfo("a", frozenset({"T", "U"}), (ReplicaInfo("a1", "busy", 2, 2),)),
        "b": RoleInfo(
            "b",
            frozenset({"T"}),
            (ReplicaInfo("b1", "ready", 0, 2), ReplicaInfo("b2", "ready", 1, 2)),
        ),
    }


def test_type_routes_to_role_with_most_free_capacity() -> None:
    assert Router().resolve("T", "", roles()) == "role:b"
    assert Router().resolve("U", "", roles()) == "role:a"


def test_health_filter_excludes_unhealthy_replicas() -> None:
    router = Router(healthy=lambda agent_id: agent_id not in {"b1", "b2"})
    assert (
        router.resolve(
            "T",
            "",
            {**roles(), "a": RoleInfo("a", frozenset({"T"}), (ReplicaInfo("a1", "ready", 0, 1),))},
        )
        == "role:a"
    )


def test_explicit_targets_are_validated() -> None:
    r = Router()
    assert r.resolve("T", "role:b", roles()) == "role:b"
    assert r.resolve("T", "b", roles()) == "role:b"
    assert r.resolve("T", "agent:b2", roles()) == "agent:b2"
    with pytest.raises(NoRouteError, match="does not handle"):
        r.resolve("U", "role:b", roles())
    with pytest.raises(NoRouteError, match="no role"):
        r.resolve("T", "role:zz", roles())
    with pytest.raises(NoRouteError, match="no agent with id"):
        r.resolve("T", "agent:zz", roles())
    with pytest.raises(NoRouteError, match="does not handle"):
        r.resolve("U", "agent:b1", roles())
    with pytest.raises(NoRouteError, match="no agent handles"):
        r.resolve("V", "", roles())
