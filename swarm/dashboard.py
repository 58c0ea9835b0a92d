"""The live dashboard at ``/`` of the HTTP API: server-rendered HTML, a little JS, SSE.

A sampler reads the swarm every couple of seconds (agents and their health,
roles with replicas and queue depth, the whole swarm's throughput from Redis,
latency of recent tasks, recent failures and dead letters, memory tier
sizes, the leader) and pushes each snapshot to the open pages as a
Server-Sent Event (``GET /dashboard/events``, through aiohttp-sse). The page
itself holds no data when the API needs a token: it asks for one and sends it
as ``Authorization: Bearer`` with every request (the event stream is read
with ``fetch``, which can send headers, unlike ``EventSource``); a dead
letter is redriven through the API's own route, with an operator token.

:func:`install` is a route installer of the HTTP API (``queenswarm.routes``
entry point); :func:`install_dashboard` mounts the same routes for any
:class:`DashboardSource`.

Example:
    >>> from swarm.dashboard import percentile
    >>> percentile([0.1, 0.2, 0.3, 0.4], 0.5)
    0.25
"""

from __future__ import annotations

import asyncio
import html
import json
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol

import structlog
from aiohttp import web
from aiohttp_sse import sse_response

from swarm.errors import SwarmError
from swarm.metrics import BACKGROUND_RESTARTS

__all__ = [
    "DashboardSource",
    "ServiceSource",
    "install",
    "install_dashboard",
    "percentile",
    "render_page",
]

_log = structlog.get_logger("swarm.dashboard")

#: Seconds between snapshots.
INTERVAL = 2.0
#: Seconds of throughput history kept (and drawn).
WINDOW = 300.0

_FINAL_FAILED = {"failed", "dead", "expired", "cancelled"}


