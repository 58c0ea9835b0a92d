"""Errors of the HTTP client: the API's problem documents as :class:`~swarm.errors.SwarmError`.

Each maps one answer of the API into the framework's one error tree, at one
point (:func:`error_from_problem`), as httpx maps its transport's errors::

    SwarmError
    └── ApiRequestError          the API refused a request (status, code, detail)
        ├── BadRequest           400 (also a MessageError; ``field`` names the field)
        ├── Unauthorized         401: no or unknown token
        ├── Forbidden            403: the token's role may not do this
        ├── NotFound             404
        ├── Conflict             409 (idempotency key reused, task already final...)
        ├── PayloadTooLarge      413 (also a MessageError)
        ├── Overloaded           429 (``retry_after`` seconds)
        ├── NotLeader            503 from a standby (also LeadershipLost; ``leader_url``)
        └── ServiceUnavailable   other 503 (also a TransportError)

A connection that fails is a :class:`~swarm.errors.TransportError`; a
request that takes too long a :class:`~swarm.errors.SwarmTimeout`.

Example:
    >>> from swarm.client.errors import NotLeader, error_from_problem
    >>> exc = error_from_problem(503, {"code": "not-leader", "detail": "standby",
    ...                                "leader": {"queen_id": "q1", "url": "http://a:1"}})
    >>> isinstance(exc, NotLeader), exc.leader_url
    (True, 'http://a:1')
"""

from __future__ import annotations

from typing import Any

from swarm.errors import LeadershipLost, MessageError, SwarmError, TransportError

__all__ = [
    "ApiRequestError",
    "BadRequest",
    "Conflict",
    "Forbidden",
    "NotFound",
    "NotLeader",
    "Overloaded",
    "PayloadTooLarge",
    "ServiceUnavailable",
    "Unauthorized",
    "error_from_problem",
]


class ApiRequestError(SwarmError):
    """The API answered with a problem document.

    Attributes:
        status: HTTP status.
        code: The problem's stable code.
        detail: What happened.
        problem: The whole document.
    """

    def __init__(self, status: int, code: str, detail: str, problem: dict[str, Any]) -> None:
        super().__init__(f"{status} {code}: {detail}" if detail else f"{status} {code}")
        self.status = status
        self.code = code
        self.detail = detail
        self.problem = problem


class BadRequest(ApiRequestError, MessageError):
    """400: the request is invalid; ``field`` names the first offending field."""

    @property
    def field(self) -> str | None:
        errors = self.problem.get("errors") or []
        return errors[0].get("field") if errors and isinstance(errors[0], dict) else None


class Unauthorized(ApiRequestError):
    """401: no token, or an unknown one."""


class Forbidden(ApiRequestError):
    """403: the token's role may not do this."""


class NotFound(ApiRequestError):
    """404: no such task, memory, dead letter or route."""


class Conflict(ApiRequestError):
    """409: e.g. an idempotency key reused with another body, or a task already final."""


class PayloadTooLarge(ApiRequestError, MessageError):
    """413: the body is over the service's size limit."""


class Overloaded(ApiRequestError):
    """429: the service is over capacity; retry after ``retry_after`` seconds."""

    retry_after: float = 1.0


class NotLeader(ApiRequestError, LeadershipLost):
    """503 from a standby Queen; ``leader_url`` is the leader's API, when it announced one."""

    @property
    def leader_url(self) -> str | None:
        leader = self.problem.get("leader")
        return (leader.get("url") or None) if isinstance(leader, dict) else None


class ServiceUnavailable(ApiRequestError, TransportError):
    """503: draining, or a server behind the API is unreachable."""


_BY_STATUS: dict[int, type[ApiRequestError]] = {
    400: BadRequest, 401: Unauthorized, 403: Forbidden, 404: NotFound, 409: Conflict,
    413: PayloadTooLarge, 429: Overloaded, 503: ServiceUnavailable,
}


def error_from_problem(
    status: int, problem: dict[str, Any], *, retry_after: str | None = None
) -> ApiRequestError:
    """The error for an answer with ``status`` and its (parsed) problem document."""
    code = str(problem.get("code") or f"http-{status}")
    detail = str(problem.get("detail") or problem.get("title") or "")
    cls = NotLeader if status == 503 and code == "not-leader" else _BY_STATUS.get(
        status, ApiRequestError
    )
    exc = cls(status, code, detail, problem)
    if isinstance(exc, Overloaded) and retry_after:
        try:
            exc.retry_after = float(retry_after)
        except ValueError:
            pass
    return exc
