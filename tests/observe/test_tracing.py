"""Traces: one trace per task across processes, child tasks inside it, OTLP export."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass

import pytest
from aiohttp import web
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from swarm import InProcessRuntime, Queen, tracing
from swarm.tracing import configure_tracing, current_traceparent, span
from tests.observe.agents import EchoAgent, ObsEcho, ObsHop
from tests.redis.runtime_support import cleanup, make_runtime, new_prefix, redis_client
from tests.servers import require_redis


@dataclass(frozen=True)
class Span:
    name: str
    trace_id: str
    span_id: str
    parent_id: str
    process: str


@pytest.fixture
def exporter() -> Iterator[InMemorySpanExporter]:
    spans = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(spans))
    tracing.enable_tracing(provider)
    yield spans
    tracing.disable_tracing()
    provider.shutdown()


def _local(spans: InMemorySpanExporter) -> list[Span]:
    out = []
    for s in spans.get_finished_spans():
        ctx = s.get_span_context()
        assert ctx is not None
        out.append(
            Span(
                s.name,
                f"{ctx.trace_id:032x}",
                f"{ctx.span_id:016x}",
                f"{s.parent.span_id:016x}" if s.parent else "",
                "test",
            )
        )
    return out


class OtlpReceiver:
    """An OTLP/HTTP traces endpoint (protobuf), as a collector serves it."""

    def __init__(self) -> None:
        self.spans: list[Span] = []
        self.arrived = asyncio.Event()

    async def handle(self, request: web.Request) -> web.Response:
        assert request.headers["Content-Type"] == "application/x-protobuf"
        msg = ExportTraceServiceRequest()
        msg.ParseFromString(await request.read())
        for rs in msg.resource_spans:
            service = next(
                a.value.string_value for a in rs.resource.attributes if a.key == "service.name"
            )
            for ss in rs.scope_spans:
                for s in ss.spans:
                    self.spans.append(
                        Span(
                            s.name,
                            s.trace_id.hex(),
                            s.span_id.hex(),
                            s.parent_span_id.hex(),
                            service,
                        )
                    )
        self.arrived.set()
        return web.Response(status=200, content_type="application/x-protobuf", body=b"")


@pytest.fixture
async def receiver() -> AsyncIterator[tuple[OtlpReceiver, str]]:
    rx = OtlpReceiver()
    app = web.Application()
    app.router.add_post("/v1/traces", rx.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    yield rx, f"http://127.0.0.1:{runner.addresses[0][1]}"
    await runner.cleanup()


def test_off_by_default_and_without_an_endpoint() -> None:
    assert not tracing.tracing_enabled()
    assert current_traceparent() == (None, None)
    assert configure_tracing({}, service_name="x") is None
    assert (
        configure_tracing(
            {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:1", "OTEL_SDK_DISABLED": "true"},
            service_name="x",
        )
        is None
    )
    assert not tracing.tracing_enabled()


@pytest.mark.integration
async def test_one_trace_per_task_across_processes(
    exporter: InMemorySpanExporter, receiver: tuple[OtlpReceiver, str]
) -> None:
    rx, endpoint = receiver
    redis = await redis_client()
    prefix = new_prefix()
    env = {**os.environ, "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint, "OTEL_BSP_SCHEDULE_DELAY": "50"}
    procs = []
    queen_runtime = make_runtime(redis, prefix)
    try:
        # Two agent processes: the front role hands each task on to the echo role.
        for role in ("tests.observe.agents:FrontAgent", "tests.observe.agents:EchoAgent"):
            procs.append(
                await asyncio.create_subprocess_exec(
                    sys.executable,
                    "-m",
                    "swarm.agent",
                    role,
                    "--redis",
                    require_redis(),
                    "--prefix",
                    prefix,
                    env=env,
                    stdout=asyncio.subprocess.DEVNULL,
                )
            )
        await queen_runtime.start()
        async with asyncio.timeout(60):
            while not {"obs_front", "obs_echo"} <= set(await queen_runtime.directory()):
                await asyncio.sleep(0.05)
        queen = Queen(runtime=queen_runtime)
        handle = await queen.submit(ObsHop(text="hi"), to="obs_front")
        assert await handle.result(timeout=30) == "front:HI"
    finally:
        for proc in procs:
            proc.terminate()  # drains, then flushes its spans
        for proc in procs:
            await asyncio.wait_for(proc.wait(), 60)
        await queen_runtime.stop()
        await cleanup(redis, prefix)
        await redis.aclose()
    spans = _local(exporter) + rx.spans
    by_id = {s.span_id: s for s in spans}
    names = sorted(s.name for s in spans)
    assert names == sorted(
        [
            "submit ObsHop",
            "dispatch ObsHop",
            "handle ObsHop",
            "settle ObsHop",
            "submit ObsEcho",
            "dispatch ObsEcho",
            "handle ObsEcho",
            "settle ObsEcho",
        ]
    ), names
    assert len({s.trace_id for s in spans}) == 1  # one trace for the task and its child

    def chain(name: str) -> list[tuple[str, str]]:
        s = next(s for s in spans if s.name == name)
        out = [(s.name, s.process)]
        while s.parent_id and s.parent_id != "0" * 16:
            s = by_id[s.parent_id]
            out.append((s.name, s.process))
        return out

    front, echo = "queenswarm-agent-obs_front", "queenswarm-agent-obs_echo"
    assert chain("settle ObsEcho") == [
        ("settle ObsEcho", echo),
        ("dispatch ObsEcho", echo),
        ("submit ObsEcho", front),
        ("handle ObsHop", front),
        ("dispatch ObsHop", front),
        ("submit ObsHop", "test"),
    ]
    assert chain("handle ObsEcho") == [
        ("handle ObsEcho", echo),
        ("dispatch ObsEcho", echo),
        ("submit ObsEcho", front),
        ("handle ObsHop", front),
        ("dispatch ObsHop", front),
        ("submit ObsHop", "test"),
    ]
    assert chain("settle ObsHop")[:2] == [("settle ObsHop", front), ("dispatch ObsHop", front)]


async def test_memory_calls_and_in_process_handlers_join_the_trace(
    exporter: InMemorySpanExporter,
) -> None:
    from memory import MemoryCoordinator

    runtime = InProcessRuntime()
    await runtime.start()
    try:
        async with MemoryCoordinator() as mem:
            await runtime.register(EchoAgent())
            with span("outer"):
                await mem.store(namespace="obs.test", content="a finding", author="t")
                assert await runtime.send(ObsEcho(text="y"), sender="test") == "Y"
    finally:
        await runtime.stop()
    spans = _local(exporter)
    outer = next(s for s in spans if s.name == "outer")
    store = next(s for s in spans if s.name == "memory.store")
    assert store.parent_id == outer.span_id
    handle = next(s for s in spans if s.name == "handle ObsEcho")
    submit = next(s for s in spans if s.name == "submit ObsEcho")
    assert handle.parent_id == submit.span_id and submit.parent_id == outer.span_id
    assert {s.trace_id for s in spans} == {outer.trace_id}


async def test_log_lines_inside_a_task_carry_its_trace(exporter: InMemorySpanExporter) -> None:
    import io
    import json
    import logging

    import structlog

    from swarm.logging import configure_logging

    out = io.StringIO()
    configure_logging(level="debug", json=True, stream=out, timestamps=False)
    runtime = InProcessRuntime()
    await runtime.start()
    try:
        await runtime.register(EchoAgent())
        assert await runtime.send(ObsEcho(text="z"), sender="test") == "Z"
    finally:
        await runtime.stop()
        structlog.reset_defaults()
        root = logging.getLogger()
        root.handlers = [h for h in root.handlers if h.get_name() != "swarm"]
    line = next(json.loads(raw) for raw in out.getvalue().splitlines() if '"echoing"' in raw)
    handle = next(s for s in _local(exporter) if s.name == "handle ObsEcho")
    assert line["trace_id"] == handle.trace_id and line["span_id"] == handle.span_id
    assert line["task_id"] and line["level"] == "debug"  # per-task lines are DEBUG
