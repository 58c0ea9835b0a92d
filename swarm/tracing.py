"""OpenTelemetry traces: one trace per task, across every process it touches.

A task's trace has a span at submit (made where its envelope is stamped, so a
Queen's submit, an agent's ``ctx.send`` and the HTTP API all have one), and,
in the process that runs it, a dispatch span with the handler's span and the
settlement's span inside. The envelope carries the submit span's W3C
``traceparent``; a handler's own sends stamp theirs from the handler's span,
so child tasks (and memory calls, see :func:`span`) join the same trace.

Spans are only made once :func:`enable_tracing` (or
:func:`configure_tracing`, which reads the standard ``OTEL_*`` variables) ran:
until then every hook is a check of one module flag.

Example:
    >>> from swarm.tracing import current_traceparent, span
    >>> current_traceparent()
    (None, None)
    >>> with span("memory.get", tier="hot"):
    ...     pass
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from swarm.messages import Envelope

__all__ = [
    "configure_tracing",
    "current_traceparent",
    "disable_tracing",
    "dispatch_span",
    "enable_tracing",
    "handler_span",
    "settle_span",
    "span",
    "submit_span",
    "tracing_enabled",
]

_propagator = TraceContextTextMapPropagator()
_enabled = False
_tracer: trace.Tracer = trace.NoOpTracer()
_NAME = "queenswarm"


def enable_tracing(provider: Any | None = None) -> None:
    """Turn on span creation, through ``provider`` (default: the global tracer provider)."""
    global _enabled, _tracer
    _tracer = provider.get_tracer(_NAME) if provider is not None else trace.get_tracer(_NAME)
    _enabled = True


def disable_tracing() -> None:
    """Turn span creation off again (hooks cost one flag check)."""
    global _enabled, _tracer
    _enabled = False
    _tracer = trace.NoOpTracer()


def configure_tracing(environ: Mapping[str, str], *, service_name: str) -> Any | None:
    """Export spans over OTLP/HTTP when ``OTEL_EXPORTER_OTLP_ENDPOINT`` (or the traces one) is set.

    For CLIs, which pass ``os.environ``. The exporter and sampler read the other
    standard variables themselves (``OTEL_EXPORTER_OTLP_HEADERS``,
    ``OTEL_TRACES_SAMPLER``/``_ARG``, ...); ``OTEL_SERVICE_NAME`` overrides
    ``service_name``. With neither endpoint set, or ``OTEL_SDK_DISABLED=true``,
    nothing is installed and tracing stays off.

    Returns:
        The tracer provider (call ``shutdown()`` on exit to flush), or None.
    """
    endpoint = environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or environ.get(
        "OTEL_EXPORTER_OTLP_ENDPOINT"
    )
    if not endpoint or environ.get("OTEL_SDK_DISABLED", "").lower() == "true":
        return None
    # Imported here: a process without an endpoint never loads the SDK's exporter.
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    resource = Resource.create({"service.name": environ.get("OTEL_SERVICE_NAME", service_name)})
    provider = TracerProvider(resource=resource)
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    enable_tracing(provider)
    return provider


def tracing_enabled() -> bool:
    """Whether spans are made."""
    return _enabled


def current_traceparent() -> tuple[str | None, str | None]:
    """The W3C ``traceparent`` and ``tracestate`` of the current span, if any.

    Returns ``(None, None)`` while tracing is off: looking up the current span
    costs about a microsecond per message.
    """
    if not _enabled:
        return None, None
    ctx = trace.get_current_span().get_span_context()
    if not ctx.is_valid:
        return None, None
    carrier: dict[str, str] = {}
    _propagator.inject(carrier)
    return carrier.get("traceparent"), carrier.get("tracestate")


def _parent(envelope: Envelope) -> otel_context.Context:
    carrier = {}
    if envelope.traceparent:
        carrier["traceparent"] = envelope.traceparent
        if envelope.tracestate:
            carrier["tracestate"] = envelope.tracestate
    return _propagator.extract(carrier)


@contextlib.contextmanager
def submit_span(type_name: str, recipient: str, task_id: str) -> Iterator[None]:
    """The span of a task's submission: the envelope stamped inside it carries it."""
    if not _enabled:
        yield
        return
    with _tracer.start_as_current_span(
        f"submit {type_name}",
        kind=trace.SpanKind.PRODUCER,
        attributes={
            "swarm.task_id": task_id,
            "swarm.task_type": type_name,
            "swarm.recipient": recipient,
        },
    ):
        yield


@contextlib.contextmanager
def dispatch_span(envelope: Envelope, agent_id: str) -> Iterator[None]:
    """The span of one delivery in the process running it: a child of the submit span."""
    if not _enabled:
        yield
        return
    token = otel_context.attach(_parent(envelope))
    try:
        with _tracer.start_as_current_span(
            f"dispatch {envelope.type}",
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


@contextlib.contextmanager
def handler_span(envelope: Envelope, agent_id: str) -> Iterator[None]:
    """Run a handler inside a span: a child of the current dispatch span, else of the envelope's.

    The span records a handler's exception and marks itself failed.
    """
    if not _enabled:
        yield
        return
    current = trace.get_current_span().get_span_context()
    token = None if current.is_valid else otel_context.attach(_parent(envelope))
    try:
        with _tracer.start_as_current_span(
            f"handle {envelope.type}",
            attributes={
                "swarm.task_id": envelope.id,
                "swarm.agent_id": agent_id,
                "swarm.attempt": envelope.attempt,
            },
        ):
            yield
    finally:
        if token is not None:
            otel_context.detach(token)


@contextlib.contextmanager
def settle_span(envelope: Envelope, outcome: str) -> Iterator[None]:
    """The span of recording a delivery's outcome (ledger, result note, ack)."""
    if not _enabled:
        yield
        return
    with _tracer.start_as_current_span(
        f"settle {envelope.type}",
        attributes={"swarm.task_id": envelope.id, "swarm.outcome": outcome},
    ):
        yield


@contextlib.contextmanager
def span(name: str, **attributes: str | int | float | bool) -> Iterator[None]:
    """A span of the current trace (e.g. a memory call inside a handler), if tracing is on."""
    if not _enabled:
        yield
        return
    with _tracer.start_as_current_span(name, attributes=attributes):
        yield
