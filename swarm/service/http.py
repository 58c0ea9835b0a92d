"""The HTTP API on aiohttp: routes, auth, leadership checks and problem documents.

Every route is declared once in :data:`ROUTES` with its method, path, role,
whether it writes (only the leading Queen accepts writes), request type and
response types; the same table mounts the handlers and generates the OpenAPI
document (:mod:`swarm.service.openapi`). Errors are RFC 9457 problem
documents (:class:`~swarm.service.api.Problem`) with stable codes.

Extra routes (a dashboard, SSE, chat) are mounted by route installers:
``install(app, service)`` callables passed as ``SwarmService(routes=[...])``
or registered in the ``queenswarm.routes`` entry-point group. An installer
may wrap its handlers with :func:`guarded` to get the same auth and
leadership checks and problem documents.

Example:
    >>> from swarm.service.http import ROUTES
    >>> sorted({r.path for r in ROUTES})[:3]
    ['/healthz', '/metrics', '/openapi.json']
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, TypeVar

import msgspec
import structlog
from aiohttp import web

from swarm.constants import DEFAULT_MAX_MESSAGE_BYTES
from swarm.errors import (
    ConfigError,
    EncodeError,
    LeadershipLost,
    MemoryUnavailable,
    MemoryValidationError,
    MessageTooLarge,
    NoRouteError,
    RoutingError,
    RuntimeClosed,
    SwarmError,
    SwarmTimeout,
    TransportError,
)
from swarm.ledger import TaskRecord
from swarm.service import api
from swarm.service.auth import TokenStore
from swarm.service.problems import ApiError, problem_response

if TYPE_CHECKING:
    from swarm.service.assembly import RouteInstaller, SwarmService

__all__ = [
    "ERROR_STATUSES", "MAX_WAIT", "ROUTES", "SERVICE_KEY", "HttpServer", "Param", "Route",
    "build_app", "guarded",
]

_log = structlog.get_logger("swarm.service.http")

#: Where the app keeps its :class:`~swarm.service.assembly.SwarmService`.
SERVICE_KEY: web.AppKey[SwarmService] = web.AppKey("service")
_TOKENS_KEY: web.AppKey[TokenStore] = web.AppKey("tokens")
_METRICS_KEY: web.AppKey[list[Any]] = web.AppKey("metrics_handler", list)
# The role of the request's token; a typed key where aiohttp has them (3.12+).
_ROLE_KEY: Any = web.RequestKey("token_role", str) if hasattr(web, "RequestKey") else "token_role"
_IDEM_KEY_RE = re.compile(r"^[\x21-\x7e]{1,200}$")
_PREFER_WAIT = re.compile(r"(?:^|[,;\s])wait=(\d+(?:\.\d+)?)")
#: Longest long-poll, in seconds.
MAX_WAIT = 60.0

_T = TypeVar("_T")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True, slots=True)
class Param:
    """A query or path parameter (for validation messages and the OpenAPI doc)."""

    name: str
    where: str  # "query" | "path" | "header"
    schema: dict[str, Any]
    description: str = ""
    required: bool = False


@dataclass(frozen=True, slots=True)
class Route:
    """One API operation."""

    method: str
    path: str
    name: str
    summary: str
    role: str | None  # None: open to anyone
    write: bool = False
    body: type | None = None
    responses: dict[int, Any] = field(default_factory=dict)
    params: tuple[Param, ...] = ()
    handler: Handler | None = None
    content_type: str = "application/json"


def _json(value: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(
        body=msgspec.json.encode(value), status=status, headers=headers,
        content_type="application/json",
    )


def _service(request: web.Request) -> SwarmService:
    return request.app[SERVICE_KEY]


# -- request parsing -----------------------------------------------------------
_PATH_RE = re.compile(r"`\$(?P<path>[^`]*)`")


def _field_of(exc: msgspec.ValidationError, prefix: str = "") -> str:
    """The dotted name of the field msgspec's message points at ("body" for the whole)."""
    text = str(exc)
    m = _PATH_RE.search(text)
    path = m.group("path").lstrip(".") if m else ""
    named = re.search(r"(?:required|unknown) field `([^`]+)`", text)
    if named:
        path = ".".join(p for p in (path, named.group(1)) if p)
    return ".".join(p for p in (prefix, path) if p) or "body"


