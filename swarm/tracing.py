"""W3C trace context across message hops (OpenTelemetry).

Senders stamp ``traceparent``/``tracestate`` from the current span into each
envelope; receivers open their handler span as a child of it, so one trace
follows a task through every agent it touches. Spans are only created once
:func:`enable_tracing` was called (or a tracer provider was installed), so the
hot path costs nothing when tracing is off.

Example:
    >>> from swarm.tracing import current_traceparent
    >>> current_traceparent()
    (None, None)
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from swarm.messages import Envelope

__all__ = ["current_traceparent", "enable_tracing", "handler_span", "tracing_enabled"]

_propagator = TraceContextTextMapPropagator()
_enabled = False


def enable_tracing(provider: Any | None = None) -> None:
    """Turn on span creation, optionally installing a tracer provider."""
    global _enabled
    if provider is not None:
        trace.set_tracer_provider(provider)
    _enabled = True


def tracing_enabled() -> bool:
    """Whether handler spans are created."""
    return _enabled


def current_traceparent() -> tuple[str | None, str | None]:
    """The W3C ``traceparent`` and ``tracestate`` of the current span, if any.

    Returns ``(None, None)`` until :func:`enable_tracing` was called: looking up
    the current span costs about a microsecond per message.
    """
    if not _enabled:
        return None, None
    ctx = trace.get_current_span().get_span_context()
    if not ctx.is_valid:
        return None, None
    carrier: dict[str, str] = {}
    _propagator.inject(carrier)
    return carrier.get("traceparent"), carrier.get("tracestate")


@contextlib.contextmanager
def handler_span(envelope: Envelope, agent_id: str) -> Iterator[None]:
    """Run a handler inside a span that continues the envelope's trace."""
    if not _enabled:
        yield
        return
    carrier = {}
    if envelope.traceparent:
        carrier["traceparent"] = envelope.traceparent
        if envelope.tracestate:
            carrier["tracestate"] = envelope.tracestate
    parent = _propagator.extract(carrier)
    token = otel_context.attach(parent)
    try:
        tracer = trace.get_tracer("queenswarm")
        with tracer.start_as_current_span(
            f"handle {envelope.type}",
            kind=trace.SpanKind.CONSUMER,
            attributes={
                "swarm.task_id": envelope.id,
                "swarm.agent_id": agent_id,
                "swarm.attempt": envelope.attempt,
            },
        ):
            yield
    finally:
        otel_context.detach(token)
