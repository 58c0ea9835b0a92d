"""``ConsulRegistry``: the :class:`~discovery.registry.Registry` on Consul (py-consul asyncio).

* Instances are agent services with a TTL check (``service:<id>``) and
  ``DeregisterCriticalServiceAfter``; an owned heartbeat task per instance
  passes the check every ``ttl / 3`` seconds with its own short timeout, so
  slow handlers or a slow blocking query never delay it (a handler that
  blocks the event loop would: keep handlers async).
* Health is read with ``/v1/health/service/<role>?passing`` as blocking
  queries (``index``/``wait``); the index restarts from 0 when it goes
  backwards (Consul's documented rule), and the HTTP timeout is longer than
  the wait plus Consul's wait/16 jitter.
* Leadership is a session lock on ``<prefix>/leader/<name>``; the session has
  the configured TTL and LockDelay and, when the holder is an instance this
  registry registered, is bound to its TTL check so a dead holder loses the
  lock as soon as its check goes critical. The epoch lives in
  ``<prefix>/epoch/<name>`` and is incremented by CAS on each acquisition.

py-consul quirks worked around here (py-consul 1.8):
``consul.base.Consul`` lets ``CONSUL_HTTP_TOKEN`` override an explicit token
(so the token is re-set after construction); ``consul.aio`` builds its
connector with aiohttp's deprecated ``verify_ssl``/``ssl_context`` arguments
(the DeprecationWarning is silenced at construction, behaviour is right);
``Session.create`` only takes whole seconds >= 10 for TTL and LockDelay (the
session is created with a direct PUT so sub-second LockDelay works); and
``Health.service`` has no per-request timeout (the client-wide timeout is
set above the blocking wait, short requests get their own ``asyncio.timeout``).

Example:
    >>> from discovery.consul import ConsulRegistry
    >>> from discovery.settings import ConsulSettings
    >>> reg = ConsulRegistry(settings=ConsulSettings.from_dsn("consul://127.0.0.1:8500"))
    >>> reg.settings.address
    'http://127.0.0.1:8500'
"""

from __future__ import annotations

import asyncio
import json
import warnings
from collections.abc import AsyncIterator, Awaitable
from typing import Any, TypeVar

import aiohttp
import structlog

from discovery.registry import Leadership, ServiceInstance
from discovery.settings import ConsulSettings
from swarm.errors import AclDenied, DiscoveryError, LeadershipLost
from swarm.tasks import TaskSet

__all__ = ["ConsulRegistry"]

T = TypeVar("T")
_log = structlog.get_logger("discovery.consul")
_UNKNOWN_CHECK = "Unknown check"


def _dur(seconds: float) -> str:
    """A Go duration string Consul accepts ("1500ms")."""
    return f"{max(0, round(seconds * 1000))}ms"