def _bad(field_name: str, message: str, *, code: str = "invalid-request") -> ApiError:
    return ApiError(
        400, code, f"{field_name}: {message}",
        errors=[api.FieldError(field=field_name, message=message)],
    )


def _query_number(
    request: web.Request, name: str, default: float, lo: float, hi: float, *, integer: bool = False
) -> float:
    raw = request.query.get(name)
    if raw is None:
        return default
    try:
        value = int(raw) if integer else float(raw)
    except ValueError:
        kind = "an integer" if integer else "a number"
        raise _bad(name, f"must be {kind} between {lo:g} and {hi:g}") from None
    if not lo <= value <= hi:
        raise _bad(name, f"must be between {lo:g} and {hi:g}")
    return value


def _task_view(service: SwarmService, rec: TaskRecord) -> api.TaskView:
    result: Any = None
    if rec.result is not None and rec.state == "done":
        try:
            result = service.runtime.codec.decode_value(rec.result_type, rec.result)
        except SwarmError:
            result = None
    return api.TaskView(
        task_id=rec.task_id, type=rec.type, recipient=rec.recipient, state=rec.state.value,
        attempts=rec.attempts, priority=rec.priority, idempotency_key=rec.idempotency_key,
        agent_id=rec.agent_id, error=rec.error, result=result, created_at=rec.created_at,
        started_at=rec.started_at, finished_at=rec.finished_at, epoch=rec.epoch,
    )


async def _record(service: SwarmService, task_id: str) -> TaskRecord:
    if len(task_id) > 200:
        raise ApiError(404, "task-not-found", "no such task")
    rec = await service.runtime.ledger.get(task_id)
    if rec is None:
        # A finished task that left the live ledger (Redis retention, the
        # embedded bounds) is still in the history, when there is one.
        history = getattr(service.runtime, "history", None)
        if history is not None:
            rec = await history.get(task_id)
    if rec is None:
        raise ApiError(404, "task-not-found", f"no task {task_id!r} (unknown, or expired)")
    return rec


def _leader_view(info: Any) -> api.LeaderView | None:
    if info is None:
        return None
    return api.LeaderView(queen_id=info.queen_id, url=info.url, epoch=info.epoch)


# -- handlers ------------------------------------------------------------------
async def _healthz(request: web.Request) -> web.Response:
    return _json(api.Health())


async def _readyz(request: web.Request) -> web.Response:
    service = _service(request)
    leader = _leader_view(await service.leadership.leader())
    state: Literal["leading", "standby", "draining"] = "draining"
    if service.ready():
        state = "leading" if service.leadership.leading else "standby"
    body = api.Readiness(status=state, queen_id=service.queen.queen_id, leader=leader)
    return _json(body, status=503 if state == "draining" else 200)


async def _openapi_json(request: web.Request) -> web.Response:
    from swarm.service.openapi import openapi_document

    doc = await openapi_document(_service(request), secured=bool(request.app[_TOKENS_KEY]))
    return web.Response(body=doc, content_type="application/json")


async def _metrics(request: web.Request) -> web.StreamResponse:
    # The process registry plus the gauges read from Redis when scraped (queue
    # depth and age, replicas by health): see swarm.exposition.
    from swarm.exposition import metrics_handler

    handlers = request.app[_METRICS_KEY]
    if not handlers:
        handlers.append(metrics_handler(_service(request).runtime))
    response: web.StreamResponse = await handlers[0](request)
    return response


def _prefer_wait(request: web.Request) -> float:
    prefer = request.headers.get("Prefer")
    if not prefer:
        return 0.0
    m = _PREFER_WAIT.search(prefer)
    return min(float(m.group(1)), MAX_WAIT) if m else 0.0


