"""A Consul HTTP API server for tests, faithful to the subset queenswarm uses.

No Consul binary can be installed here, so this aiohttp app implements the
endpoints :class:`discovery.consul.ConsulRegistry` calls, with the behaviour
the Consul API documentation specifies (each handler cites its page). One
Raft-like index counts every write; blocking reads wait on it.

Knobs a real cluster configures elsewhere: ``session_ttl_min`` (the server's
``session_ttl_min``, 10 s by default in Consul) and ``reap_interval`` (how often
critical services are reaped for ``DeregisterCriticalServiceAfter``).

Example:
    >>> import asyncio
    >>> from tests.consul_server import FakeConsul
    >>> async def demo():
    ...     async with FakeConsul() as consul:
    ...         return consul.address.startswith("127.0.0.1:")
    >>> asyncio.run(demo())
    True
"""

from __future__ import annotations

import asyncio
import base64
import json
import random
import re
import ssl
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

from aiohttp import web

__all__ = ["FakeConsul", "parse_duration"]

_NODE = "fake-node"
_DUR = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)")
_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def parse_duration(text: str | int | float) -> float:
    """Parse a Go duration ("10s", "1m30s", "500ms"); bare numbers are nanoseconds as in Go JSON."""
    if isinstance(text, int | float):
        return float(text) / 1e9
    parts = _DUR.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise ValueError(f"invalid duration {text!r}")
    return sum(float(n) * _UNITS[u] for n, u in parts)


def _ci(d: dict[str, Any], name: str, default: Any = None) -> Any:
    """Case-insensitive field lookup: Consul decodes JSON keys case-insensitively.

    py-consul sends lowercase keys (``name``, ``id``, ``checks``), Consul's own
    clients send CamelCase; both must work.
    """
    low = name.lower()
    for k, v in d.items():
        if k.lower() == low:
            return v
    return default


@dataclass(slots=True)
class _Check:
    check_id: str
    name: str
    service_id: str
    service_name: str
    ttl: float | None
    deregister_after: float | None
    status: str = "critical"
    output: str = ""
    expires: float = 0.0
    critical_since: float | None = None
    modify_index: int = 0


@dataclass(slots=True)
class _Service:
    id: str
    name: str
    address: str
    port: int
    tags: list[str]
    meta: dict[str, str]
    modify_index: int = 0


@dataclass(slots=True)
class _KV:
    key: str
    value: bytes | None
    flags: int
    create_index: int
    modify_index: int
    lock_index: int = 0
    session: str | None = None


@dataclass(slots=True)
class _Session:
    id: str
    name: str
    ttl: float | None
    lock_delay: float
    behavior: str
    checks: list[str]
    create_index: int
    expires: float | None = None
    keys: set[str] = field(default_factory=set)


