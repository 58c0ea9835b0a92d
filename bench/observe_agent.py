"""``python bench/observe_agent.py VARIANT ARGS...``: ``python -m swarm.agent ARGS`` in one variant.

VARIANT: ``off`` (per-task metrics off), ``metrics`` (the default: on, tracing
off) or ``tracing`` (metrics on, every span sampled into a no-op exporter).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

from swarm import metrics, tracing
from swarm.agent.cli import main


class NoopExporter(SpanExporter):
    """Takes every span and drops it: the cost measured is making and batching them."""

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return SpanExportResult.SUCCESS


def apply(variant: str) -> TracerProvider | None:
    """Set this process up for ``variant``; returns the tracer provider it installed."""
    if variant not in ("off", "metrics", "tracing"):
        raise SystemExit(f"unknown variant {variant!r}")
    metrics.record_task_metrics(variant != "off")
    if variant != "tracing":
        tracing.disable_tracing()
        return None
    provider = TracerProvider()  # the default sampler: every span (parent-based, always on)
    provider.add_span_processor(BatchSpanProcessor(NoopExporter()))
    tracing.enable_tracing(provider)
    return provider


if __name__ == "__main__":
    apply(sys.argv[1])
    raise SystemExit(main(sys.argv[2:]))
