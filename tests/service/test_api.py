"""The HTTP API over real HTTP, on the in-process and the Redis runtime."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest

from tests.service.agents import BoomAgent, HoldAgent
from tests.service.conftest import Served, ServeFactory, start_service

ECHO = {"type": "Echo", "payload": {"text": "TGE for $BEE", "n": 41, "tags": ["a", "b"]}}


def assert_problem(status: int, body: dict[str, object], expected: int, code: str) -> None:
    assert status == expected, body
    assert body["status"] == expected and body["code"] == code
    assert body["type"] == f"urn:queenswarm:problem:{code}"
    assert isinstance(body["title"], str) and body["title"]


async def hold(served: Served, gate: str, **extra: object) -> str:
    status, body, _ = await served.call(
        "POST", "/v1/tasks", json={"type": "Hold", "payload": {"gate": gate}, **extra}
    )
    assert status == 202, body
    return str(body["task_id"])


async def test_submit_then_result(serve: ServeFactory) -> None:
    served = await serve()
    status, body, headers = await served.call("POST", "/v1/tasks", json=ECHO)
    assert status == 202 and body["state"] == "queued" and body["replayed"] is False
    task_id = body["task_id"]
    assert headers["Location"] == f"/v1/tasks/{task_id}"
    status, view, _ = await served.call("GET", f"/v1/tasks/{task_id}/result?wait=10")
    assert status == 200, view
    assert view["state"] == "done" and view["result"] == {
        "text": "TGE for $BEE", "n": 42, "tags": ["a", "b"]}
    status, record, _ = await served.call("GET", f"/v1/tasks/{task_id}")
    assert status == 200 and record["state"] == "done" and record["attempts"] == 1
    # Prefer: wait=N answers with the final record in one round trip.
    status, body, headers = await served.call(
        "POST", "/v1/tasks", json=ECHO, headers={"Prefer": "wait=10"})
    assert status == 200 and body["task"]["result"]["n"] == 42
    assert headers["Preference-Applied"] == "wait=10"
    status, listing, _ = await served.call("GET", "/v1/tasks?state=done&limit=5")
    assert status == 200 and [t["task_id"] for t in listing["tasks"]][1] == task_id


async def test_long_poll_is_bounded_then_answers(serve: ServeFactory) -> None:
    served = await serve()
    task_id = await hold(served, "lp")
    status, view, headers = await served.call("GET", f"/v1/tasks/{task_id}/result?wait=0.2")
    assert status == 202 and view["state"] in ("queued", "running")
    assert headers["Retry-After"] == "1"
    poll = asyncio.create_task(served.call("GET", f"/v1/tasks/{task_id}/result?wait=30"))
    await HoldAgent.started_event("lp").wait()
    HoldAgent.gate("lp").set()
    status, view, _ = await poll
    assert status == 200 and view["state"] == "done" and view["result"] == "released lp"


async def test_idempotent_resubmit_and_conflict(serve: ServeFactory) -> None:
    served = await serve()
    key = {"Idempotency-Key": "order-17"}
    status, first, _ = await served.call("POST", "/v1/tasks", json=ECHO, headers=key)
    assert status == 202
    status, again, _ = await served.call("POST", "/v1/tasks", json=ECHO, headers=key)
    assert status == 200 and again["replayed"] is True
    assert again["task_id"] == first["task_id"]
    other = {"type": "Echo", "payload": {"text": "something else"}}
    status, body, _ = await served.call("POST", "/v1/tasks", json=other, headers=key)
    assert_problem(status, body, 409, "idempotency-conflict")
    status, body, _ = await served.call(
        "POST", "/v1/tasks", json=ECHO, headers={"Idempotency-Key": "bad key with spaces"})
    assert_problem(status, body, 400, "invalid-request")
    assert body["errors"][0]["field"] == "Idempotency-Key"


async def test_cancel_a_queued_task(serve: ServeFactory) -> None:
    served = await serve()
    running = await hold(served, "slot")
    await HoldAgent.started_event("slot").wait()
    queued = await hold(served, "never")  # the hold role has one slot: this one waits
    waiting = asyncio.create_task(served.call("GET", f"/v1/tasks/{queued}/result?wait=30"))
    status, body, _ = await served.call("POST", f"/v1/tasks/{queued}/cancel")
    assert status == 200 and body["state"] == "failed" and body["error"] == "cancelled"
    status, view, _ = await waiting  # a long-poll on it ends at once
    assert status == 200 and view["state"] == "failed" and view["error"] == "cancelled"
    also = await hold(served, "later")
    status, roles, _ = await served.call("GET", "/v1/roles")
    assert next(r for r in roles if r["role"] == "hold")["queue"] == {"0": 1}  # not 2
    status, body, _ = await served.call("POST", f"/v1/tasks/{also}/cancel")
    assert status == 200
    status, body, _ = await served.call("POST", f"/v1/tasks/{running}/cancel")
    assert_problem(status, body, 409, "task-started")
    HoldAgent.gate("slot").set()
    status, _, _ = await served.call("GET", f"/v1/tasks/{running}/result?wait=10")
    assert status == 200
    status, body, _ = await served.call("POST", f"/v1/tasks/{running}/cancel")
    assert_problem(status, body, 409, "task-final")


async def test_dead_letter_then_redrive(serve: ServeFactory) -> None:
    served = await serve()
    boom = {"type": "Boom", "payload": {}, "max_attempts": 1}
    status, body, _ = await served.call("POST", "/v1/tasks", json=boom)
    task_id = body["task_id"]
    status, view, _ = await served.call("GET", f"/v1/tasks/{task_id}/result?wait=10")
    assert status == 200 and view["state"] == "dead" and "boom on purpose" in view["error"]
    status, dead, _ = await served.call("GET", "/v1/dead-letters")
    assert status == 200 and [d["task_id"] for d in dead] == [task_id]
    BoomAgent.failing = False
    status, body, _ = await served.call("POST", f"/v1/dead-letters/{task_id}/redrive")
    assert status == 200 and body["redriven"] == [task_id]
    status, view, _ = await served.call("GET", f"/v1/tasks/{task_id}/result?wait=10")
    assert status == 200 and view["state"] == "done" and view["result"] == "recovered"
    status, body, _ = await served.call("POST", f"/v1/dead-letters/{task_id}/redrive")
    assert_problem(status, body, 404, "dead-letter-not-found")
    status, body, _ = await served.call("POST", "/v1/dead-letters/redrive")
    assert status == 200 and body["redriven"] == []


async def test_auth_roles(serve: ServeFactory) -> None:
    served = await serve(tokens=True)
    status, body, headers = await served.call("GET", "/v1/roles")
    assert_problem(status, body, 401, "unauthenticated")
    assert headers["WWW-Authenticate"].startswith("Bearer")
    status, body, _ = await served.call("GET", "/v1/roles", token="not-a-known-token")
    assert_problem(status, body, 401, "bad-token")
    status, roles, _ = await served.call("GET", "/v1/roles", token="viewer")
    assert status == 200 and {r["role"] for r in roles} == {"echo", "hold", "boom"}
    status, body, _ = await served.call("POST", "/v1/tasks", json=ECHO, token="viewer")
    assert_problem(status, body, 403, "forbidden")
    status, body, _ = await served.call("POST", "/v1/tasks", json=ECHO, token="operator")
    assert status == 202
    change = {"concurrency": {"echo": 3}}
    status, body, _ = await served.call("PATCH", "/v1/config", json=change, token="operator")
    assert_problem(status, body, 403, "forbidden")
    status, body, _ = await served.call("PATCH", "/v1/config", json=change, token="admin")
    assert status == 200 and body["concurrency"] == {"echo": 3}
    status, _, _ = await served.call("GET", "/healthz")
    assert status == 200  # liveness stays open for orchestrators


async def test_bad_input_names_the_field(serve: ServeFactory) -> None:
    served = await serve()
    cases = [
        ({"type": "Echo", "payload": {"text": 5}}, "payload.text"),
        ({"type": "Echo", "payload": {}}, "payload.text"),
        ({"type": "Nope", "payload": {}}, "type"),
        ({"type": "Echo", "payload": {"text": "x"}, "priority": "high"}, "priority"),
        ({"type": "Echo", "payload": {"text": "x"}, "surprise": 1}, "surprise"),
        ({"payload": {}}, "type"),
    ]
    for body, field in cases:
        status, problem, _ = await served.call("POST", "/v1/tasks", json=body)
        assert status == 400, (body, problem)
        assert problem["errors"][0]["field"] == field, (body, problem)
    status, problem, _ = await served.call("POST", "/v1/tasks", data=b"{not json")
    assert status == 400 and problem["errors"][0]["field"] == "body"
    status, problem, _ = await served.call("GET", "/v1/tasks?limit=0")
    assert status == 400 and problem["errors"][0]["field"] == "limit"
    status, problem, _ = await served.call("GET", "/v1/tasks/nope/result?wait=-1")
    assert status == 400 and problem["errors"][0]["field"] == "wait"


async def test_not_found_and_too_large(serve: ServeFactory) -> None:
    served = await serve()
    status, body, _ = await served.call("GET", "/v1/tasks/no-such-task")
    assert_problem(status, body, 404, "task-not-found")
    status, body, _ = await served.call("GET", "/v1/memory/no-such-memory")
    assert_problem(status, body, 404, "memory-not-found")
    status, body, _ = await served.call("GET", "/v2/nothing-here")
    assert_problem(status, body, 404, "not-found")
    huge = {"type": "Echo", "payload": {"text": "x" * (1 << 20)}}
    status, body, _ = await served.call("POST", "/v1/tasks", json=huge)
    assert_problem(status, body, 413, "too-large")


async def test_over_capacity_is_429_with_retry_after(serve: ServeFactory) -> None:
    served = await serve(max_outstanding=1)
    await hold(served, "busy")
    status, body, headers = await served.call("POST", "/v1/tasks", json=ECHO)
    assert_problem(status, body, 429, "over-capacity")
    assert int(headers["Retry-After"]) >= 1
    HoldAgent.gate("busy").set()


async def test_memory_store_recall_get_forget(serve: ServeFactory) -> None:
    served = await serve(tokens=True)
    memory = {"namespace": "research.tge", "content": "Aurora TGE on 14 March",
              "tags": ["tge"], "confidence": 0.9}
    status, body, _ = await served.call("POST", "/v1/memory", json=memory, token="operator")
    assert status == 201
    memory_id = body["id"]
    status, hits, _ = await served.call("GET", "/v1/memory?q=aurora%20tge&k=3", token="viewer")
    assert status == 200 and hits[0]["memory"]["id"] == memory_id
    status, got, _ = await served.call("GET", f"/v1/memory/{memory_id}", token="viewer")
    assert status == 200 and got["content"] == memory["content"] and got["tags"] == ["tge"]
    status, body, _ = await served.call("DELETE", f"/v1/memory/{memory_id}", token="operator")
    assert_problem(status, body, 403, "forbidden")
    status, _, _ = await served.call("DELETE", f"/v1/memory/{memory_id}", token="admin")
    assert status == 204
    status, body, _ = await served.call("GET", f"/v1/memory/{memory_id}", token="viewer")
    assert_problem(status, body, 404, "memory-not-found")


async def test_roles_agents_and_readiness(serve: ServeFactory) -> None:
    served = await serve()
    await hold(served, "r1")
    await HoldAgent.started_event("r1").wait()
    await hold(served, "r2")
    await hold(served, "r3")
    status, roles, _ = await served.call("GET", "/v1/roles")
    hold_role = next(r for r in roles if r["role"] == "hold")
    assert hold_role["types"] == ["Hold"] and len(hold_role["replicas"]) == 1
    assert hold_role["queue"] == {"0": 2} and hold_role["oldest_waiting"] >= 0
    status, agents, _ = await served.call("GET", "/v1/agents")
    assert {a["role"] for a in agents} == {"echo", "hold", "boom"}
    status, ready, _ = await served.call("GET", "/readyz")
    assert status == 200 and ready["status"] == "leading"
    assert ready["leader"]["queen_id"] == served.service.queen.queen_id


@pytest.mark.integration
async def test_a_standby_answers_reads_and_names_the_leader() -> None:
    from tests.service.conftest import _cleanup, redis_settings_url

    url = redis_settings_url()
    leader = await start_service("redis", redis_url=url)
    standby = None
    try:
        await leader.wait_leading(timeout=10)
        standby = await start_service("redis", redis_url=url, agents=[])
        assert not standby.leadership.leading
        async with aiohttp.ClientSession() as http:
            served = Served(service=standby, url=standby.url, http=http, runtime="redis")
            status, body, headers = await served.call("POST", "/v1/tasks", json=ECHO)
            assert_problem(status, body, 503, "not-leader")
            assert body["leader"]["url"] == leader.url and headers["Retry-After"]
            assert leader.url in body["detail"]
            status, ready, _ = await served.call("GET", "/readyz")
            assert status == 200 and ready["status"] == "standby"
            assert ready["leader"]["queen_id"] == leader.queen.queen_id
            status, roles, _ = await served.call("GET", "/v1/roles")
            assert status == 200 and {r["role"] for r in roles} == {"echo", "hold", "boom"}
            # Reads of the leader's tasks work on the standby too.
            via_leader = Served(service=leader, url=leader.url, http=http, runtime="redis")
            status, body, _ = await via_leader.call("POST", "/v1/tasks", json=ECHO)
            status, view, _ = await served.call(
                "GET", f"/v1/tasks/{body['task_id']}/result?wait=10")
            assert status == 200 and view["result"]["n"] == 42
    finally:
        if standby is not None:
            await standby.close()
        await leader.close()
        await _cleanup(url)


async def test_openapi_lists_submittable_types_with_their_schemas(serve: ServeFactory) -> None:
    served = await serve()
    status, doc, _ = await served.call("GET", "/openapi.json")
    assert status == 200 and doc["openapi"] == "3.1.0"
    assert doc["x-message-types"] == ["Boom", "Echo", "Hold"]
    echo = doc["components"]["schemas"]["Echo"]
    assert echo["required"] == ["text"] and echo["properties"]["n"]["type"] == "integer"
    body = doc["paths"]["/v1/tasks"]["post"]["requestBody"]["content"]["application/json"]
    variants = {v["properties"]["type"]["const"]: v for v in body["schema"]["oneOf"]}
    assert variants["Echo"]["properties"]["payload"] == {"$ref": "#/components/schemas/Echo"}
    problem = doc["paths"]["/v1/tasks"]["post"]["responses"]["409"]["content"]
    assert problem["application/problem+json"]["schema"]["$ref"].endswith("/Problem")


async def test_draining_refuses_writes_and_is_not_ready(serve: ServeFactory) -> None:
    served = await serve()
    task_id = await hold(served, "drain")
    served.service.begin_drain()
    status, body, headers = await served.call("POST", "/v1/tasks", json=ECHO)
    assert_problem(status, body, 503, "draining")
    assert headers["Retry-After"]
    status, ready, _ = await served.call("GET", "/readyz")
    assert status == 503 and ready["status"] == "draining"
    status, view, _ = await served.call("GET", f"/v1/tasks/{task_id}")
    assert status == 200  # reads still answer while in-flight work finishes
    HoldAgent.gate("drain").set()
    status, view, _ = await served.call("GET", f"/v1/tasks/{task_id}/result?wait=10")
    assert status == 200 and view["state"] == "done"
