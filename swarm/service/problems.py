"""RFC 9457 problem documents: the one shape of every error the HTTP API answers.

Example:
    >>> from swarm.service.problems import ApiError, problem_response
    >>> resp = problem_response(ApiError(404, "task-not-found", "no task 't1'"))
    >>> resp.status, resp.content_type
    (404, 'application/problem+json')
"""

from __future__ import annotations

from http import HTTPStatus

import msgspec
from aiohttp import web

from swarm.service.api import FieldError, LeaderView, Problem

__all__ = ["PROBLEM_TYPE_PREFIX", "ApiError", "problem_response"]

#: ``type`` of a problem document: this prefix and its stable ``code``.
PROBLEM_TYPE_PREFIX = "urn:queenswarm:problem:"


class ApiError(Exception):
    """Raised by a handler to answer with a problem document.

    Args:
        status: HTTP status.
        code: Stable machine-readable code (e.g. ``idempotency-conflict``).
        detail: What happened, for people.
        errors: The offending fields (400).
        leader: Who leads (503 from a standby).
        headers: Extra headers (``Retry-After``, ``WWW-Authenticate``).
    """

    def __init__(
        self,
        status: int,
        code: str,
        detail: str = "",
        *,
        errors: list[FieldError] | None = None,
        leader: LeaderView | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(detail or code)
        self.status = status
        self.code = code
        self.detail = detail
        self.errors = errors or []
        self.leader = leader
        self.headers = headers or {}

    def problem(self, instance: str = "") -> Problem:
        """The problem document."""
        try:
            title = HTTPStatus(self.status).phrase
        except ValueError:
            title = "Error"
        return Problem(
            type=PROBLEM_TYPE_PREFIX + self.code, title=title, status=self.status,
            code=self.code, detail=self.detail, instance=instance, errors=self.errors,
            leader=self.leader,
        )


def problem_response(error: ApiError, *, instance: str = "") -> web.Response:
    """``error`` as an ``application/problem+json`` response."""
    resp = web.Response(
        body=msgspec.json.encode(error.problem(instance)), status=error.status,
        headers=error.headers, content_type="application/problem+json",
    )
    return resp
