"""``SwarmClient``: the HTTP API from Python (aiohttp, async), errors in the SwarmError tree.

Example:
    >>> import asyncio
    >>> from swarm.client import SwarmClient
    >>> async def demo():
    ...     async with SwarmClient("http://127.0.0.1:1") as client:
    ...         try:
    ...             await client.roles()
    ...         except Exception as exc:
    ...             return type(exc).__name__
    >>> asyncio.run(demo())
    'TransportError'
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Mapping
from types import TracebackType
from typing import Any, TypeVar
from urllib.parse import urlsplit

import aiohttp
import msgspec

from swarm.client.errors import ApiRequestError, error_from_problem
from swarm.errors import (
    ConfigError,
    SwarmTimeout,
    TaskDeadLettered,
    TaskExpired,
    TaskFailed,
    TransportError,
)
from swarm.service import api

__all__ = ["SwarmClient", "result_of"]

_T = TypeVar("_T")
_FINAL = frozenset({"done", "failed", "dead", "expired"})
#: The server's longest long-poll per request; longer waits take several.
_POLL = 30.0


def _checked_url(url: str) -> str:
    # Caught here, a typo is a configuration error, not "cannot reach the swarm".
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError as exc:
        raise ConfigError(f"API URL {url!r} is not a URL: {exc}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(
            f"API URL {url!r} must look like http://HOST:PORT or https://HOST:PORT, "
            "e.g. http://127.0.0.1:8080"
        )
    return url.rstrip("/")


class SwarmClient:
    """A client of one swarm's HTTP API, on keep-alive connections.

    Args:
        url: Base URL of the API (``http://host:port``).
        token: Bearer token (``None`` for an open, loopback-only API).
        timeout: Seconds any one request may take, besides long-polls.
        session: An aiohttp session to use (not closed by the client).
        connections: Most connections kept open to the API.

    Raises:
        ConfigError: ``url`` is not an ``http(s)://host[:port]`` URL, or ``timeout``
            is not positive.
    """

    def __init__(
        self,
        url: str = "http://127.0.0.1:8080",
        *,
        token: str | None = None,
        timeout: float = 30.0,
        session: aiohttp.ClientSession | None = None,
        connections: int = 100,
    ) -> None:
        self.url = _checked_url(url)
        if not timeout > 0:
            raise ConfigError(f"timeout must be a positive number of seconds, not {timeout:g}")
        self.timeout = timeout
        self._headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._session = session
        self._own = session is None
        self._connections = connections

    async def __aenter__(self) -> SwarmClient:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the connections (when the client made its session)."""
        if self._own and self._session is not None:
            await self._session.close()
        self._session = None

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self._connections),
                headers=self._headers,
            )
            self._own = True
        return self._session

    async def _call(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float | None = None,
        ok: tuple[int, ...] = (200, 201, 202, 204),
    ) -> tuple[int, bytes]:
        """One request; any problem document becomes an error of the SwarmError tree."""
        body = None if json is None else msgspec.json.encode(json)
        send_headers = dict(headers or {})
        if body is not None:
            send_headers["Content-Type"] = "application/json"
        limit = aiohttp.ClientTimeout(total=timeout or self.timeout)
        try:
            async with self._http().request(
                method, self.url + path, data=body, params=params, headers=send_headers,
                timeout=limit,
            ) as resp:
                data = await resp.read()
                status = resp.status
                retry_after = resp.headers.get("Retry-After")
        except TimeoutError:
            raise SwarmTimeout(f"{method} {path}: no answer from {self.url} in time") from None
        except aiohttp.ClientError as exc:
            raise TransportError(f"cannot reach the swarm at {self.url}: {exc}") from None
        if status in ok:
            return status, data
        try:
            problem = msgspec.json.decode(data) if data else {}
        except msgspec.DecodeError:
            problem = {}
        if not isinstance(problem, dict):
            problem = {}
        raise error_from_problem(status, problem, retry_after=retry_after)

    @staticmethod
    def _decode(data: bytes, tp: type[_T]) -> _T:
        try:
            return msgspec.json.decode(data, type=tp)
        except msgspec.DecodeError as exc:
            raise TransportError(f"the API answered something unexpected: {exc}") from None

    # -- tasks ----------------------------------------------------------------
    async def submit(
        self,
        type_name: str,
        payload: Mapping[str, Any] | None = None,
        *,
        to: str = "",
        priority: int = 0,
        deadline: float | None = None,
        timeout: float | None = None,
        max_attempts: int | None = None,
        idempotency_key: str | None = None,
        wait: float | None = None,
    ) -> api.Submitted:
        """Submit a task by its message type's wire name.

        Args:
            wait: Seconds the server may hold the answer until the task ended
                (then ``Submitted.task`` is its final record).

        Raises:
            BadRequest: Unknown type or bad payload (``field`` names it).
            Conflict: ``idempotency_key`` was used with another request.
            Overloaded, NotLeader, ServiceUnavailable, Unauthorized, Forbidden.
        """
        req = api.SubmitRequest(
            type=type_name, payload=dict(payload or {}), to=to, priority=priority,
            deadline=deadline, timeout=timeout, max_attempts=max_attempts,
        )
        headers: dict[str, str] = {}
        if idempotency_key is not None:
            headers["Idempotency-Key"] = idempotency_key
        if wait:
            headers["Prefer"] = f"wait={int(wait)}"
        _, data = await self._call(
            "POST", "/v1/tasks", json=req, headers=headers,
            timeout=self.timeout + (wait or 0),
        )
        return self._decode(data, api.Submitted)

    async def status(self, task_id: str) -> api.TaskView:
        """A task's record.

        Raises:
            NotFound: Unknown task.
        """
        _, data = await self._call("GET", f"/v1/tasks/{task_id}")
        return self._decode(data, api.TaskView)

    async def wait(self, task_id: str, *, timeout: float | None = None) -> api.TaskView:
        """Wait for a task's final record (long-polls of at most 30 s each).

        Raises:
            SwarmTimeout: Not final within ``timeout``.
            NotFound: Unknown task.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            left = _POLL if deadline is None else max(0.0, deadline - time.monotonic())
            step = min(_POLL, left)
            _, data = await self._call(
                "GET", f"/v1/tasks/{task_id}/result", params={"wait": f"{step:.3f}"},
                timeout=self.timeout + step,
            )
            view = self._decode(data, api.TaskView)
            if view.state in _FINAL:
                return view
            if deadline is not None and time.monotonic() >= deadline:
                raise SwarmTimeout(f"task {task_id} not finished within {timeout}s")
            await asyncio.sleep(0)

    async def result(self, task_id: str, *, timeout: float | None = None) -> Any:
        """Wait for a task and return its result (as JSON values).

        Raises:
            TaskFailed, TaskDeadLettered, TaskExpired: It ended without a result.
            SwarmTimeout: Not final within ``timeout``.
        """
        return result_of(await self.wait(task_id, timeout=timeout))

    async def cancel(self, task_id: str) -> api.TaskView:
        """Cancel a task that has not started.

        Raises:
            Conflict: It started or ended already (or the runtime cannot cancel).
        """
        _, data = await self._call("POST", f"/v1/tasks/{task_id}/cancel")
        return self._decode(data, api.TaskView)

    async def tasks(
        self,
        *,
        state: str | None = None,
        type: str | None = None,
        since: float | None = None,
        until: float | None = None,
        limit: int = 100,
        cursor: str | None = None,
    ) -> api.TaskList:
        """One page of tasks: live ones newest first, then the task history newest finished first.

        Args:
            state: Only this state (queued, running, done, failed, dead, expired).
            type: Only this message type.
            since: Only tasks finished (live ones: created) at or after this unix time.
            until: Only tasks finished (live ones: created) before this unix time.
            limit: Most tasks on the page (1..1000).
            cursor: The ``cursor`` of the previous page.

        Returns:
            The page; its ``cursor`` is None on the last one.

        Raises:
            ApiRequestError: A filter is invalid (the field is named).
        """
        params = {"limit": str(limit)}
        for name, value in (("state", state), ("type", type), ("since", since),
                            ("until", until), ("cursor", cursor)):
            if value is not None:
                params[name] = f"{value:.6f}" if isinstance(value, float) else str(value)
        _, data = await self._call("GET", "/v1/tasks", params=params)
        return self._decode(data, api.TaskList)

    async def iter_tasks(
        self,
        *,
        state: str | None = None,
        type: str | None = None,
        since: float | None = None,
        until: float | None = None,
        page: int = 500,
    ) -> AsyncIterator[api.TaskView]:
        """Every task matching the filters, following the pages' cursors (see :meth:`tasks`)."""
        cursor: str | None = None
        while True:
            listing = await self.tasks(state=state, type=type, since=since, until=until,
                                       limit=page, cursor=cursor)
            for task in listing.tasks:
                yield task
            if listing.cursor is None:
                return
            cursor = listing.cursor

    # -- the swarm ----------------------------------------------------------------
    async def roles(self) -> list[api.RoleView]:
        """Roles with replicas, health and queue depth."""
        _, data = await self._call("GET", "/v1/roles")
        return self._decode(data, list[api.RoleView])

    async def agents(self) -> list[api.ReplicaView]:
        """Every agent."""
        _, data = await self._call("GET", "/v1/agents")
        return self._decode(data, list[api.ReplicaView])

    async def dead_letters(self, *, limit: int = 100) -> list[api.DeadLetterView]:
        """Dead-lettered tasks, oldest first."""
        _, data = await self._call("GET", "/v1/dead-letters", params={"limit": str(limit)})
        return self._decode(data, list[api.DeadLetterView])

    async def redrive(self, task_id: str | None = None) -> list[str]:
        """Redrive one dead letter (or all of them, without ``task_id``); returns their ids."""
        path = "/v1/dead-letters/redrive" if task_id is None else (
            f"/v1/dead-letters/{task_id}/redrive")
        _, data = await self._call("POST", path)
        return self._decode(data, api.RedriveResult).redriven

    async def ready(self) -> api.Readiness:
        """Whether the Queen leads, stands by or drains, and who leads."""
        _, data = await self._call("GET", "/readyz", ok=(200, 503))
        return self._decode(data, api.Readiness)

    # -- memory -------------------------------------------------------------------
    async def remember(self, namespace: str, content: str, **fields: Any) -> str:
        """Store a memory (fields of :class:`~swarm.service.api.MemoryStoreRequest`)."""
        req = api.MemoryStoreRequest(namespace=namespace, content=content, **fields)
        _, data = await self._call("POST", "/v1/memory", json=req)
        return self._decode(data, api.MemoryStored).id

    async def recall(self, query: str, *, k: int = 10) -> list[api.RecallHitView]:
        """The ``k`` memories most relevant to ``query``."""
        _, data = await self._call("GET", "/v1/memory", params={"q": query, "k": str(k)})
        return self._decode(data, list[api.RecallHitView])

    async def memory(self, memory_id: str) -> api.MemoryView:
        """One memory.

        Raises:
            NotFound: No such memory.
        """
        _, data = await self._call("GET", f"/v1/memory/{memory_id}")
        return self._decode(data, api.MemoryView)

    async def forget(self, memory_id: str) -> None:
        """Forget a memory (an admin token)."""
        await self._call("DELETE", f"/v1/memory/{memory_id}")

    # -- live config --------------------------------------------------------------
    async def config(self) -> api.ConfigView:
        """The live config in force."""
        _, data = await self._call("GET", "/v1/config")
        return self._decode(data, api.ConfigView)

    async def change_config(
        self, *, retry_policy: api.RetryPolicyView | None = None,
        concurrency: Mapping[str, int] | None = None,
    ) -> api.ConfigView:
        """Change the live config (an admin token); returns it once applied."""
        change = api.ConfigChange(retry_policy=retry_policy, concurrency=dict(concurrency or {}))
        _, data = await self._call("PATCH", "/v1/config", json=change)
        return self._decode(data, api.ConfigView)


def result_of(view: api.TaskView) -> Any:
    """A final task's result, or the error that ended it."""
    if view.state == "done":
        return view.result
    if view.state == "failed":
        raise TaskFailed(view.task_id, view.error)
    if view.state == "dead":
        raise TaskDeadLettered(view.task_id, view.error)
    if view.state == "expired":
        raise TaskExpired(view.task_id, view.error)
    raise ApiRequestError(200, "not-final", f"task {view.task_id} is {view.state}", {})