class DashboardSource(Protocol):
    """What the dashboard reads; one call per snapshot."""

    async def snapshot(self) -> dict[str, Any]:
        """The swarm now (see :class:`ServiceSource` for the keys)."""
        ...


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q`` quantile of ``values`` (linear interpolation); 0 for none."""
    if not values:
        return 0.0
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q
    lo = int(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


class ServiceSource:
    """Snapshots of a :class:`~swarm.service.assembly.SwarmService`.

    Keys: ``at``, ``leader``, ``leading``, ``agents``, ``roles``,
    ``delivered`` (tasks ever handed to agents, swarm-wide), ``latency``
    (p50/p95 of recent tasks), ``failures``, ``dead_letters``, ``memory``.
    """

    def __init__(self, service: Any) -> None:
        self.service = service

    async def snapshot(self) -> dict[str, Any]:
        service = self.service
        runtime = service.runtime
        directory = await runtime.directory()
        queues_of = getattr(runtime, "queues", None)
        queues = {q.role: q for q in await queues_of(directory.keys())} if queues_of else {}
        try:
            health = await service.health()
        except SwarmError:
            health = {}
        agents = []
        roles = []
        for name, info in sorted(directory.items()):
            q = queues.get(name)
            healthy = 0
            for r in info.replicas:
                ok = health.get(r.agent_id, r.state in ("ready", "busy"))
                healthy += bool(ok) and r.state in ("ready", "busy")
                agents.append(
                    {"agent_id": r.agent_id, "role": name, "state": r.state,
                     "inflight": r.inflight, "capacity": r.capacity, "healthy": bool(ok)}
                )
            roles.append(
                {"role": name, "replicas": len(info.replicas), "healthy": healthy,
                 "waiting": q.total if q else 0,
                 "oldest_age": max(q.oldest_age.values(), default=0.0) if q else 0.0,
                 "delayed": q.delayed if q else 0, "dead": q.dead if q else 0,
                 "delivered": q.delivered if q else 0}
            )
        records = await service.recent_records()
        now = time.time()
        latencies = [
            r.finished_at - r.created_at
            for r in records
            if r.finished_at is not None and now - r.finished_at <= WINDOW
        ]
        failures = [
            {"task_id": r.task_id, "type": r.type, "state": r.state.value,
             "error": (r.error or "")[:300], "finished_at": r.finished_at}
            for r in records
            if r.state.value in _FINAL_FAILED
        ][:10]
        dead = [
            {"task_id": d.envelope.id, "type": d.envelope.type, "error": d.error[:300],
             "failed_at": d.failed_at}
            for d in await service.queen.dead_letters(limit=20)
        ]
        leader = await service.leadership.leader()
        leader_id = leader.queen_id if leader is not None else None
        if leader_id in (None, "-") and service.leadership.leading:
            leader_id = getattr(service.queen, "queen_id", None)
        delivered = sum(r["delivered"] for r in roles)
        if queues_of is None:
            # A runtime without queues in Redis runs every agent here: count theirs.
            delivered = sum(a.processed + a.failed for a in runtime.agents())
        return {
            "at": now,
            "leader": leader_id,
            "leading": bool(service.leadership.leading),
            "agents": agents,
            "roles": roles,
            "delivered": delivered,
            "latency": {
                "p50": percentile(latencies, 0.5),
                "p95": percentile(latencies, 0.95),
                "n": len(latencies),
            },
            "failures": failures,
            "dead_letters": dead,
            "memory": _memory_sizes(service.memory),
        }


def _memory_sizes(memory: Any) -> dict[str, int]:
    if memory is None:
        return {}
    out = {}
    for tier, obj in (("index", getattr(memory, "index", None)),
                      ("hot", getattr(memory, "hot", None)),
                      ("archive", getattr(memory, "archive", None))):
        if obj is not None and hasattr(obj, "__len__"):
            out[tier] = len(obj)
    return out


class _Sampler:
    """Takes a snapshot every ``interval`` seconds and hands it to every open page."""

    def __init__(self, source: DashboardSource, interval: float) -> None:
        self.source = source
        self.interval = interval
        self.latest: dict[str, Any] | None = None
        self.history: deque[tuple[float, float]] = deque()
        self._previous: tuple[float, int] | None = None
        self._changed = asyncio.Condition()
        self._task: asyncio.Task[None] | None = None
        self.failures = 0

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="dashboard-sampler")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    async def _run(self) -> None:
        while True:
            try:
                await self.sample()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the loop outlives a failed read: logged, counted
                self.failures += 1
                BACKGROUND_RESTARTS.labels(task="dashboard_sampler").inc()
                _log.warning("dashboard snapshot failed", error=repr(exc))
            await asyncio.sleep(self.interval)

    async def sample(self) -> dict[str, Any]:
        snap = await self.source.snapshot()
        now, delivered = float(snap["at"]), int(snap.get("delivered", 0))
        if self._previous is not None and now > self._previous[0]:
            rate = max(0, delivered - self._previous[1]) / (now - self._previous[0])
            self.history.append((now, rate))
        self._previous = (now, delivered)
        while self.history and now - self.history[0][0] > WINDOW:
            self.history.popleft()
        snap["throughput"] = [[round(t, 3), round(r, 3)] for t, r in self.history]
        self.latest = snap
        async with self._changed:
            self._changed.notify_all()
        return snap

    async def next(self) -> dict[str, Any]:
        async with self._changed:
            await self._changed.wait()
        assert self.latest is not None
        return self.latest


_SAMPLER: web.AppKey[_Sampler] = web.AppKey("dashboard_sampler", _Sampler)

Guard = Callable[[Callable[[web.Request], Awaitable[web.StreamResponse]]],
                 Callable[[web.Request], Awaitable[web.StreamResponse]]]


def install_dashboard(
    app: web.Application,
    source: DashboardSource,
    *,
    guard: Guard | None = None,
    needs_token: Callable[[web.Request], bool] = lambda request: False,
    interval: float = INTERVAL,
) -> None:
    """Mount ``/`` (the page), ``/dashboard/state`` and ``/dashboard/events`` on ``app``.

    Args:
        guard: Wraps the data routes (e.g. the API's viewer-token check).
        needs_token: Whether a request's page must hold no data and ask for a token.
        interval: Seconds between snapshots.
    """
    sampler = _Sampler(source, interval)
    app[_SAMPLER] = sampler

    async def on_startup(_: web.Application) -> None:
        sampler.start()

    async def on_cleanup(_: web.Application) -> None:
        await sampler.stop()

    app.on_startup.append(on_startup)
    app.on_cleanup.append(on_cleanup)
    wrap = guard or (lambda handler: handler)

    async def page(request: web.Request) -> web.Response:
        locked = needs_token(request)
        snap = None if locked else await sampler.sample()
        return web.Response(text=render_page(snap, needs_token=locked), content_type="text/html")

    async def state(request: web.Request) -> web.Response:
        snap = await sampler.sample()
        return web.json_response(snap)

    async def events(request: web.Request) -> web.StreamResponse:
        async with sse_response(request, ping_interval=15) as resp:
            try:
                # A page that just opened gets the swarm as it is now, not the last
                # periodic snapshot (up to an interval old).
                snap = await sampler.sample()
                await resp.send(json.dumps(snap), event="snapshot")
                while resp.is_connected():
                    snap = await sampler.next()
                    await resp.send(json.dumps(snap), event="snapshot")
            except ConnectionResetError:
                pass  # the page went away
        return resp

    app.router.add_get("/", page, name="dashboard")
    app.router.add_get("/dashboard/state", wrap(state), name="dashboardState")
    app.router.add_get("/dashboard/events", wrap(events), name="dashboardEvents")


def install(app: web.Application, service: Any) -> None:
    """The HTTP API's route installer: the dashboard over ``service``, behind its tokens."""
    from swarm.service import http

    def locked(request: web.Request) -> bool:
        # The API's token store (no public accessor yet): empty means an open API.
        return bool(request.app[http._TOKENS_KEY])

    install_dashboard(app, ServiceSource(service), guard=http.guarded("viewer"), needs_token=locked)


def _rows(items: list[dict[str, Any]], columns: Sequence[str]) -> str:
    out = []
    for item in items:
        cells = "".join(f"<td>{html.escape(str(item.get(c, '')))}</td>" for c in columns)
        out.append(f"<tr>{cells}</tr>")
    return "".join(out) or f'<tr><td colspan="{len(columns)}" class="none">none</td></tr>'


def render_page(snap: dict[str, Any] | None, *, needs_token: bool) -> str:
    """The page: the snapshot's tables rendered server-side (empty when a token is needed)."""
    s = snap or {}
    roles = _rows(s.get("roles", []), ("role", "replicas", "healthy", "waiting", "oldest_age",
                                        "delayed", "dead", "delivered"))
    agents = _rows(s.get("agents", []), ("agent_id", "role", "state", "inflight", "capacity",
                                         "healthy"))
    failures = _rows(s.get("failures", []), ("task_id", "type", "state", "error"))
    dead = _rows(s.get("dead_letters", []), ("task_id", "type", "error"))
    memory = _rows([{"tier": k, "size": v} for k, v in s.get("memory", {}).items()],
                   ("tier", "size"))
    initial = json.dumps(snap).replace("</", "<\\/") if snap else "null"
    return _PAGE.format(
        roles=roles, agents=agents, failures=failures, dead=dead, memory=memory,
        delivered=html.escape(str(s.get("delivered", "-"))),
        leader=html.escape(str(s.get("leader") or "-")),
        needs_token="true" if needs_token else "false", initial=initial, window=int(WINDOW),
    )


_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>queenswarm</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
body{{font:14px system-ui,sans-serif;margin:1.5em;color:#222;background:#fafafa}}
h1{{font-size:1.3em;margin:0 0 .5em}} h2{{font-size:1.05em;margin:1.2em 0 .4em}}
table{{border-collapse:collapse;background:#fff;min-width:30em}}
td,th{{border:1px solid #ddd;padding:.25em .6em;text-align:left}} th{{background:#eee}}
.kpis{{display:flex;gap:1.5em;flex-wrap:wrap}} .kpi{{background:#fff;border:1px solid #ddd;
padding:.5em 1em}} .kpi b{{display:block;font-size:1.5em}} .none{{color:#999}}
#status{{color:#666}} #login{{display:none;margin:1em 0}} svg{{background:#fff;border:1px solid #ddd}}
button{{cursor:pointer}}
</style></head><body>
<h1>queenswarm <span id="status">connecting...</span></h1>
<form id="login"><label>API token <input id="token" type="password" autocomplete="off"></label>
<button>Open</button></form>
<div class="kpis">
<div class="kpi">leader<b id="leader">{leader}</b></div>
<div class="kpi">tasks delivered<b id="delivered">{delivered}</b></div>
<div class="kpi">throughput (tasks/s)<b id="rate">-</b></div>
<div class="kpi">latency p50 / p95 (s)<b id="latency">-</b></div>
</div>
<h2>Throughput, last 5 minutes</h2><svg id="chart" width="600" height="80"></svg>
<h2>Roles</h2><table><thead><tr><th>role</th><th>replicas</th><th>healthy</th><th>waiting</th>
<th>oldest wait (s)</th><th>delayed</th><th>dead</th><th>delivered</th></tr></thead>
<tbody id="roles">{roles}</tbody></table>
<h2>Agents</h2><table><thead><tr><th>agent</th><th>role</th><th>state</th><th>in flight</th>
<th>capacity</th><th>healthy</th></tr></thead><tbody id="agents">{agents}</tbody></table>
<h2>Recent failures</h2><table><thead><tr><th>task</th><th>type</th><th>state</th><th>error</th>
</tr></thead><tbody id="failures">{failures}</tbody></table>
<h2>Dead letters</h2><table><thead><tr><th>task</th><th>type</th><th>error</th><th></th></tr>
</thead><tbody id="dead">{dead}</tbody></table>
<h2>Memory tiers</h2><table><thead><tr><th>tier</th><th>size</th></tr></thead>
<tbody id="memory">{memory}</tbody></table>
<script>
const needsToken = {needs_token};
let token = sessionStorage.getItem("queenswarm-token") || "";
window.snapshots = 0;
const esc = v => String(v ?? "").replace(/[&<>"]/g, c => ({{"&":"&amp;","<":"&lt;",">":"&gt;",'"':"&quot;"}})[c]);
const rows = (items, cols, extra) => items.length ? items.map(i => "<tr>" +
  cols.map(c => "<td>" + esc(typeof i[c] === "number" ? +i[c].toFixed(3) : i[c]) + "</td>").join("") +
  (extra ? extra(i) : "") + "</tr>").join("") : '<tr><td colspan="' + (cols.length + (extra ? 1 : 0)) + '" class="none">none</td></tr>';
function headers() {{ return token ? {{"Authorization": "Bearer " + token}} : {{}}; }}
function render(s) {{
  window.snapshots += 1;
  document.getElementById("leader").textContent = s.leader || "-";
  document.getElementById("delivered").textContent = s.delivered;
  const t = s.throughput || [];
  document.getElementById("rate").textContent = t.length ? t[t.length - 1][1].toFixed(1) : "-";
  document.getElementById("latency").textContent = s.latency.n ?
    s.latency.p50.toFixed(3) + " / " + s.latency.p95.toFixed(3) : "-";
  document.getElementById("roles").innerHTML = rows(s.roles, ["role","replicas","healthy","waiting","oldest_age","delayed","dead","delivered"]);
  document.getElementById("agents").innerHTML = rows(s.agents, ["agent_id","role","state","inflight","capacity","healthy"]);
  document.getElementById("failures").innerHTML = rows(s.failures, ["task_id","type","state","error"]);
  document.getElementById("dead").innerHTML = rows(s.dead_letters, ["task_id","type","error"],
    d => '<td><button data-id="' + esc(d.task_id) + '">redrive</button></td>');
  document.getElementById("memory").innerHTML = rows(Object.entries(s.memory).map(([k, v]) => ({{tier: k, size: v}})), ["tier","size"]);
  const svg = document.getElementById("chart"), max = Math.max(1, ...t.map(p => p[1]));
  const x0 = s.at - {window};
  svg.innerHTML = '<polyline fill="none" stroke="#36c" stroke-width="2" points="' +
    t.map(p => ((p[0] - x0) / {window} * 600).toFixed(1) + "," + (78 - p[1] / max * 74).toFixed(1)).join(" ") + '"/>';
}}
document.getElementById("dead").addEventListener("click", async ev => {{
  const id = ev.target.dataset && ev.target.dataset.id;
  if (!id) return;
  const r = await fetch("/v1/dead-letters/" + encodeURIComponent(id) + "/redrive", {{method: "POST", headers: headers()}});
  ev.target.textContent = r.ok ? "redriven" : "failed (" + r.status + ": an operator token is needed)";
}});
async function stream() {{
  const status = document.getElementById("status");
  for (;;) {{
    try {{
      const r = await fetch("/dashboard/events", {{headers: headers()}});
      if (r.status === 401 || r.status === 403) {{ status.textContent = "token needed"; askToken(); return; }}
      status.textContent = "live";
      const reader = r.body.getReader(), dec = new TextDecoder();
      let buf = "";
      for (;;) {{
        const {{value, done}} = await reader.read();
        if (done) break;
        buf += dec.decode(value, {{stream: true}});
        let i;
        while ((i = buf.indexOf("\\r\\n\\r\\n")) >= 0 || (i = buf.indexOf("\\n\\n")) >= 0) {{
          const block = buf.slice(0, i); buf = buf.slice(i + (buf[i] === "\\r" ? 4 : 2));
          const data = block.split(/\\r?\\n/).filter(l => l.startsWith("data:")).map(l => l.slice(5).trimStart()).join("\\n");
          if (data) render(JSON.parse(data));
        }}
      }}
    }} catch (e) {{ }}
    status.textContent = "reconnecting...";
    await new Promise(res => setTimeout(res, 2000));
  }}
}}
function askToken() {{
  const form = document.getElementById("login");
  form.style.display = "block";
  form.onsubmit = ev => {{ ev.preventDefault(); token = document.getElementById("token").value;
    sessionStorage.setItem("queenswarm-token", token); form.style.display = "none"; stream(); }};
}}
const initial = {initial};
if (initial) render(initial);
if (needsToken && !token) askToken(); else stream();
</script></body></html>
"""
