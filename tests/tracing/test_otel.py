"""The OpenTelemetry API bridge: OpenTelemetry spans and DistributedTracer spans form one tree."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
from opentelemetry import context as otel_context
from opentelemetry import trace as otel_trace
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from victor_observability import ALWAYS_OFF, DistributedTracer, SpanKind, current_span
from victor_observability.tracing.otel import BridgeSpan, VictorTracerProvider, install

# OpenTelemetry lets a process set its global TracerProvider once, so this module installs one tracer for all tests.
TRACER = DistributedTracer("test.otel")
PROVIDER = install(TRACER)


@pytest.fixture(autouse=True)
def clean() -> Iterator[None]:
    TRACER.clear_spans()
    yield
    assert current_span() is None


def tree(trace_id: str) -> dict[str, str | None]:
    spans = TRACER.get_trace(trace_id)
    names = {s.span_id: s.name for s in spans}
    return {s.name: names.get(s.parent_span_id or "") for s in spans}


def test_library_spans_and_tracer_spans_form_one_tree() -> None:
    library = otel_trace.get_tracer("some.instrumented.library", "2.1")
    with TRACER.start_span("request", kind=SpanKind.SERVER) as request:
        with library.start_as_current_span("http.client", kind=otel_trace.SpanKind.CLIENT) as http:
            http.set_attribute("http.url", "https://example.test")
            with TRACER.start_span("parse-response"), library.start_as_current_span("json.decode"):
                pass
        with TRACER.start_span("respond"):
            pass
    assert tree(request.trace_id) == {
        "request": None,
        "http.client": "request",
        "parse-response": "http.client",
        "json.decode": "parse-response",
        "respond": "request",
    }
    spans = {s.name: s for s in TRACER.get_trace(request.trace_id)}
    assert spans["http.client"].kind == "client" and spans["http.client"].attributes == {
        "http.url": "https://example.test"
    }
    assert (spans["http.client"].scope_name, spans["http.client"].scope_version) == ("some.instrumented.library", "2.1")
    assert spans["respond"].scope_name == "test.otel"


def test_get_current_span_sees_the_tracers_span() -> None:
    assert not otel_trace.get_current_span().get_span_context().is_valid
    with TRACER.start_span("mine") as mine:
        seen = otel_trace.get_current_span()
        ctx = seen.get_span_context()
        assert isinstance(seen, BridgeSpan) and seen.victor_span is mine
        assert (format(ctx.trace_id, "032x"), format(ctx.span_id, "016x")) == (mine.trace_id, mine.span_id)
        assert ctx.trace_flags.sampled and seen.is_recording()
    assert not otel_trace.get_current_span().get_span_context().is_valid


def test_opentelemetry_propagator_interoperates() -> None:
    propagator = TraceContextTextMapPropagator()
    with TRACER.start_span("outgoing") as span:
        carrier: dict[str, str] = {}
        propagator.inject(carrier)  # reads the current span through the bridge
    assert carrier["traceparent"] == f"00-{span.trace_id}-{span.span_id}-01"
    incoming = propagator.extract({"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"})
    library = PROVIDER.get_tracer("lib")
    with library.start_as_current_span("handle", context=incoming) as handled, TRACER.start_span("inner") as inner:
        pass
    data = {s.name: s for s in TRACER.get_trace("0af7651916cd43dd8448eb211c80319c")}
    assert data["handle"].parent_span_id == "b7ad6b7169203331" and data["handle"].parent_is_remote
    assert inner.parent_span_id == data["handle"].span_id
    assert handled.get_span_context().trace_id == 0x0AF7651916CD43DD8448EB211C80319C
    # An explicit empty context starts a new trace even inside a span.
    with TRACER.start_span("outer") as outer:
        fresh = library.start_span("fresh", context=otel_context.Context())
    assert fresh.victor_span.parent_span_id is None and fresh.victor_span.trace_id != outer.trace_id


def test_exception_through_the_api_is_recorded_and_propagates() -> None:
    library = otel_trace.get_tracer("lib")
    with pytest.raises(ValueError, match="bad input"):  # noqa: SIM117
        with TRACER.start_span("outer") as outer:
            with library.start_as_current_span("validate"):
                raise ValueError("bad input")
    spans = {s.name: s for s in TRACER.get_trace(outer.trace_id)}
    assert spans["validate"].status == "error" and spans["validate"].status_message == "ValueError: bad input"
    assert spans["validate"].events[0]["name"] == "exception"
    assert spans["outer"].status == "error"


def test_api_span_methods_and_use_span() -> None:
    library = otel_trace.get_tracer("lib")
    span = library.start_span("manual", attributes={"a": 1})
    with otel_trace.use_span(span, end_on_exit=True):
        assert current_span() is span.victor_span
        span.add_event("evt", {"k": "v"})
        span.update_name("renamed")
        span.set_status(otel_trace.Status(otel_trace.StatusCode.OK))
        span.add_link(span.get_span_context())
    data = TRACER.get_trace(span.victor_span.trace_id)[0]
    assert data.name == "renamed" and data.status == "ok" and data.events[0]["name"] == "evt"
    assert data.attributes == {"a": 1}
    assert not span.is_recording()


async def test_asyncio_tasks_through_the_api() -> None:
    library = otel_trace.get_tracer("lib")

    async def job(i: int) -> tuple[str, str | None]:
        with library.start_as_current_span(f"job-{i}") as span:
            await asyncio.sleep(0)
            with TRACER.start_span(f"step-{i}") as step:
                await asyncio.sleep(0)
            return span.victor_span.span_id, step.parent_span_id

    with TRACER.start_span("batch") as batch:
        results = await asyncio.gather(*(job(i) for i in range(10)))
    assert all(job_id == step_parent for job_id, step_parent in results)
    assert all(parent == "batch" for name, parent in tree(batch.trace_id).items() if name.startswith("job-"))


def test_sampling_decisions_apply_to_api_spans() -> None:
    off = VictorTracerProvider(DistributedTracer("off", sampler=ALWAYS_OFF)).get_tracer("lib")
    with off.start_as_current_span("unsampled") as span:
        assert not span.is_recording() and not span.get_span_context().trace_flags.sampled
        assert otel_trace.get_current_span().get_span_context().span_id == span.get_span_context().span_id


def test_links_from_opentelemetry_are_recorded() -> None:
    tracer = DistributedTracer("svc")
    otel = VictorTracerProvider(tracer).get_tracer("lib")
    producer = otel_trace.SpanContext(
        0x4BF92F3577B34DA6A3CE929D0E0E4736, 0x00F067AA0BA902B7, is_remote=True, trace_flags=otel_trace.TraceFlags(1)
    )
    span = otel.start_span("consume", links=[otel_trace.Link(producer, {"messaging.batch": 3})])
    with tracer.start_span("other") as other:
        span.add_link(otel_trace.SpanContext(int(other.trace_id, 16), int(other.span_id, 16), is_remote=False))
    span.add_link(otel_trace.INVALID_SPAN_CONTEXT)  # ignored, as the SDK ignores it
    span.end()
    data = tracer.get_trace(f"{span.get_span_context().trace_id:032x}")[0]
    assert data.links == [
        {
            "trace_id": "4bf92f3577b34da6a3ce929d0e0e4736",
            "span_id": "00f067aa0ba902b7",
            "attributes": {"messaging.batch": 3},
        },
        {"trace_id": other.trace_id, "span_id": other.span_id, "attributes": {}},
    ]
    assert data.to_dict()["links"] == data.links
    tracer.shutdown()
