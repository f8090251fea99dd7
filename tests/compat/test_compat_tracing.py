"""The pure-Python DistributedTracer's public behaviour that ours keeps (only the import line differs)."""

from __future__ import annotations

import pytest
from victor_observability import (
    DistributedTracer,
    SpanKind,
    get_current_tracer,
    get_global_tracer,
    set_global_tracer,
    trace_async_function,
    trace_function,
)


def test_positional_enabled_and_use_opentelemetry() -> None:
    off = DistributedTracer("svc", False, False)
    assert (off.service_name, off.enabled, off.use_opentelemetry) == ("svc", False, False)
    with off.start_span("op") as span:
        span.set_attribute("k", "v")
        span.set_error(ValueError("boom"))  # a disabled tracer's span takes every call and records nothing
    assert off.finished_spans() == []
    assert DistributedTracer("svc").enabled


def test_nested_spans_and_export_trace() -> None:
    tracer = DistributedTracer("victor.agent")
    with tracer.start_span("process_request") as parent, tracer.start_span("call_llm", parent=parent) as child:
        child.set_attribute("model", "m")
    exported = tracer.export_trace(parent.trace_id)
    assert exported["trace_id"] == parent.trace_id and exported["span_count"] == 2
    assert {s.name for s in tracer.get_trace(parent.trace_id)} == {"process_request", "call_llm"}
    tracer.clear_spans()
    assert tracer.get_trace(parent.trace_id) == []


async def test_decorators_take_a_span_kind_second_and_use_the_current_tracer() -> None:
    tracer = DistributedTracer("decorated")
    previous = get_global_tracer()
    set_global_tracer(tracer)
    try:
        assert get_current_tracer() is tracer

        @trace_function("sync_op", SpanKind.CLIENT)
        def sync_op() -> int:
            return 1

        @trace_async_function("async_op", kind=SpanKind.SERVER)
        async def async_op() -> int:
            return 2

        assert sync_op() == 1 and await async_op() == 2
        kinds = {s.name: s.kind for s in tracer.finished_spans()}
        assert kinds == {"sync_op": "client", "async_op": "server"}
        with pytest.raises(ValueError):
            trace_function("x", "sideways")
    finally:
        set_global_tracer(previous)