async def _submit_task(request: web.Request) -> web.Response:
    service = _service(request)
    outstanding = getattr(service.runtime, "outstanding", 0)
    if outstanding >= service.max_outstanding:
        raise ApiError(
            429, "over-capacity",
            f"{outstanding} tasks are unfinished (limit {service.max_outstanding}); retry later",
            headers={"Retry-After": "1"},
        )
    raw = await _raw_body(request)
    req = _decode_body(raw, api.SubmitRequest)
    cls = await service.message_class(req.type)
    if cls is None:
        raise _bad("type", f"no agent handles message type {req.type!r} (see GET /v1/roles)",
                   code="unknown-type")
    if issubclass(cls, dict):  # an UntypedPayload: its agent validates the fields
        message: Any = cls(req.payload)
    else:
        try:
            message = msgspec.convert(req.payload, cls)
        except msgspec.ValidationError as exc:
            raise _bad(_field_of(exc, "payload"), str(exc).split(" - at ")[0]) from None
    key = request.headers.get("Idempotency-Key")
    replayed = False
    if key is not None:
        if not _IDEM_KEY_RE.match(key):
            raise _bad("Idempotency-Key", "1 to 200 visible ASCII characters")
        fingerprint = hashlib.sha256(raw).hexdigest()
        seen = await service.claim_idempotency_key(key, fingerprint)
        if seen is not None and seen != fingerprint:
            raise ApiError(
                409, "idempotency-conflict",
                "this Idempotency-Key was used with a different request body",
            )
        replayed = seen is not None
    handle = await service.queen.submit(
        message, to=req.to, priority=req.priority, timeout=req.timeout, deadline=req.deadline,
        idempotency_key=key, max_attempts=req.max_attempts,
    )
    task_id = handle.task_id
    service.note_task(task_id)
    headers = {"Location": f"/v1/tasks/{task_id}"}
    wait = _prefer_wait(request)
    if wait > 0:
        try:
            rec = await service.runtime.wait(task_id, timeout=wait)
        except SwarmTimeout:
            pass
        else:
            view = _task_view(service, rec)
            headers["Preference-Applied"] = f"wait={wait:g}"
            return _json(
                api.Submitted(task_id=task_id, state=view.state, replayed=replayed, task=view),
                status=200, headers=headers,
            )
    return _json(api.Submitted(task_id=task_id, replayed=replayed), status=200 if replayed
                 else 202, headers=headers)


async def _raw_body(request: web.Request) -> bytes:
    try:
        raw = await request.read()
    except web.HTTPRequestEntityTooLarge as exc:
        raise ApiError(413, "too-large", exc.text or "request body too large") from None
    if not raw:
        raise _bad("body", "a JSON object is required")
    return raw


def _decode_body(raw: bytes, cls: type[_T]) -> _T:
    try:
        return msgspec.json.decode(raw, type=cls)
    except msgspec.ValidationError as exc:
        raise _bad(_field_of(exc), str(exc).split(" - at ")[0]) from None
    except msgspec.DecodeError as exc:
        raise _bad("body", f"not valid JSON: {exc}") from None


async def _get_task(request: web.Request) -> web.Response:
    service = _service(request)
    return _json(_task_view(service, await _record(service, request.match_info["task_id"])))


async def _task_result(request: web.Request) -> web.Response:
    service = _service(request)
    task_id = request.match_info["task_id"]
    wait = _query_number(request, "wait", 30.0, 0, MAX_WAIT)
    rec = await _record(service, task_id)
    if not rec.final and wait > 0:
        try:
            rec = await service.runtime.wait(task_id, timeout=wait)
        except SwarmTimeout:
            rec = await _record(service, task_id)
        except KeyError:
            raise ApiError(404, "task-not-found", f"no task {task_id!r}") from None
    view = _task_view(service, rec)
    if rec.final:
        return _json(view)
    return _json(view, status=202, headers={"Retry-After": "1"})


async def _cancel_task(request: web.Request) -> web.Response:
    service = _service(request)
    task_id = request.match_info["task_id"]
    rec = await _record(service, task_id)
    if rec.final:
        raise ApiError(409, "task-final", f"task {task_id} already ended {rec.state.value}")
    try:
        cancelled = await service.cancel(task_id)
    except SwarmError as exc:
        raise ApiError(409, "cancel-unsupported", str(exc)) from None
    if not cancelled:
        rec = await _record(service, task_id)
        raise ApiError(
            409, "task-started",
            f"task {task_id} is {rec.state.value}; only a task that has not started is cancelled",
        )
    return _json(_task_view(service, await _record(service, task_id)))


_LIVE = ("queued", "running")
_FINAL = ("done", "failed", "dead", "expired")
_MAX_TIME = 1e11  # unix seconds (year 5138): a bound schemathesis cannot overflow