class ConsulRegistry:
    """A registry backed by a Consul agent.

    Args:
        settings: Where Consul is and how to talk to it.
        client: An existing ``consul.aio.Consul`` (not closed by :meth:`close`).
        deregister_critical_after: Seconds after which Consul removes an
            instance whose check stays critical (Consul applies a 1 minute minimum).
        heartbeat_interval: Seconds between TTL passes (default ``ttl / 3``).
    """

    def __init__(
        self,
        *,
        settings: ConsulSettings,
        client: Any = None,
        deregister_critical_after: float = 60.0,
        heartbeat_interval: float | None = None,
    ) -> None:
        self.settings = settings
        self._client = client
        self._own_client = client is None
        self.deregister_critical_after = deregister_critical_after
        self.heartbeat_interval = heartbeat_interval
        self._tasks = TaskSet("registry:consul")
        self._instances: dict[str, tuple[ServiceInstance, float]] = {}
        self._keepalives: dict[str, asyncio.Task[None]] = {}
        self._sessions: set[str] = set()
        self._standby: dict[tuple[str, str], str] = {}
        self._closed = False

    # -- plumbing ---------------------------------------------------------------
    @property
    def client(self) -> Any:
        """The ``consul.aio.Consul`` client.

        Created on first use when :meth:`start` was not called (then an
        unreachable agent surfaces at the first call instead of at start).
        """
        if self._client is None:
            if self._closed:
                raise DiscoveryError(f"ConsulRegistry for {self.settings.address} is closed")
            self._client = self._make_client()
        return self._client

    def _is_closed(self) -> bool:
        # A method, not an attribute read, so type checkers do not assume it
        # cannot change across an await.
        return self._closed

    def _make_client(self) -> Any:
        import consul.aio

        s = self.settings
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            client = consul.aio.Consul(
                host=s.host, port=s.port, scheme=s.scheme, dc=s.dc, verify=s.verify,
                cert=s.cert, token=s.token, connections_timeout=s.http_timeout,
            )
        client.token = s.token  # py-consul lets CONSUL_HTTP_TOKEN win over the argument
        return client

    async def _call(
        self, op: str, permission: str, aw: Awaitable[T], *, short: bool = True,
        limit: float | None = None,
    ) -> T:
        """Await a client call, mapping failures to :class:`DiscoveryError` / :class:`AclDenied`.

        ``short`` calls get ``limit`` seconds (default ``request_timeout``); blocking
        queries rely on the client's longer HTTP timeout.
        """
        import consul

        addr = self.settings.address
        try:
            if short:
                async with asyncio.timeout(limit or self.settings.request_timeout):
                    return await aw
            return await aw
        except consul.ACLPermissionDenied:
            raise AclDenied(
                f"Consul at {addr} refused {op}: the ACL token lacks the {permission!r} permission",
                permission=permission,
            ) from None
        except consul.ConsulException as exc:
            raise DiscoveryError(f"Consul at {addr} failed {op}: {exc}") from None
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            raise DiscoveryError(
                f"Consul at {addr} is unreachable ({op}): {type(exc).__name__}: {exc}"
            ) from None

    def _key(self, *parts: str) -> str:
        return "/".join((self.settings.prefix, *parts))

    # -- lifecycle ----------------------------------------------------------------
    async def start(self) -> None:
        """Create the client and check that the agent answers.

        Raises:
            DiscoveryError: The agent is unreachable (the message names its address).
        """
        if self._client is None:
            self._client = self._make_client()
        try:
            leader = await self._call("GET /v1/status/leader", "none", self.client.status.leader())
            if not leader:
                raise DiscoveryError(
                    f"Consul at {self.settings.address} answers but has no cluster leader"
                )
        except DiscoveryError:
            await self._close_client()
            raise

    async def close(self) -> None:
        """Stop heartbeats, deregister this registry's instances, drop its sessions.

        Watchers still iterating end quietly.
        """
        await self._tasks.close()
        self._keepalives.clear()
        if self._client is None:
            return
        for iid in list(self._instances):
            try:
                await self.deregister(iid)
            except DiscoveryError as exc:
                _log.warning("deregister on close failed", instance=iid, error=str(exc))
        for sid in list(self._sessions):
            try:
                await self._call(
                    "destroy session", "session:write", self.client.session.destroy(sid)
                )
            except DiscoveryError:
                pass
        self._sessions.clear()
        self._standby.clear()
        self._closed = True
        await self._close_client()

    async def _close_client(self) -> None:
        if self._own_client and self._client is not None:
            await self._client.close()
            self._client = None

    # -- instances -------------------------------------------------------------------
    async def register(
        self, instance: ServiceInstance, *, ttl: float, keepalive: bool = True
    ) -> None:
        """Register ``instance`` with a TTL check, passing from the start."""
        check = {
            "CheckID": f"service:{instance.id}",
            "Name": "swarm heartbeat",
            "TTL": _dur(ttl),
            "Status": "passing",
            "DeregisterCriticalServiceAfter": _dur(self.deregister_critical_after),
        }
        await self._call(
            f"register service {instance.role!r}", f"service:write on {instance.role!r}",
            self.client.agent.service.register(
                instance.role, service_id=instance.id, address=instance.address,
                port=instance.port or None, tags=list(instance.tags), meta=instance.to_meta(),
                check=check,
            ),
        )
        self._instances[instance.id] = (instance, ttl)
        old = self._keepalives.pop(instance.id, None)
        if old is not None:
            old.cancel()
        if keepalive:
            interval = self.heartbeat_interval or ttl / 3
            self._keepalives[instance.id] = self._tasks.supervise(
                lambda: self._keepalive(instance.id, interval), name=f"heartbeat:{instance.id}"
            )

    async def _keepalive(self, instance_id: str, interval: float) -> None:
        while instance_id in self._instances:
            await asyncio.sleep(interval)
            try:
                await self.heartbeat(instance_id)
            except DiscoveryError as exc:
                _log.warning("heartbeat failed", instance=instance_id, error=str(exc))
                if _UNKNOWN_CHECK in str(exc) and instance_id in self._instances:
                    # The agent forgot us (restart, or reaped while we were
                    # stalled): register again rather than stay invisible.
                    inst, ttl = self._instances[instance_id]
                    try:
                        await self.register(inst, ttl=ttl, keepalive=False)
                    except DiscoveryError as exc2:
                        _log.warning("re-register failed", instance=instance_id, error=str(exc2))

    async def heartbeat(self, instance_id: str) -> None:
        """Pass the instance's TTL check.

        Raises:
            DiscoveryError: Consul does not know the check ("Unknown check").
        """
        known = self._instances.get(instance_id)
        role, ttl = (known[0].role, known[1]) if known else ("?", None)
        try:
            ok = await self._call(
                f"pass check of {instance_id!r}", f"service:write on {role!r}",
                self.client.agent.check.ttl_pass(f"service:{instance_id}"),
                # A pass that arrives after the TTL is useless; do not let one
                # slow request hold up the next.
                limit=min(self.settings.request_timeout, ttl / 3) if ttl else None,
            )
        except DiscoveryError as exc:
            # Older agents answer 500 "CheckID ... does not have associated TTL".
            if "does not have associated TTL" not in str(exc):
                raise
            ok = False
        if not ok:
            raise DiscoveryError(
                f"{_UNKNOWN_CHECK} 'service:{instance_id}' at {self.settings.address}"
            )

    async def deregister(self, instance_id: str) -> None:
        """Deregister an instance (unknown ids are ignored)."""
        inst = self._instances.pop(instance_id, None)
        task = self._keepalives.pop(instance_id, None)
        if task is not None and task is not asyncio.current_task():
            task.cancel()
        role = inst[0].role if inst else "?"
        try:
            await self._call(
                f"deregister {instance_id!r}", f"service:write on {role!r}",
                self.client.agent.service.deregister(instance_id),
            )
        except DiscoveryError as exc:
            if "Unknown service" not in str(exc):
                raise

    @staticmethod
    def _parse(nodes: list[dict[str, Any]] | None) -> list[ServiceInstance]:
        out = []
        for n in nodes or ():
            svc = n["Service"]
            addr = svc.get("Address") or n.get("Node", {}).get("Address", "")
            out.append(ServiceInstance.from_meta(
                role=svc["Service"], id=svc["ID"], address=addr, port=int(svc.get("Port") or 0),
                tags=tuple(svc.get("Tags") or ()), meta=svc.get("Meta") or {},
            ))
        return sorted(out, key=lambda i: i.id)

    async def _health(self, role: str, index: int) -> tuple[int, list[ServiceInstance]]:
        idx, nodes = await self._call(
            f"read health of {role!r}", f"service:read on {role!r}",
            self.client.health.service(
                role, passing=True, index=index or None, wait=_dur(self.settings.wait)
            ),
            short=index == 0,
        )
        return int(idx), self._parse(nodes)

    async def healthy(self, role: str) -> list[ServiceInstance]:
        """Instances of ``role`` whose checks all pass."""
        return (await self._health(role, 0))[1]

    async def _blocking(self, fetch: Any) -> AsyncIterator[Any]:
        """Run a blocking-query loop, yielding each result whose index moved."""
        index = 0
        backoff = 0.1
        while not self._is_closed():
            try:
                new, value = await fetch(index)
            except AclDenied:
                raise
            except DiscoveryError as exc:
                if self._is_closed():  # close() ran while we waited
                    return
                _log.warning("blocking query failed; retrying", error=str(exc))
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
                continue
            backoff = 0.1
            # https://developer.hashicorp.com/consul/api-docs/features/blocking:
            # an index that goes backwards (or is 0) must restart from 0.
            if new < index or new <= 0:
                index = 0
            elif new == index:
                continue
            else:
                index = new
            yield value

    async def watch(self, role: str) -> AsyncIterator[list[ServiceInstance]]:
        """Yield the healthy instances of ``role`` now and after every change."""
        last: list[ServiceInstance] | None = None
        async for now in self._blocking(lambda i: self._health(role, i)):
            if now != last:
                last = now
                yield now

    # -- config ------------------------------------------------------------------------
    async def get_config(self, key: str) -> bytes | None:
        """Read a KV key."""
        _, item = await self._call(
            f"read key {key!r}", f"key:read on {key!r}", self.client.kv.get(key)
        )
        if item is None:
            return None
        value: bytes | None = item.get("Value")
        return value if value is not None else b""

    async def put_config(self, key: str, value: bytes) -> None:
        """Write a KV key."""
        await self._call(
            f"write key {key!r}", f"key:write on {key!r}", self.client.kv.put(key, bytes(value))
        )

    async def delete_config(self, key: str) -> None:
        """Delete a KV key."""
        await self._call(
            f"delete key {key!r}", f"key:write on {key!r}", self.client.kv.delete(key)
        )

    async def _prefix(self, prefix: str, index: int) -> tuple[int, dict[str, bytes]]:
        idx, items = await self._call(
            f"read prefix {prefix!r}", f"key:read on {prefix!r}",
            self.client.kv.get(prefix, recurse=True, index=index or None,
                               wait=_dur(self.settings.wait)),
            short=index == 0,
        )
        return int(idx), {i["Key"]: i.get("Value") or b"" for i in items or ()}

    async def watch_config(self, prefix: str) -> AsyncIterator[dict[str, bytes]]:
        """Yield the keys under ``prefix`` now and after every change."""
        last: dict[str, bytes] | None = None
        async for now in self._blocking(lambda i: self._prefix(prefix, i)):
            if now != last:
                last = now
                yield dict(now)

    # -- election --------------------------------------------------------------------------
    async def _create_session(self, name: str, holder: str, ttl: float) -> str:
        from consul.callback import CB

        body: dict[str, Any] = {
            "Name": f"swarm-leader-{name}-{holder}",
            "TTL": _dur(ttl),
            "LockDelay": _dur(self.settings.lock_delay),
            "Behavior": "release",
        }
        if holder in self._instances:
            body["Checks"] = ["serfHealth", f"service:{holder}"]
        params = [("dc", self.settings.dc)] if self.settings.dc else []
        sid: str = await self._call(
            "create session", "session:write",
            self.client.http.put(
                CB.json(is_id=True), "/v1/session/create", params=params,
                headers=self.client.prepare_headers(), data=json.dumps(body),
            ),
        )
        self._sessions.add(sid)
        return sid

    async def _destroy_session(self, sid: str) -> None:
        self._sessions.discard(sid)
        await self._call("destroy session", "session:write", self.client.session.destroy(sid))

    async def _standby_session(self, name: str, holder: str, ttl: float) -> str:
        """The candidate's session, kept across attempts (renewed) rather than churned."""
        sid = self._standby.get((name, holder))
        if sid is not None:
            try:
                await self._call("renew session", "session:write", self.client.session.renew(sid))
                return sid
            except AclDenied:
                raise
            except DiscoveryError:
                self._sessions.discard(sid)  # invalidated meanwhile: make a new one
        sid = await self._create_session(name, holder, ttl)
        self._standby[(name, holder)] = sid
        return sid

    async def acquire(self, name: str, holder: str, *, ttl: float) -> Leadership | None:
        """Try once to take the lock ``<prefix>/leader/<name>``.

        A losing candidate's session is kept (and renewed on the next attempt),
        so a standby polling every second does not create a session per poll.
        """
        key = self._key("leader", name)
        sid = await self._standby_session(name, holder, ttl)
        ok = await self._call(
            f"acquire {key!r}", f"key:write on {key!r}",
            self.client.kv.put(key, holder, acquire=sid),
        )
        if not ok:
            return None
        self._standby.pop((name, holder), None)
        epoch = await self._bump_epoch(name)
        if not await self._holds(key, sid):
            # Lost between acquisition and the epoch bump: that epoch is burnt,
            # which keeps epochs monotonic for whoever won.
            await self._destroy_session(sid)
            return None
        return Leadership(name=name, holder=holder, epoch=epoch, token=sid, ttl=ttl)

    async def _bump_epoch(self, name: str) -> int:
        key = self._key("epoch", name)
        while True:
            _, item = await self._call(
                f"read {key!r}", f"key:read on {key!r}", self.client.kv.get(key)
            )
            cur = int(item["Value"] or 0) if item else 0
            cas = item["ModifyIndex"] if item else 0
            if await self._call(
                f"write {key!r}", f"key:write on {key!r}",
                self.client.kv.put(key, str(cur + 1), cas=cas),
            ):
                return cur + 1

    async def _holds(self, key: str, sid: str) -> bool:
        _, item = await self._call(f"read {key!r}", f"key:read on {key!r}", self.client.kv.get(key))
        return item is not None and item.get("Session") == sid

    async def renew(self, lease: Leadership) -> Leadership:
        """Renew the lease's session and check the lock is still ours."""
        import consul

        try:
            await self._call("renew session", "session:write",
                             self.client.session.renew(lease.token))
        except DiscoveryError as exc:
            if isinstance(exc.__context__, consul.NotFound) or "not found" in str(exc).lower():
                self._sessions.discard(lease.token)
                raise LeadershipLost(f"leadership {lease.name!r}: session expired") from None
            raise
        if not await self._holds(self._key("leader", lease.name), lease.token):
            raise LeadershipLost(f"leadership {lease.name!r} of {lease.holder!r} was taken over")
        return lease

    async def release(self, lease: Leadership) -> None:
        """Release the lock (no lock-delay for a clean release) and drop the session."""
        key = self._key("leader", lease.name)
        if lease.token in self._sessions:
            try:
                await self._call(f"release {key!r}", f"key:write on {key!r}",
                                 self.client.kv.put(key, lease.holder, release=lease.token))
            except DiscoveryError:
                pass
            await self._destroy_session(lease.token)

    async def current_epoch(self, name: str) -> int:
        """The newest epoch handed out for ``name``."""
        value = await self.get_config(self._key("epoch", name))
        return int(value or 0)
