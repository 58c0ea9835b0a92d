"""The OpenAPI 3.1 document of the HTTP API, generated from the route table and msgspec types.

Schemas come from :func:`msgspec.json.schema_components` over the same types
that validate requests and shape responses; each message type some running
agent handles is added too, and ``POST /v1/tasks`` accepts one of them by name
(``type``) with its fields (``payload``).

Example:
    >>> import asyncio, json
    >>> from swarm.service.openapi import openapi_document
    >>> class _Service:  # what the document needs of a SwarmService
    ...     async def submittable(self):
    ...         return {}
    >>> doc = json.loads(asyncio.run(openapi_document(_Service())))
    >>> doc["openapi"], "/v1/tasks" in doc["paths"]
    ('3.1.0', True)
"""

from __future__ import annotations

from typing import Any

import msgspec

from swarm.service import api
from swarm.service.http import ERROR_STATUSES, ROUTES, Route

__all__ = ["openapi_document"]

_REF = "#/components/schemas/{name}"
_VERSION = "0.1.0"


def _ref(tp: Any, schema_of: dict[Any, dict[str, Any]]) -> dict[str, Any]:
    return schema_of[tp]


def _operation(route: Route, schema_of: dict[Any, dict[str, Any]], submit: dict[str, Any] | None,
               secured: bool) -> dict[str, Any]:
    op: dict[str, Any] = {"operationId": route.name, "summary": route.summary}
    params = []
    for p in route.params:
        params.append({
            "name": p.name, "in": p.where, "required": p.required or p.where == "path",
            "schema": p.schema, **({"description": p.description} if p.description else {}),
        })
    if params:
        op["parameters"] = params
    if route.body is not None:
        schema = submit if route.body is api.SubmitRequest and submit else _ref(
            route.body, schema_of)
        op["requestBody"] = {
            "required": True, "content": {"application/json": {"schema": schema}}
        }
    responses: dict[str, Any] = {}
    for status, tp in route.responses.items():
        content: dict[str, Any]
        if tp is None:
            content = {} if status == 204 else {route.content_type: {"schema": {}}}
        else:
            content = {"application/json": {"schema": _ref(tp, schema_of)}}
        responses[str(status)] = {"description": "OK" if status < 300 else "see body",
                                  **({"content": content} if content else {})}
    problem = {"application/problem+json": {"schema": _ref(api.Problem, schema_of)}}
    statuses: list[int] = []
    if route.role is not None and secured:
        statuses += [401, 403]
    if route.params or route.body is not None:
        statuses.append(400)
    if any(p.where == "path" for p in route.params):
        statuses.append(404)
    if route.body is not None:
        statuses.append(413)
    if route.write:
        statuses += [409, 503]
    if route.name == "submitTask":
        statuses.append(429)
    statuses.append(503)
    for status in statuses:
        responses.setdefault(str(status), {"description": ERROR_STATUSES[status],
                                           "content": problem})
    op["responses"] = responses
    if route.role is not None and secured:
        op["security"] = [{"bearer": []}]
        op["x-required-role"] = route.role
    return op


async def openapi_document(service: Any, *, secured: bool = True) -> bytes:
    """The document, as JSON bytes.

    Args:
        service: Asked for :meth:`~swarm.service.assembly.SwarmService.submittable`.
        secured: Whether operations list bearer security and 401/403 answers.
    """
    from swarm.service.assembly import UntypedPayload

    every = await service.submittable()
    untyped = sorted(n for n, cls in every.items() if issubclass(cls, UntypedPayload))
    messages = {n: cls for n, cls in every.items() if n not in untyped}
    types: list[Any] = [
        api.Problem, api.Health, api.Readiness, api.SubmitRequest, api.Submitted, api.TaskView,
        api.TaskList, api.RoleView, api.ReplicaView, api.DeadLetterView, api.RedriveResult,
        api.MemoryStoreRequest, api.MemoryStored, api.MemoryView, api.RecallHitView,
        api.ConfigView, api.ConfigChange,
        list[api.RoleView], list[api.ReplicaView], list[api.DeadLetterView],
        list[api.RecallHitView],
    ]
    names = sorted(messages)
    types += [messages[n] for n in names]
    schemas, components = msgspec.json.schema_components(types, ref_template=_REF)
    schema_of = dict(zip(types, schemas, strict=True))
    submit: dict[str, Any] | None = None
    if names or untyped:
        variants = []
        for n in names:
            variants.append({
                "allOf": [schema_of[api.SubmitRequest]],
                "properties": {
                    "type": {"const": n},
                    "payload": schema_of[messages[n]],
                },
                "required": ["type", "payload"],
                "title": f"Submit {n}",
            })
        for n in untyped:
            variants.append({
                "allOf": [schema_of[api.SubmitRequest]],
                "properties": {"type": {"const": n}, "payload": {"type": "object"}},
                "required": ["type", "payload"],
                "title": f"Submit {n} (validated by its agent)",
            })
        submit = {"oneOf": variants}
    paths: dict[str, dict[str, Any]] = {}
    for route in ROUTES:
        paths.setdefault(route.path, {})[route.method.lower()] = _operation(
            route, schema_of, submit, secured
        )
    doc = {
        "openapi": "3.1.0",
        "info": {
            "title": "queenswarm",
            "version": _VERSION,
            "description": (
                "Submit tasks to a queenswarm swarm and watch them. Errors are RFC 9457 "
                "problem documents with a stable `code`. Only the leading Queen accepts "
                "writes; a standby answers 503 `not-leader` naming the leader."
            ),
        },
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
        "x-message-types": names,
        "x-untyped-message-types": untyped,
    }
    return msgspec.json.encode(doc)