def _listing(service: SwarmService) -> tuple[Any, Any]:
    """The runtime's task history and live-task listing (one code path, both runtimes)."""
    try:
        return service.runtime.history, service.runtime.live_tasks  # type: ignore[attr-defined]
    except (AttributeError, ConfigError) as exc:
        raise ApiError(503, "unavailable", f"this runtime cannot list tasks: {exc}") from None


def _encode_cursor(phase: str, rec: TaskRecord | None) -> str:
    at = None if rec is None else (rec.finished_at or 0.0) if phase == "h" else rec.created_at
    raw = msgspec.json.encode([phase, at, None if rec is None else rec.task_id])
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_cursor(raw: str) -> tuple[str, tuple[float, str] | None]:
    if len(raw) > 400:
        raise _bad("cursor", "at most 400 characters")
    try:
        phase, at, task_id = msgspec.json.decode(
            base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)),
            type=tuple[Literal["l", "h"], float | None, str | None],
        )
    except (ValueError, msgspec.DecodeError, binascii.Error):
        raise _bad("cursor", "not a cursor this API returned (pass a page's 'cursor')") from None
    return phase, None if at is None or task_id is None else (at, task_id)


async def _list_tasks(request: web.Request) -> web.Response:
    service = _service(request)
    q = request.query
    state = q.get("state")
    if state is not None and state not in _LIVE + _FINAL:
        raise _bad("state", f"must be one of {', '.join(_LIVE + _FINAL)}")
    type_name = q.get("type")
    if type_name is not None and not 1 <= len(type_name) <= 200:
        raise _bad("type", "a message type name of 1 to 200 characters")
    since = _query_number(request, "since", -1.0, 0, _MAX_TIME)
    until = _query_number(request, "until", -1.0, 0, _MAX_TIME)
    if 0 <= until < since:
        raise _bad("until", "must not be before since")
    limit = int(_query_number(request, "limit", 100, 1, 1000, integer=True))
    raw_cursor = q.get("cursor")
    # No state: the live tasks first (phase "l"), then the history ("h").
    phase, before = ("h" if state in _FINAL else "l"), None
    if raw_cursor is not None:
        phase, before = _decode_cursor(raw_cursor)
        if (phase == "l" and state in _FINAL) or (phase == "h" and state in _LIVE):
            raise _bad("cursor", f"this cursor does not page tasks in state {state!r}")
    history, live = _listing(service)
    filters: dict[str, Any] = {
        "type": type_name, "since": None if since < 0 else since,
        "until": None if until < 0 else until,
    }
    page: list[TaskRecord] = []
    cursor: str | None = None
    if phase == "l":
        page = await live.live(state=state, before=before, limit=limit + 1, **filters)
        if len(page) > limit:
            page = page[:limit]
            cursor = _encode_cursor("l", page[-1])
        elif state is None:
            if len(page) == limit:
                cursor = _encode_cursor("h", None)
            else:
                phase, before = "h", None
    if phase == "h":
        want = limit - len(page)
        done = await history.query(state=state, before=before, limit=want + 1, **filters)
        if len(done) > want:
            done = done[:want]
            cursor = _encode_cursor("h", done[-1])
        page += done
    nxt = None
    headers: dict[str, str] = {}
    if cursor is not None:
        nxt = str(request.rel_url.update_query(cursor=cursor))
        headers["Link"] = f'<{nxt}>; rel="next"'
    return _json(api.TaskList(tasks=[_task_view(service, r) for r in page], cursor=cursor,
                              next=nxt), headers=headers)


async def _list_roles(request: web.Request) -> web.Response:
    service = _service(request)
    roles = await service.roles()
    stats = await service.queue_stats()
    health = await service.health()
    out = []
    for name in sorted(roles):
        info = roles[name]
        q = stats.get(name)
        replicas = [
            api.ReplicaView(
                agent_id=r.agent_id, role=name, state=r.state, inflight=r.inflight,
                capacity=r.capacity, healthy=health.get(r.agent_id),
            )
            for r in info.replicas
        ]
        healthy = sum(1 for r in replicas if r.healthy is not False)
        out.append(api.RoleView(
            role=name, types=sorted(info.types), replicas=replicas, healthy=healthy,
            queue={str(p): n for p, n in sorted((q.depth if q else {}).items(), reverse=True)},
            oldest_waiting=q.oldest_age if q else None,
        ))
    return _json(out)


