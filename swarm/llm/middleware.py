"""The SDK middleware that puts every HTTP attempt through the swarm's rate limiter.

Kept apart from :mod:`swarm.llm.client` because it subclasses
``anthropic.Middleware``: importing the SDK costs seconds, and an offline
swarm never does.
"""

from __future__ import annotations

import time
from datetime import datetime
from typing import TYPE_CHECKING, Any

import anthropic
import structlog

from swarm.llm.client import CALL_ID_HEADER
from swarm.llm.limiter import acquire

if TYPE_CHECKING:
    from swarm.llm.client import Llm

__all__ = ["LimiterMiddleware"]

_log = structlog.get_logger("swarm.llm")


class LimiterMiddleware(anthropic.Middleware):
    """Passes every HTTP attempt of ``/v1/messages`` through the swarm's rate limiter.

    Runs inside the SDK's retry loop, so a retry waits like any call; a 429's
    ``retry-after`` and a ``*-remaining: 0`` header pause the model for everyone.
    A rejected attempt gives its reservation back (the API did not count it).
    """

    def __init__(self, llm: Llm) -> None:
        self._llm = llm

    async def handle_async(self, request: Any, call_next: Any) -> Any:
        body = request.json
        if request.method.lower() != "post" or not request.url.endswith("/messages") or not (
            isinstance(body, dict) and "model" in body
        ):
            return await call_next(request)
        model = body["model"]
        reserved_in = self._llm.limiter_estimate(body)
        reserved_out = int(body.get("max_tokens", 0))
        await acquire(self._llm.limiter, model, reserved_in, reserved_out)
        try:
            response = await call_next(request)
        except BaseException:
            await self._llm.limiter.settle(model, -reserved_in, -reserved_out)
            raise
        await self._observe(model, response.status_code, response.headers)
        if response.status_code != 200:
            await self._llm.limiter.settle(model, -reserved_in, -reserved_out)
        else:
            # The call settles this against the usage the API reports.
            call_id = _header(request.headers, CALL_ID_HEADER)
            if call_id:
                self._llm.held[call_id] = (reserved_in, reserved_out)
        return response

    async def _observe(self, model: str, status: int, headers: Any) -> None:
        wait = 0.0
        if status == 429:
            try:
                wait = float(headers.get("retry-after-ms") or 0) / 1000 or float(
                    headers.get("retry-after") or 0)
            except ValueError:
                wait = 0.0
        for kind in ("requests", "input-tokens", "output-tokens"):
            remaining = headers.get(f"anthropic-ratelimit-{kind}-remaining")
            reset = headers.get(f"anthropic-ratelimit-{kind}-reset")
            limit = headers.get(f"anthropic-ratelimit-{kind}-limit")
            if remaining != "0" or not reset or not limit:
                continue
            try:
                at = datetime.fromisoformat(reset.replace("Z", "+00:00")).timestamp()
                full = at - time.time()
                # The reset is when the bucket is full again; wait for one request's
                # worth (or a twentieth of the token limit), not for all of it.
                unit = 1 if kind == "requests" else int(limit) / 20
                wait = max(wait, full * unit / int(limit))
            except ValueError:
                continue
        if wait > 0:
            _log.info("llm_paused", model=model, seconds=round(wait, 3), status=status)
            await self._llm.limiter.pause(model, wait)


def _header(headers: Any, name: str) -> str:
    for key, value in dict(headers).items():
        if key.lower() == name:
            return str(value)
    return ""
