"""Errors of the model layer, in the one :class:`~swarm.errors.SwarmError` tree.

``anthropic`` errors are translated in one place, :func:`translate`, as httpx
maps httpcore's; no SDK exception reaches a caller::

    SwarmError
    └── LlmError                 the model layer could not do what was asked
        ├── LlmUnavailable       offline: no API key, or ``--llm offline``
        ├── BudgetExceeded       a budget would be exceeded by this call
        ├── RateLimited          the API still said 429 after the SDK's retries
        │                        (also a TransportError)
        ├── LlmOverloaded        529 / 5xx after the SDK's retries (also a TransportError)
        ├── LlmRequestRejected   the API refused the request (4xx): a bug or bad settings
        └── LlmOutputInvalid     the model's output does not fit the expected type

Example:
    >>> from swarm.errors import SwarmError
    >>> issubclass(BudgetExceeded, SwarmError)
    True
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING

from swarm.errors import SwarmError, TransportError

if TYPE_CHECKING:
    import anthropic

__all__ = [
    "BudgetExceeded",
    "LlmError",
    "LlmOutputInvalid",
    "LlmOverloaded",
    "LlmRequestRejected",
    "LlmUnavailable",
    "RateLimited",
    "translate",
]


class LlmError(SwarmError):
    """Base class of the model layer's errors."""


class LlmUnavailable(LlmError):
    """No model is configured (no ``ANTHROPIC_API_KEY``, or ``--llm offline``)."""


class BudgetExceeded(LlmError):
    """The call would take a budget past its limit; it was not made.

    Attributes:
        scope: The budget's scope (``swarm``, ``role:<name>``, ``task``).
        unit: ``usd`` or ``tokens``.
        limit: The budget's limit.
        spent: What was spent (and reserved by calls in flight) when refused.
        amount: The refused call's worst case.
    """

    def __init__(
        self, scope: str, unit: str, limit: float, spent: float, amount: float = 0.0
    ) -> None:
        super().__init__(
            f"LLM budget of {scope} exceeded: {spent:.6g} of {limit:.6g} {unit} used; "
            f"this call's worst case of {amount:.6g} would go past it"
        )
        self.scope, self.unit, self.limit, self.spent = scope, unit, limit, spent
        self.amount = amount


class RateLimited(LlmError, TransportError):
    """The API answered 429 after every retry the SDK made.

    Attributes:
        retry_after: Seconds the API asked to wait, when it said.
    """

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class LlmOverloaded(LlmError, TransportError):
    """The API was overloaded (529), failed (5xx) or unreachable after the SDK's retries."""


class LlmRequestRejected(LlmError):
    """The API refused the request (400, 401, 403, 404, 413): not worth retrying."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


class LlmOutputInvalid(LlmError):
    """The model's output does not validate against the type the caller expects."""


def _retry_after(exc: anthropic.APIStatusError) -> float | None:
    value = exc.response.headers.get("retry-after")
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


@contextlib.contextmanager
def translate() -> Iterator[None]:
    """Map ``anthropic`` exceptions to :class:`LlmError` subclasses (the one mapping point)."""
    import anthropic  # only online code gets here; offline runs never import the SDK

    try:
        yield
    except anthropic.RateLimitError as exc:
        raise RateLimited(f"rate limited by the API: {exc.message}", _retry_after(exc)) from exc
    except anthropic.APIStatusError as exc:
        if exc.status_code >= 500:
            raise LlmOverloaded(f"API error {exc.status_code}: {exc.message}") from exc
        raise LlmRequestRejected(
            f"API refused the request ({exc.status_code}): {exc.message}", exc.status_code
        ) from exc
    except anthropic.APIConnectionError as exc:
        raise LlmOverloaded(f"API unreachable: {exc}") from exc
    except anthropic.AnthropicError as exc:
        raise LlmError(f"model call failed: {exc}") from exc