async def _list_agents(request: web.Request) -> web.Response:
    service = _service(request)
    roles = await service.roles()
    health = await service.health()
    out = [
        api.ReplicaView(
            agent_id=r.agent_id, role=name, state=r.state, inflight=r.inflight,
            capacity=r.capacity, healthy=health.get(r.agent_id),
        )
        for name in sorted(roles)
        for r in roles[name].replicas
    ]
    return _json(out)


async def _list_dead_letters(request: web.Request) -> web.Response:
    service = _service(request)
    limit = int(_query_number(request, "limit", 100, 1, 1000, integer=True))
    out = [
        api.DeadLetterView(
            task_id=d.envelope.id, type=d.envelope.type, recipient=d.envelope.recipient,
            attempts=d.envelope.attempt, error=d.error, failed_at=d.failed_at,
        )
        for d in await service.queen.dead_letters(limit=limit)
    ]
    return _json(out)


async def _redrive_one(request: web.Request) -> web.Response:
    service = _service(request)
    task_id = request.match_info["task_id"]
    if len(task_id) > 200 or not await service.queen.redrive(task_id):
        raise ApiError(404, "dead-letter-not-found", f"task {task_id!r} is not dead-lettered")
    return _json(api.RedriveResult(redriven=[task_id]))


async def _redrive_all(request: web.Request) -> web.Response:
    service = _service(request)
    done: list[str] = []
    while True:
        batch = await service.queen.dead_letters(limit=1000)
        moved = [d.envelope.id for d in batch if await service.queen.redrive(d.envelope.id)]
        done += moved
        if len(batch) < 1000 or not moved:
            break
    return _json(api.RedriveResult(redriven=done))


def _memory_view(m: Any) -> api.MemoryView:
    return api.MemoryView(
        id=m.id, namespace=m.namespace, content=m.content, kind=str(m.kind), author=m.author,
        tags=list(m.tags), confidence=m.confidence, score=m.score, created_at=m.created_at,
        expires_at=m.expires_at, task_id=m.task_id, sources=list(m.sources),
    )


async def _store_memory(request: web.Request) -> web.Response:
    service = _service(request)
    req = _decode_body(await _raw_body(request), api.MemoryStoreRequest)
    try:
        memory_id = await service.memory.store(
            namespace=req.namespace, content=req.content, kind=req.kind,
            author=f"api:{request.get(_ROLE_KEY, 'open')}", tags=req.tags,
            confidence=req.confidence, ttl=req.ttl, sources=req.sources,
        )
    except MemoryValidationError as exc:
        raise _bad("body", str(exc)) from None
    return _json(api.MemoryStored(id=memory_id), status=201,
                 headers={"Location": f"/v1/memory/{memory_id}"})


async def _recall_memory(request: web.Request) -> web.Response:
    service = _service(request)
    query = request.query.get("q", "")
    if not query.strip() or len(query) > 2000:
        raise _bad("q", "a query of 1 to 2000 characters is required")
    k = int(_query_number(request, "k", 10, 1, 100, integer=True))
    hits = await service.memory.recall(query, k=k)
    return _json([api.RecallHitView(memory=_memory_view(h.memory), score=h.score) for h in hits])


async def _get_memory(request: web.Request) -> web.Response:
    service = _service(request)
    memory_id = request.match_info["memory_id"]
    memory = await service.memory.get(memory_id) if len(memory_id) <= 200 else None
    if memory is None:
        raise ApiError(404, "memory-not-found", f"no memory {memory_id!r}")
    return _json(_memory_view(memory))


async def _forget_memory(request: web.Request) -> web.Response:
    service = _service(request)
    memory_id = request.match_info["memory_id"]
    if len(memory_id) > 200 or not await service.memory.forget(memory_id):
        raise ApiError(404, "memory-not-found", f"no memory {memory_id!r}")
    return web.Response(status=204)


async def _get_config(request: web.Request) -> web.Response:
    return _json(_service(request).config_view())


