"""HTTP routes of the model layer, mounted on the service's API app.

* ``POST /v1/chat`` ``{"question": "...", "k": 8}``: the answer as server-sent
  events (``sources``, ``delta``..., ``done``; see :mod:`swarm.llm.chat`);
* ``GET /v1/llm/usage``: tokens and cost this process recorded per swarm, role,
  agent and task, and what the swarm spent against its budgets.

Installed through the ``queenswarm.routes`` entry point (``install``).
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import msgspec
from aiohttp import web

from swarm.llm.chat import answer
from swarm.service.http import SERVICE_KEY, guarded
from swarm.service.problems import ApiError

if TYPE_CHECKING:
    from swarm.service.assembly import SwarmService

__all__ = ["ChatRequest", "install"]

_MAX_QUESTION = 2000


class ChatRequest(msgspec.Struct, forbid_unknown_fields=True):
    """Body of ``POST /v1/chat``."""

    question: str
    k: int = 8


def _llm(service: SwarmService) -> Any:
    from swarm.llm.client import offline

    return service.llm if service.llm is not None else offline()


@guarded("viewer")
async def chat(request: web.Request) -> web.StreamResponse:
    service = request.app[SERVICE_KEY]
    try:
        body = msgspec.json.decode(await request.read(), type=ChatRequest)
    except msgspec.DecodeError as exc:
        raise ApiError(400, "bad-request", f"body must be {{\"question\": str, \"k\": int}}: "
                       f"{exc}") from None
    question = body.question.strip()
    if not question or len(question) > _MAX_QUESTION or not 1 <= body.k <= 50:
        raise ApiError(400, "bad-request",
                       f"question must be 1..{_MAX_QUESTION} characters and k 1..50")
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream",
                                           "Cache-Control": "no-cache"})
    await response.prepare(request)
    scope = _llm(service).scope(role="chat", agent=request.get("token_role", ""))
    records = await service.recent_records()
    async for event in answer(question, llm=scope, memory=service.memory, records=records,
                              k=body.k):
        payload = json.dumps(event.data, separators=(",", ":"))
        await response.write(f"event: {event.event}\ndata: {payload}\n\n".encode())
    await response.write_eof()
    return response


@guarded("viewer")
async def usage(request: web.Request) -> web.Response:
    service = request.app[SERVICE_KEY]
    llm = _llm(service)
    budgets = []
    for b in llm.budgets.budgets:
        # "role" and "task" budgets are one counter per role or task: not one figure.
        shared = b.scope == "swarm" or b.scope.startswith("role:")
        spent = await llm.budgets.spent(b.scope, b.unit, b.per) if shared else None
        budgets.append({"scope": b.scope, "unit": b.unit, "limit": b.limit, "per": b.per,
                        "spent": spent})
    body = {
        "mode": "online" if llm.available else "offline",
        "offline_reason": llm.offline_reason,
        "model": llm.settings.model,
        "usage": {k: msgspec.to_builtins(v) for k, v in llm.accountant.snapshot().items()},
        "budgets": budgets,
    }
    return web.json_response(body)


def install(app: web.Application, service: SwarmService) -> None:
    """Add the model layer's routes to the API app."""
    app.router.add_post("/v1/chat", chat)
    app.router.add_get("/v1/llm/usage", usage)