class FakeConsul:
    """The test server. Use as ``async with FakeConsul() as consul`` or start()/stop().

    Args:
        acl_tokens: When given, ACLs are on (default policy deny): only these
            tokens are accepted; anything else gets 403 "Permission denied".
        session_ttl_min: Smallest session TTL accepted (Consul's ``session_ttl_min``).
        reap_interval: Seconds between TTL expiry / reaping passes.
        ssl_context: Serve HTTPS (Consul's ``ports.https``) with this context.
    """

    def __init__(
        self,
        *,
        acl_tokens: set[str] | None = None,
        session_ttl_min: float = 10.0,
        reap_interval: float = 0.05,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.ssl_context = ssl_context
        self.acl_tokens = acl_tokens
        self.session_ttl_min = session_ttl_min
        self.reap_interval = reap_interval
        self.index = 1
        self.services: dict[str, _Service] = {}
        self.service_index: dict[str, int] = {}
        self.leader: str | None = None
        self.checks: dict[str, _Check] = {}
        self.kv: dict[str, _KV] = {}
        self.kv_index = 1
        self.sessions: dict[str, _Session] = {}
        self.lock_delays: dict[str, float] = {}
        self.requests: list[tuple[str, str]] = []
        self._changed = asyncio.Condition()
        self._runner: web.AppRunner | None = None
        self._reaper: asyncio.Task[None] | None = None
        self.port = 0

    # -- lifecycle ------------------------------------------------------------
    @property
    def address(self) -> str:
        """``host:port`` the server listens on."""
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        """``http(s)://host:port``."""
        return f"{'https' if self.ssl_context else 'http'}://{self.address}"

    async def start(self) -> None:
        """Listen on a free port of 127.0.0.1."""
        app = web.Application(middlewares=[self._acl_middleware])
        r = app.router
        r.add_put("/v1/agent/service/register", self.service_register)
        r.add_put("/v1/agent/service/deregister/{id}", self.service_deregister)
        r.add_put("/v1/agent/check/{status:pass|warn|fail}/{id}", self.check_update)
        r.add_get("/v1/agent/checks", self.agent_checks)
        r.add_get("/v1/health/service/{name}", self.health_service)
        r.add_get("/v1/kv/{key:.*}", self.kv_get)
        r.add_put("/v1/kv/{key:.*}", self.kv_put)
        r.add_delete("/v1/kv/{key:.*}", self.kv_delete)
        r.add_put("/v1/session/create", self.session_create)
        r.add_put("/v1/session/renew/{id}", self.session_renew)
        r.add_put("/v1/session/destroy/{id}", self.session_destroy)
        r.add_get("/v1/session/info/{id}", self.session_info)
        r.add_get("/v1/status/leader", self.status_leader)
        # Like Consul, stop a blocking query when its client goes away.
        self._runner = web.AppRunner(app, handle_signals=False, handler_cancellation=True,
                                     access_log=None, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", self.port, ssl_context=self.ssl_context)
        await site.start()
        self.port = int(self._runner.addresses[0][1])
        self._reaper = asyncio.get_running_loop().create_task(self._reap_loop())

    async def stop(self) -> None:
        """Stop listening (blocked queries are cut)."""
        if self._reaper is not None:
            self._reaper.cancel()
            await asyncio.gather(self._reaper, return_exceptions=True)
            self._reaper = None
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> FakeConsul:
        await self.start()
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    # -- state helpers ----------------------------------------------------------
    def _bump(self) -> int:
        self.index += 1
        return self.index

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    async def _block(self, request: web.Request, current: Callable[[], int]) -> None:
        """Blocking query: wait while the resource's index is <= ``index``.

        https://developer.hashicorp.com/consul/api-docs/features/blocking — "the
        HTTP request will hang until a change in the system occurs, or the
        maximum timeout is reached"; ``wait`` defaults to 5 minutes, is limited to
        10 minutes, and a random jitter of up to wait/16 is added.
        """
        raw = request.query.get("index")
        if raw is None:
            return
        want = int(raw)
        wait = min(parse_duration(request.query.get("wait", "5m")), 600.0)
        deadline = time.monotonic() + wait + random.uniform(0, wait / 16)
        async with self._changed:
            while current() <= want:
                left = deadline - time.monotonic()
                if left <= 0:
                    return
                try:
                    await asyncio.wait_for(self._changed.wait(), left)
                except TimeoutError:
                    return

    @staticmethod
    def _json(data: Any, index: int | None = None, status: int = 200) -> web.Response:
        headers = {} if index is None else {"X-Consul-Index": str(max(1, index))}
        return web.json_response(data, status=status, headers=headers)

    @staticmethod
    async def _body(request: web.Request) -> dict[str, Any]:
        text = await request.text()
        if not text:
            return {}
        data = json.loads(text)
        if not isinstance(data, dict):
            raise web.HTTPBadRequest(text="Request decode failed: expected an object")
        return data

    # -- ACL ---------------------------------------------------------------------
    @web.middleware
    async def _acl_middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """ACL enforcement with default policy deny.

        https://developer.hashicorp.com/consul/api-docs/api-structure#authentication —
        the token travels in ``X-Consul-Token`` (or ``?token=``); a request
        whose token lacks the needed privilege gets "403 Permission denied".
        ``/v1/status/leader`` needs no ACL.
        """
        self.requests.append((request.method, request.path))
        if self.acl_tokens is not None and not request.path.startswith("/v1/status/"):
            token = request.headers.get("X-Consul-Token") or request.query.get("token")
            if token not in self.acl_tokens:
                return web.Response(status=403, text="Permission denied")
        return await handler(request)

    # -- agent services and checks ---------------------------------------------------
    async def service_register(self, request: web.Request) -> web.Response:
        """``PUT /v1/agent/service/register``.

        https://developer.hashicorp.com/consul/api-docs/agent/service#register-service —
        ``ID`` defaults to ``Name``; registering an existing ID replaces it.
        ``Check``/``Checks`` define health checks; a TTL check's ID defaults to
        ``service:<id>`` (``service:<id>:<n>`` when there are several), its
        initial ``Status`` is critical unless given, and
        ``DeregisterCriticalServiceAfter`` removes the service once the check
        has been critical that long.
        """
        body = await self._body(request)
        name = _ci(body, "Name")
        if not name:
            return web.Response(status=400, text="Missing service name")
        sid = _ci(body, "ID") or name
        idx = self._bump()
        old = self.services.get(sid)
        if old is not None:
            self.service_index[old.name] = idx
        self.service_index[name] = idx
        self.services[sid] = _Service(
            id=sid, name=name, address=_ci(body, "Address", "") or "",
            port=int(_ci(body, "Port", 0) or 0), tags=list(_ci(body, "Tags", []) or []),
            meta=dict(_ci(body, "Meta", {}) or {}), modify_index=idx,
        )
        defs = list(_ci(body, "Checks", []) or [])
        one = _ci(body, "Check")
        if one:
            defs.insert(0, one)
        for cid in [c for c, chk in self.checks.items() if chk.service_id == sid]:
            del self.checks[cid]
        now = time.monotonic()
        for n, d in enumerate(defs, 1):
            cid = _ci(d, "CheckID") or _ci(d, "ID") or (
                f"service:{sid}" if len(defs) == 1 else f"service:{sid}:{n}"
            )
            ttl_raw = _ci(d, "TTL")
            dereg = _ci(d, "DeregisterCriticalServiceAfter")
            status = _ci(d, "Status") or "critical"
            ttl = parse_duration(ttl_raw) if ttl_raw else None
            self.checks[cid] = _Check(
                check_id=cid, name=_ci(d, "Name") or f"Service '{name}' check",
                service_id=sid, service_name=name, ttl=ttl,
                deregister_after=parse_duration(dereg) if dereg else None, status=status,
                expires=now + ttl if ttl else 0.0,
                critical_since=now if status == "critical" else None, modify_index=idx,
            )
        await self._notify()
        return web.Response(status=200)

    async def service_deregister(self, request: web.Request) -> web.Response:
        """``PUT /v1/agent/service/deregister/:service_id``.

        https://developer.hashicorp.com/consul/api-docs/agent/service#deregister-service —
        removes the service and its checks; an unknown ID is a 404
        "Unknown service ID". Sessions tied to its checks are invalidated
        (https://developer.hashicorp.com/consul/docs/automate/session: "any of
        the health checks are deregistered").
        """
        sid = request.match_info["id"]
        if sid not in self.services:
            return web.Response(status=404, text=f'Unknown service ID "{sid}"')
        await self._deregister(sid)
        return web.Response(status=200)

    async def _deregister(self, sid: str) -> None:
        svc = self.services.pop(sid, None)
        gone = [c for c, chk in self.checks.items() if chk.service_id == sid]
        for cid in gone:
            del self.checks[cid]
        idx = self._bump()
        if svc is not None:
            self.service_index[svc.name] = idx
        for s in list(self.sessions.values()):
            if any(c in gone for c in s.checks):
                self._invalidate(s)
        await self._notify()

    async def check_update(self, request: web.Request) -> web.Response:
        """``PUT /v1/agent/check/pass|warn|fail/:check_id`` (``?note=``).

        https://developer.hashicorp.com/consul/api-docs/agent/check#ttl-check-pass —
        sets a TTL check to passing / warning / critical and resets its TTL
        clock; an unknown check ID is a 404. A check going critical
        invalidates sessions bound to it.
        """
        cid = request.match_info["id"]
        chk = self.checks.get(cid)
        if chk is None:
            return web.Response(status=404, text=f'Unknown check ID "{cid}"')
        status = {"pass": "passing", "warn": "warning", "fail": "critical"}[
            request.match_info["status"]
        ]
        now = time.monotonic()
        if chk.ttl is not None:
            chk.expires = now + chk.ttl
        chk.output = request.query.get("note", "")
        if status != chk.status:
            self._set_status(chk, status, now)
            await self._notify()
        return web.Response(status=200)

    def _set_status(self, chk: _Check, status: str, now: float) -> None:
        chk.status = status
        chk.critical_since = now if status == "critical" else None
        chk.modify_index = self._bump()
        self.service_index[chk.service_name] = chk.modify_index
        if status == "critical":
            for s in list(self.sessions.values()):
                if chk.check_id in s.checks:
                    self._invalidate(s)

    async def agent_checks(self, request: web.Request) -> web.Response:
        """``GET /v1/agent/checks``.

        https://developer.hashicorp.com/consul/api-docs/agent/check#list-checks —
        a map of check ID to check.
        """
        return self._json({c.check_id: self._check_json(c) for c in self.checks.values()})

    @staticmethod
    def _check_json(c: _Check) -> dict[str, Any]:
        return {
            "Node": _NODE, "CheckID": c.check_id, "Name": c.name, "Status": c.status,
            "Output": c.output, "ServiceID": c.service_id, "ServiceName": c.service_name,
            "Type": "ttl" if c.ttl is not None else "", "ModifyIndex": c.modify_index,
        }

    async def _reap_loop(self) -> None:
        """TTL expiry and critical-service reaping.

        https://developer.hashicorp.com/consul/api-docs/agent/check#ttl — a TTL
        check not updated within its TTL goes critical ("TTL expired");
        ``DeregisterCriticalServiceAfter``: "the service will be deregistered
        ... if the check is in the critical state for more than this
        configured value". Sessions: TTL invalidation (Consul waits up to 2x
        the TTL: https://developer.hashicorp.com/consul/api-docs/session#ttl).
        """
        while True:
            await asyncio.sleep(self.reap_interval)
            now = time.monotonic()
            changed = False
            for chk in list(self.checks.values()):
                if chk.ttl is not None and chk.status != "critical" and chk.expires <= now:
                    chk.output = "TTL expired"
                    self._set_status(chk, "critical", now)
                    changed = True
            for chk in list(self.checks.values()):
                if (
                    chk.status == "critical" and chk.deregister_after is not None
                    and chk.critical_since is not None
                    and now - chk.critical_since >= chk.deregister_after
                    and chk.service_id in self.services
                ):
                    await self._deregister(chk.service_id)
            for s in list(self.sessions.values()):
                if s.expires is not None and s.expires <= now:
                    self._invalidate(s)
                    changed = True
            if changed:
                await self._notify()

    # -- health -----------------------------------------------------------------
    async def health_service(self, request: web.Request) -> web.Response:
        """``GET /v1/health/service/:service`` (``?passing``, ``?tag``, blocking).

        https://developer.hashicorp.com/consul/api-docs/health#list-service-instances-for-service —
        returns ``[{Node, Service, Checks}]``; ``passing`` "specifies that the
        server should return only nodes with all checks in the passing state"
        (warning is excluded). Supports blocking queries; the index is that
        of the newest change to the service's registrations or checks.
        """
        name = request.match_info["name"]

        def current() -> int:
            # Like Consul's per-table index: it moves on registration, check
            # change and deregistration (a deletion must not move it backwards).
            return self.service_index.get(name, self.index)

        await self._block(request, current)
        passing = "passing" in request.query and request.query["passing"] not in ("0", "false")
        tags = request.query.getall("tag", [])
        out = []
        for s in sorted(self.services.values(), key=lambda s: s.id):
            if s.name != name or any(t not in s.tags for t in tags):
                continue
            checks = [c for c in self.checks.values() if c.service_id == s.id]
            if passing and any(c.status != "passing" for c in checks):
                continue
            node_check = {
                "Node": _NODE, "CheckID": "serfHealth", "Name": "Serf Health Status",
                "Status": "passing", "Output": "", "ServiceID": "", "ServiceName": "",
            }
            out.append({
                "Node": {"Node": _NODE, "Address": "127.0.0.1", "Datacenter": "dc1"},
                "Service": {
                    "ID": s.id, "Service": s.name, "Tags": s.tags, "Address": s.address,
                    "Port": s.port, "Meta": s.meta, "ModifyIndex": s.modify_index,
                },
                "Checks": [node_check] + [self._check_json(c) for c in checks],
            })
        return self._json(out, current())

    # -- KV -------------------------------------------------------------------------
    def _kv_json(self, e: _KV) -> dict[str, Any]:
        out: dict[str, Any] = {
            "LockIndex": e.lock_index, "Key": e.key, "Flags": e.flags,
            "Value": None if e.value is None else base64.b64encode(e.value).decode(),
            "CreateIndex": e.create_index, "ModifyIndex": e.modify_index,
        }
        if e.session:
            out["Session"] = e.session
        return out

    async def kv_get(self, request: web.Request) -> web.Response:
        """``GET /v1/kv/:key`` (``recurse``, ``keys``, ``separator``, blocking).

        https://developer.hashicorp.com/consul/api-docs/kv#read-key — returns a
        list of ``{LockIndex, Key, Flags, Value (base64), Session, CreateIndex,
        ModifyIndex}``; ``recurse`` returns every key with the prefix; ``keys``
        returns only key names (up to ``separator``); 404 when nothing matches,
        with ``X-Consul-Index`` still set so a client can block for creation.
        """
        key = request.match_info["key"]
        prefix = "recurse" in request.query or "keys" in request.query

        def matching() -> list[_KV]:
            if prefix:
                return [e for k, e in sorted(self.kv.items()) if k.startswith(key)]
            e = self.kv.get(key)
            return [] if e is None else [e]

        def current() -> int:
            return max([e.modify_index for e in matching()] + [self.kv_index if prefix or
                       key not in self.kv else 0])

        await self._block(request, current)
        found = matching()
        if not found:
            return web.Response(status=404, headers={"X-Consul-Index": str(current())})
        if "keys" in request.query:
            sep = request.query.get("separator", "")
            names: list[str] = []
            for e in found:
                rest = e.key[len(key):]
                name = key + rest[: rest.index(sep) + len(sep)] if sep and sep in rest else e.key
                if name not in names:
                    names.append(name)
            return self._json(names, current())
        return self._json([self._kv_json(e) for e in found], current())

    async def kv_put(self, request: web.Request) -> web.Response:
        """``PUT /v1/kv/:key`` (``cas``, ``acquire``, ``release``, ``flags``).

        https://developer.hashicorp.com/consul/api-docs/kv#create-update-key —
        returns ``true``/``false``. ``cas=0`` writes only if the key is absent,
        ``cas=N`` only if its ModifyIndex is N. ``acquire=<session>`` takes the
        lock if unheld (LockIndex+1; re-acquire by the holder just updates), and
        fails during a lock-delay after an invalidated holder
        (https://developer.hashicorp.com/consul/docs/automate/session).
        ``release=<session>`` clears the holder if it matches. An unknown
        session is an error (500 "invalid session").
        """
        key = request.match_info["key"]
        value = await request.read()
        q = request.query
        e = self.kv.get(key)
        if "cas" in q:
            cas = int(q["cas"])
            if (cas == 0 and e is not None) or (cas != 0 and (e is None or e.modify_index != cas)):
                return self._json(False)
        if "acquire" in q or "release" in q:
            sid = q.get("acquire") or q.get("release") or ""
            if sid not in self.sessions:
                return web.Response(status=500, text=f'invalid session "{sid}"')
        if "acquire" in q:
            sid = q["acquire"]
            if e is not None and e.session and e.session != sid:
                return self._json(False)
            if self.lock_delays.get(key, 0.0) > time.monotonic():
                return self._json(False)
        if "release" in q and (e is None or e.session != q["release"]):
            return self._json(False)
        idx = self._bump()
        self.kv_index = idx
        if e is None:
            e = self.kv[key] = _KV(key, None, 0, idx, idx)
        e.value = value
        e.modify_index = idx
        if "flags" in q:
            e.flags = int(q["flags"])
        if "acquire" in q:
            if e.session != q["acquire"]:
                e.lock_index += 1
                e.session = q["acquire"]
                self.sessions[e.session].keys.add(key)
        elif "release" in q:
            self.sessions[q["release"]].keys.discard(key)
            e.session = None
        await self._notify()
        return self._json(True)

    async def kv_delete(self, request: web.Request) -> web.Response:
        """``DELETE /v1/kv/:key`` (``recurse``, ``cas``).

        https://developer.hashicorp.com/consul/api-docs/kv#delete-key — returns
        ``true``; with ``cas`` only deletes when ModifyIndex matches (else ``false``).
        """
        key = request.match_info["key"]
        q = request.query
        if "cas" in q:
            e = self.kv.get(key)
            if e is None or e.modify_index != int(q["cas"]):
                return self._json(False)
        keys = [k for k in self.kv if k.startswith(key)] if "recurse" in q else [key]
        removed = False
        for k in keys:
            e = self.kv.pop(k, None)
            if e is not None:
                removed = True
                if e.session and e.session in self.sessions:
                    self.sessions[e.session].keys.discard(k)
        if removed:
            self.kv_index = self._bump()
            await self._notify()
        return self._json(True)

    # -- sessions ----------------------------------------------------------------------
    async def session_create(self, request: web.Request) -> web.Response:
        """``PUT /v1/session/create``.

        https://developer.hashicorp.com/consul/api-docs/session#create-session —
        body ``{Name, LockDelay (default 15s), Behavior (release|delete), TTL,
        Checks / NodeChecks / ServiceChecks}``; returns ``{"ID": ...}``. TTL must
        lie within [session_ttl_min, 24h]; a session cannot be created while
        one of its checks is critical. Without explicit checks it is bound to
        the node's ``serfHealth``.
        """
        body = await self._body(request)
        ttl_raw = _ci(body, "TTL")
        ttl = parse_duration(ttl_raw) if ttl_raw else None
        if ttl is not None and ttl != 0 and not self.session_ttl_min <= ttl <= 86400:
            return web.Response(
                status=500,
                text=f"Invalid Session TTL '{ttl_raw}', must be between "
                     f"[{self.session_ttl_min}s=24h0m0s]",
            )
        checks = list(_ci(body, "Checks", None) or [])
        checks += [c.get("ID", "") if isinstance(c, dict) else c
                   for c in _ci(body, "ServiceChecks", None) or []]
        for cid in checks:
            if cid == "serfHealth":
                continue
            chk = self.checks.get(cid)
            if chk is None:
                return web.Response(status=500, text=f"Missing check '{cid}' registration")
            if chk.status == "critical":
                return web.Response(status=500, text=f"Check '{cid}' is in critical state")
        lock_delay = _ci(body, "LockDelay", "15s")
        behavior = _ci(body, "Behavior", "release") or "release"
        sid = str(uuid.uuid4())
        self.sessions[sid] = _Session(
            id=sid, name=_ci(body, "Name", "") or "", ttl=ttl or None,
            lock_delay=parse_duration(lock_delay), behavior=behavior,
            checks=checks or ["serfHealth"], create_index=self._bump(),
            expires=time.monotonic() + 2 * ttl if ttl else None,
        )
        return self._json({"ID": sid})

    async def session_renew(self, request: web.Request) -> web.Response:
        """``PUT /v1/session/renew/:uuid``.

        https://developer.hashicorp.com/consul/api-docs/session#renew-session —
        resets the TTL clock and returns the session in a list; 404 for an
        unknown (e.g. already invalidated) session. Consul invalidates only
        after 2x the TTL (https://developer.hashicorp.com/consul/docs/automate/session:
        the TTL "represents a lower bound for invalidation").
        """
        s = self.sessions.get(request.match_info["id"])
        if s is None:
            sid = request.match_info["id"]
            return web.Response(status=404, text=f"Session id '{sid}' not found")
        if s.ttl:
            s.expires = time.monotonic() + 2 * s.ttl
        return self._json([self._session_json(s)])

    async def session_destroy(self, request: web.Request) -> web.Response:
        """``PUT /v1/session/destroy/:uuid``.

        https://developer.hashicorp.com/consul/api-docs/session#delete-session —
        returns ``true``; held locks are released per the session's behavior.
        Explicit destruction also starts the lock-delay in Consul's state store.
        """
        s = self.sessions.get(request.match_info["id"])
        if s is not None:
            self._invalidate(s)
            await self._notify()
        return self._json(True)

    async def session_info(self, request: web.Request) -> web.Response:
        """``GET /v1/session/info/:uuid``.

        https://developer.hashicorp.com/consul/api-docs/session#read-session —
        a list with the session, or an empty list when unknown.
        """
        s = self.sessions.get(request.match_info["id"])
        return self._json([] if s is None else [self._session_json(s)], self.index)

    @staticmethod
    def _session_json(s: _Session) -> dict[str, Any]:
        return {
            "ID": s.id, "Name": s.name, "Node": _NODE, "LockDelay": int(s.lock_delay * 1e9),
            "Behavior": s.behavior, "TTL": f"{s.ttl:g}s" if s.ttl else "",
            "NodeChecks": [c for c in s.checks if c == "serfHealth"],
            "ServiceChecks": [{"ID": c} for c in s.checks if c != "serfHealth"],
            "CreateIndex": s.create_index,
        }

    def _invalidate(self, s: _Session) -> None:
        """Invalidate a session: release (or delete) its locks and start lock-delay.

        https://developer.hashicorp.com/consul/docs/automate/session — "If the
        release behavior is being used, any of the locks held in association
        with the session are released, and the ModifyIndex of the key is
        incremented"; with ``delete`` the keys are deleted; lock-delay blocks
        acquisition of the released keys for that duration.
        """
        self.sessions.pop(s.id, None)
        for key in s.keys:
            e = self.kv.get(key)
            if e is None or e.session != s.id:
                continue
            if s.lock_delay > 0:
                self.lock_delays[key] = time.monotonic() + s.lock_delay
            if s.behavior == "delete":
                del self.kv[key]
            else:
                e.session = None
                e.modify_index = self._bump()
            self.kv_index = self._bump()
        s.keys.clear()

    async def status_leader(self, request: web.Request) -> web.Response:
        """``GET /v1/status/leader``.

        https://developer.hashicorp.com/consul/api-docs/status#get-raft-leader —
        the Raft leader's address as a JSON string ("" while there is no leader;
        set :attr:`leader` to simulate that).
        """
        return self._json(f"127.0.0.1:{self.port + 1}" if self.leader is None else self.leader)

    # -- test controls ------------------------------------------------------------------
    async def set_check(self, check_id: str, status: str) -> None:
        """Force a check's status (as an operator or a failing probe would)."""
        self._set_status(self.checks[check_id], status, time.monotonic())
        await self._notify()