async def _change_config(request: web.Request) -> web.Response:
    service = _service(request)
    change = _decode_body(await _raw_body(request), api.ConfigChange)
    if change.retry_policy is not None and change.retry_policy.max_delay < (
        change.retry_policy.base_delay
    ):
        raise _bad("retry_policy.max_delay", "must be at least base_delay")
    await service.change_config(change)
    return _json(service.config_view())


# -- the route table ------------------------------------------------------------
_TASK_ID = Param("task_id", "path", {"type": "string", "maxLength": 200}, required=True)
_MEMORY_ID = Param("memory_id", "path", {"type": "string", "maxLength": 200}, required=True)
_LIMIT = Param("limit", "query", {"type": "integer", "minimum": 1, "maximum": 1000},
               "Most items returned (default 100)")
_STATE = Param("state", "query", {"type": "string", "enum": [
    "queued", "running", "done", "failed", "dead", "expired"]},
    "Only tasks in this state (default: live tasks, then finished ones)")
_TYPE = Param("type", "query", {"type": "string", "minLength": 1, "maxLength": 200},
              "Only tasks of this message type")
_SINCE = Param("since", "query", {"type": "number", "minimum": 0, "maximum": 1e11},
               "Only tasks finished (live tasks: created) at or after this unix time")
_UNTIL = Param("until", "query", {"type": "number", "minimum": 0, "maximum": 1e11},
               "Only tasks finished (live tasks: created) before this unix time")
_CURSOR = Param("cursor", "query", {"type": "string", "maxLength": 400},
                "The 'cursor' of the previous page (keyset paging)")
_WAIT = Param("wait", "query", {"type": "number", "minimum": 0, "maximum": MAX_WAIT},
              "Seconds to wait for the task to end (default 30)")
_IDEM = Param("Idempotency-Key", "header", {"type": "string", "pattern": r"^[\x21-\x7e]{1,200}$"},
              "A repeated key with the same body returns the first task (200); with another "
              "body, 409")
_PREFER = Param("Prefer", "header", {"type": "string", "pattern": r"^wait=[0-9]{1,2}$"},
                "wait=N: answer once the task ended, or after N seconds (RFC 7240)")
_Q = Param("q", "query", {"type": "string", "minLength": 1, "maxLength": 2000}, "Query text",
           required=True)
_K = Param("k", "query", {"type": "integer", "minimum": 1, "maximum": 100},
           "Memories returned (default 10)")

ROUTES: tuple[Route, ...] = (
    Route("GET", "/healthz", "healthz", "The process lives", None,
          responses={200: api.Health}, handler=_healthz),
    Route("GET", "/readyz", "readyz", "The runtime is connected; leads or stands by", None,
          responses={200: api.Readiness, 503: api.Readiness}, handler=_readyz),
    Route("GET", "/openapi.json", "openapi", "This document", None,
          responses={200: None}, handler=_openapi_json),
    Route("GET", "/metrics", "metrics", "Prometheus metrics", "viewer",
          responses={200: None}, handler=_metrics, content_type="text/plain"),
    Route("POST", "/v1/tasks", "submitTask", "Submit a task", "operator", write=True,
          body=api.SubmitRequest, responses={200: api.Submitted, 202: api.Submitted},
          params=(_IDEM, _PREFER), handler=_submit_task),
    Route("GET", "/v1/tasks", "listTasks",
          "Tasks: live ones newest first, then the task history newest finished first",
          "viewer", responses={200: api.TaskList},
          params=(_STATE, _TYPE, _SINCE, _UNTIL, _LIMIT, _CURSOR), handler=_list_tasks),
    Route("GET", "/v1/tasks/{task_id}", "getTask", "A task's record", "viewer",
          responses={200: api.TaskView}, params=(_TASK_ID,), handler=_get_task),
    Route("GET", "/v1/tasks/{task_id}/result", "taskResult",
          "Wait (bounded) for a task to end; 202 if it has not yet", "viewer",
          responses={200: api.TaskView, 202: api.TaskView}, params=(_TASK_ID, _WAIT),
          handler=_task_result),
    Route("POST", "/v1/tasks/{task_id}/cancel", "cancelTask",
          "Cancel a task that has not started", "operator", write=True,
          responses={200: api.TaskView}, params=(_TASK_ID,), handler=_cancel_task),
    Route("GET", "/v1/roles", "listRoles", "Roles: replicas, health, queue depth", "viewer",
          responses={200: list[api.RoleView]}, handler=_list_roles),
    Route("GET", "/v1/agents", "listAgents", "Agents", "viewer",
          responses={200: list[api.ReplicaView]}, handler=_list_agents),
    Route("GET", "/v1/dead-letters", "listDeadLetters", "Dead-lettered tasks, oldest first",
          "viewer", responses={200: list[api.DeadLetterView]}, params=(_LIMIT,),
          handler=_list_dead_letters),
    Route("POST", "/v1/dead-letters/redrive", "redriveAll", "Redrive every dead letter",
          "operator", write=True, responses={200: api.RedriveResult}, handler=_redrive_all),
    Route("POST", "/v1/dead-letters/{task_id}/redrive", "redriveOne", "Redrive one dead letter",
          "operator", write=True, responses={200: api.RedriveResult}, params=(_TASK_ID,),
          handler=_redrive_one),
    Route("POST", "/v1/memory", "storeMemory", "Store a memory", "operator", write=True,
          body=api.MemoryStoreRequest, responses={201: api.MemoryStored}, handler=_store_memory),
    Route("GET", "/v1/memory", "recallMemory", "Recall memories relevant to a query", "viewer",
          responses={200: list[api.RecallHitView]}, params=(_Q, _K), handler=_recall_memory),
    Route("GET", "/v1/memory/{memory_id}", "getMemory", "A memory", "viewer",
          responses={200: api.MemoryView}, params=(_MEMORY_ID,), handler=_get_memory),
    Route("DELETE", "/v1/memory/{memory_id}", "forgetMemory", "Forget a memory", "admin",
          write=True, responses={204: None}, params=(_MEMORY_ID,), handler=_forget_memory),
    Route("GET", "/v1/config", "getConfig", "Live config in force", "viewer",
          responses={200: api.ConfigView}, handler=_get_config),
    Route("PATCH", "/v1/config", "changeConfig", "Change live config", "admin", write=True,
          body=api.ConfigChange, responses={200: api.ConfigView}, handler=_change_config),
)

#: Problems any guarded operation may answer, by status.
ERROR_STATUSES = {
    400: "Bad request (the field is named)", 401: "No or unknown token",
    403: "The token's role may not do this", 404: "Not found",
    409: "Conflict", 413: "Body over the size limit",
    429: "Over capacity (see Retry-After)", 503: "Standby, draining or a server unreachable",
}


# -- guards and error mapping ---------------------------------------------------------
def guarded(role: str | None, *, write: bool = False) -> Callable[[Handler], Handler]:
    """Wrap a handler with auth (``role`` or better) and, for ``write``, leadership checks."""

    def wrap(handler: Handler) -> Handler:
        async def guard(request: web.Request) -> web.StreamResponse:
            if role is not None:
                _authorize(request, role)
            if write:
                await _check_writable(_service(request))
            return await handler(request)

        guard.__name__ = getattr(handler, "__name__", "handler")
        return guard

    return wrap


def _authorize(request: web.Request, role: str) -> None:
    tokens = request.app[_TOKENS_KEY]
    if not tokens:
        request[_ROLE_KEY] = "open"
        return
    header = request.headers.get("Authorization", "")
    scheme, _, secret = header.partition(" ")
    if scheme.lower() != "bearer" or not secret.strip():
        raise ApiError(401, "unauthenticated", "send 'Authorization: Bearer <token>'",
                       headers={"WWW-Authenticate": 'Bearer realm="queenswarm"'})
    found = tokens.role_of(secret.strip())
    if found is None:
        raise ApiError(401, "bad-token", "the token is not known",
                       headers={"WWW-Authenticate": 'Bearer error="invalid_token"'})
    if not tokens.allows(found, role):
        raise ApiError(403, "forbidden", f"a {found} token may not do this; it needs {role}")
    request[_ROLE_KEY] = found


async def _check_writable(service: SwarmService) -> None:
    if not service.ready():
        raise ApiError(503, "draining", "this Queen is shutting down",
                       headers={"Retry-After": "5"})
    if not service.leadership.leading:
        info = await service.leadership.leader()
        leader = _leader_view(info)
        who = f"Queen {info.queen_id} leads" + (f" at {info.url}" if info.url else "") if info \
            else "no Queen leads right now"
        raise ApiError(503, "not-leader", f"this Queen stands by; {who}", leader=leader,
                       headers={"Retry-After": "2"})


_SWARM_ERRORS: tuple[tuple[type[SwarmError], int, str], ...] = (
    (MessageTooLarge, 413, "too-large"),
    (EncodeError, 400, "invalid-request"),
    (NoRouteError, 400, "no-route"),
    (RoutingError, 400, "no-route"),
    (LeadershipLost, 503, "not-leader"),
    (RuntimeClosed, 503, "draining"),
    (MemoryValidationError, 400, "invalid-request"),
    (MemoryUnavailable, 503, "unavailable"),
    (TransportError, 503, "unavailable"),
    (SwarmTimeout, 503, "timeout"),
)


@web.middleware
async def _problems(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every error leaves as a problem document; nothing leaves as a bare 500."""
    try:
        return await handler(request)
    except ApiError as exc:
        return problem_response(exc, instance=request.path)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        code = {404: "not-found", 405: "method-not-allowed", 413: "too-large"}.get(
            exc.status, f"http-{exc.status}")
        headers = {k: v for k, v in exc.headers.items() if k in ("Allow",)}
        return problem_response(
            ApiError(exc.status, code, exc.reason, headers=headers), instance=request.path)
    except SwarmError as exc:
        for cls, status, code in _SWARM_ERRORS:
            if isinstance(exc, cls):
                retry = {"Retry-After": "2"} if status == 503 else {}
                field_name = "to" if code == "no-route" else "body"
                errors = [api.FieldError(field=field_name, message=str(exc))] if status == 400 \
                    else []
                return problem_response(
                    ApiError(status, code, str(exc), headers=retry, errors=errors),
                    instance=request.path)
        _log.error("unmapped swarm error", path=request.path, error=repr(exc))
        return problem_response(ApiError(500, "internal", "internal error"),
                                instance=request.path)
    except (asyncio.CancelledError, KeyboardInterrupt):
        raise
    except Exception as exc:
        _log.exception("internal error", path=request.path, error=repr(exc))
        return problem_response(ApiError(500, "internal", "internal error"),
                                instance=request.path)


def build_app(
    service: SwarmService, *, tokens: TokenStore | None = None,
    routes: Sequence[RouteInstaller] = (),
) -> web.Application:
    """The aiohttp application of ``service``: the API routes, then each installer's."""
    app = web.Application(
        middlewares=[_problems], client_max_size=DEFAULT_MAX_MESSAGE_BYTES,
        handler_args={"access_log": None},
    )
    app[SERVICE_KEY] = service
    app[_TOKENS_KEY] = tokens or TokenStore()
    app[_METRICS_KEY] = []
    for route in ROUTES:
        assert route.handler is not None
        app.router.add_route(
            route.method, route.path, guarded(route.role, write=route.write)(route.handler),
            name=route.name,
        )
    for install in routes:
        install(app, service)
    return app


class HttpServer:
    """Serves :func:`build_app` on the settings' ``HOST:PORT``."""

    def __init__(
        self, service: SwarmService, *, tokens: TokenStore | None,
        routes: Sequence[RouteInstaller] = (),
    ) -> None:
        self.service = service
        self.tokens = tokens or TokenStore()
        self.app = build_app(service, tokens=self.tokens, routes=routes)
        self._runner: web.AppRunner | None = None

    @property
    def auth_summary(self) -> str:
        if self.tokens:
            return f"{len(self.tokens)} tokens"
        return "OPEN: no tokens, loopback only"

    async def start(self) -> str:
        """Listen; returns the base URL (with the real port when 0 was asked)."""
        address = self.service.settings.http_address
        assert address is not None
        host, port = address
        if not self.tokens:
            _log.warning(
                "HTTP API open to anyone on this host: no tokens configured", host=host, port=port
            )
        self._runner = web.AppRunner(self.app, access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port, backlog=1024)
        try:
            await site.start()
        except OSError as exc:
            from swarm.errors import ConfigError

            raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
        for bound in self._runner.addresses:  # the real port when 0 was asked
            if isinstance(bound, tuple) and len(bound) >= 2:
                port = int(bound[1])
                break
        shown = f"[{host}]" if ":" in host else host
        return f"http://{shown}:{port}"

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

