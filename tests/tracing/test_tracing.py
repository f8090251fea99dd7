"""DistributedTracer: span parentage (nesting, threads, asyncio, explicit parents), decorator, sampling, ids, buffer."""

from __future__ import annotations

import asyncio
import contextvars
import inspect
import re
import subprocess
import sys
import threading
import types
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from victor_observability import (
    ALWAYS_OFF,
    DistributedTracer,
    NonRecordingSpan,
    ParentBasedSampler,
    Span,
    SpanContext,
    SpanKind,
    StatusCode,
    TraceIdRatioSampler,
    current_span,
    get_global_tracer,
    set_global_tracer,
    trace_async_function,
    trace_function,
)

HEX32 = re.compile(r"^[0-9a-f]{32}$")
HEX16 = re.compile(r"^[0-9a-f]{16}$")


@pytest.fixture
def tracer() -> DistributedTracer:
    return DistributedTracer("test.tracing")


def by_name(tracer: DistributedTracer, trace_id: str) -> dict[str, Any]:
    return {s.name: s for s in tracer.get_trace(trace_id)}


# --- parentage -----------------------------------------------------------------------------------------------------


def test_guide_example_nests_and_records(tracer: DistributedTracer) -> None:
    with tracer.start_span("process_request") as span:
        span.set_attribute("user_id", "123")
        with tracer.start_span("call_llm") as llm:
            pass
        with tracer.start_span("execute_tool") as tool:
            pass
    assert HEX32.match(span.trace_id) and HEX16.match(span.span_id)
    assert span.parent_span_id is None
    assert llm.parent_span_id == span.span_id and tool.parent_span_id == span.span_id
    assert llm.trace_id == tool.trace_id == span.trace_id
    spans = by_name(tracer, span.trace_id)
    assert set(spans) == {"process_request", "call_llm", "execute_tool"}
    assert spans["process_request"].attributes == {"user_id": "123"}
    assert spans["call_llm"].start_time_ns >= spans["process_request"].start_time_ns
    assert spans["call_llm"].end_time_ns <= spans["process_request"].end_time_ns
    assert current_span() is None


def test_explicit_parent_span_as_in_best_practices(tracer: DistributedTracer) -> None:
    with tracer.start_span("process_request") as parent_span:
        parent_span.set_attribute("request_id", "r-1")
        with tracer.start_span("call_llm", parent=parent_span) as child_span:
            child_span.set_attribute("model", "m")
            child_span.set_attribute("tokens", 42)
    other = tracer.start_span("elsewhere")
    late_child = tracer.start_span("late", parent=other)
    assert child_span.parent_span_id == parent_span.span_id
    assert late_child.parent_span_id == other.span_id and late_child.trace_id == other.trace_id
    assert tracer.start_span("fresh", parent=False).parent_span_id is None


def test_explicit_parent_from_extracted_context_continues_trace(tracer: DistributedTracer) -> None:
    headers = {"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", "tracestate": "congo=t61"}
    with tracer.start_span("handle", parent=tracer.extract_context(headers), kind=SpanKind.SERVER) as span:
        out: dict[str, str] = {}
        tracer.inject_context(out)
    assert span.trace_id == "0af7651916cd43dd8448eb211c80319c"
    assert span.parent_span_id == "b7ad6b7169203331"
    assert span.kind == "server"
    assert out["tracestate"] == "congo=t61"
    assert out["traceparent"] == f"00-{span.trace_id}-{span.span_id}-01"
    data = tracer.get_trace(span.trace_id)[0]
    assert data.parent_is_remote and data.tracestate == "congo=t61"


def test_threads_do_not_mix_parents(tracer: DistributedTracer) -> None:
    def work(i: int) -> tuple[str, str | None, str, str]:
        with tracer.start_span(f"outer-{i}") as outer:
            for _ in range(50):
                with tracer.start_span(f"inner-{i}") as inner:
                    assert current_span() is inner
                assert current_span() is outer
            return outer.span_id, outer.parent_span_id, inner.parent_span_id or "", inner.trace_id

    with tracer.start_span("main") as main, ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(work, range(16)))
    for outer_id, outer_parent, inner_parent, _trace in results:
        assert inner_parent == outer_id
        assert outer_parent is None, "a plain thread starts with an empty context"
    # A thread that runs in a copy of the caller's context continues the caller's span.
    with tracer.start_span("caller") as caller:
        ctx = contextvars.copy_context()
    box: list[Span | NonRecordingSpan] = []
    t = threading.Thread(target=lambda: ctx.run(lambda: box.append(tracer.start_span("in-thread"))))
    t.start()
    t.join(5)
    assert box[0].parent_span_id == caller.span_id
    assert main.parent_span_id is None


async def test_asyncio_tasks_keep_their_own_current_span(tracer: DistributedTracer) -> None:
    async def handler(i: int) -> tuple[str, str, str | None]:
        with tracer.start_span(f"request-{i}") as request:
            await asyncio.sleep(0)
            with tracer.start_span(f"db-{i}") as db:
                await asyncio.sleep(0.001 * (i % 3))
                assert current_span() is db
            assert current_span() is request
            return request.span_id, request.trace_id, db.parent_span_id

    with tracer.start_span("server") as server:
        results = await asyncio.gather(*(asyncio.create_task(handler(i)) for i in range(20)))
    for request_id, trace_id, db_parent in results:
        assert db_parent == request_id
        assert trace_id == server.trace_id, "tasks created inside a span inherit it"
    assert len({r[0] for r in results}) == 20


def test_hand_started_span_and_use_span(tracer: DistributedTracer) -> None:
    span = tracer.start_span("request", kind="server", attributes={"http.method": "GET"})
    assert current_span() is None, "start_span alone does not make the span current"
    with tracer.use_span(span):
        assert tracer.current_span() is span
        with tracer.start_span("child") as child:
            pass
    assert current_span() is None
    assert not span.is_ended
    span.set_status(StatusCode.OK)
    with pytest.raises(LookupError), tracer.use_span(span):
        raise LookupError("in the handler")
    assert span.status == "ok" and span.events[0]["name"] == "exception", "recorded; the status set by hand kept"
    span.end()
    span.end()  # idempotent
    span.set_attribute("after", 1)  # ignored once ended
    assert span.is_ended and not span.is_recording()
    assert child.parent_span_id == span.span_id
    data = by_name(tracer, span.trace_id)["request"]
    assert data.attributes == {"http.method": "GET"} and data.status == "ok" and data.kind == "server"
    assert len(tracer.get_trace(span.trace_id)) == 2
    other = tracer.start_span("unset")
    with pytest.raises(LookupError), tracer.use_span(other, end_on_exit=True):
        raise LookupError("boom")
    assert other.is_ended and other.status == "error" and other.status_message == "LookupError: boom"
    quiet = tracer.start_span("quiet")
    with pytest.raises(LookupError), tracer.use_span(quiet, record_exception=False):
        raise LookupError("recorded elsewhere")
    assert quiet.status == "unset" and quiet.events == []


def test_exception_is_recorded_and_propagates_unchanged(tracer: DistributedTracer) -> None:
    error = KeyError("boom")
    with pytest.raises(KeyError) as info, tracer.start_span("failing") as span:
        raise error
    assert info.value is error
    assert span.status == "error" and span.status_message == "KeyError: 'boom'"
    (event,) = span.events
    assert event["name"] == "exception"
    assert event["attributes"]["exception.type"] == "KeyError"
    assert "raise error" in event["attributes"]["exception.stacktrace"]
    assert current_span() is None


def test_status_set_by_hand_survives_the_exception(tracer: DistributedTracer) -> None:
    with pytest.raises(ValueError), tracer.start_span("op") as span:
        span.set_status(StatusCode.ERROR, "upstream said 503")
        raise ValueError("wrapped")
    assert span.status == "error" and span.status_message == "upstream said 503"
    assert span.events[0]["attributes"]["exception.message"] == "wrapped"


def test_set_error_record_exception_and_events(tracer: DistributedTracer) -> None:
    with tracer.start_span("op") as span:
        span.add_event("cache.miss", {"key": "k"})
        span.record_exception(ValueError("soft"), {"retry": True})
        assert span.status == "unset"
        span.set_error(RuntimeError("hard"))
    assert span.status == "error" and span.status_message == "RuntimeError: hard"
    names = [e["name"] for e in span.events]
    assert names == ["cache.miss", "exception", "exception"]
    assert span.events[1]["attributes"]["retry"] is True
    with pytest.raises(ValueError, match="status"):
        span.set_status("bogus")


def test_kind_accepts_enum_and_string_and_rejects_nonsense(tracer: DistributedTracer) -> None:
    for kind in SpanKind:
        assert tracer.start_span("k", kind=kind).kind == kind.value
        assert tracer.start_span("k", kind=kind.value).kind == kind.value
    with pytest.raises(ValueError, match="span kind"):
        tracer.start_span("k", kind="sideways")


# --- attributes and limits -----------------------------------------------------------------------------------------


def test_attribute_values_follow_opentelemetry_rules(tracer: DistributedTracer) -> None:
    class Thing:
        def __str__(self) -> str:
            return "thing"

    with tracer.start_span("attrs") as span:
        span.set_attributes(
            {
                "s": "x",
                "b": True,
                "i": 7,
                "f": 1.5,
                "ls": ["a", "b"],
                "li": (1, 2),
                "lf": [1.0, 2.0],
                "lb": [True, False],
                "big": 2**70,
                "bytes": b"raw",
                "obj": Thing(),
                "empty": [],
            }
        )
        span.set_attribute("none", None)
        span.set_attribute("mixed", [1, "a"])
        span.set_attribute("dict", {"a": 1})
        span.set_attribute(3, "non-str key")
    with tracer.start_span("mapping", attributes=types.MappingProxyType({"m": 1})) as mapped:
        mapped.set_attributes(types.MappingProxyType({"n": 2}))
    assert mapped.attributes == {"m": 1, "n": 2}
    with pytest.raises(TypeError, match="mapping"):
        tracer.start_span("bad", attributes=[("a", 1)])  # type: ignore[arg-type]
    attrs = span.attributes
    assert attrs["s"] == "x" and attrs["b"] is True and attrs["i"] == 7 and attrs["f"] == 1.5
    assert attrs["ls"] == ("a", "b") and attrs["li"] == (1, 2) and attrs["lf"] == (1.0, 2.0)
    assert attrs["lb"] == (True, False)
    assert attrs["big"] == str(2**70) and attrs["bytes"] == "raw" and attrs["obj"] == "thing"
    assert attrs["empty"] == ()
    assert not {"none", "mixed", "dict"} & set(attrs)
    assert tracer.stats()["invalid_attributes"] == 4


def test_per_span_limits_bound_memory() -> None:
    tracer = DistributedTracer("limits", max_attributes=4, max_events=2, max_value_len=8)
    with tracer.start_span("big") as span:
        for i in range(10):
            span.set_attribute(f"k{i}", i)
            span.add_event(f"e{i}")
        span.set_attribute("k0", "a" * 100)
    data = span.to_span_data()
    assert data is not None
    assert len(data.attributes) == 4 and data.dropped_attributes == 6
    assert len(data.events) == 2 and data.dropped_events == 8
    assert data.attributes["k0"] == "a" * 8


# --- decorator -----------------------------------------------------------------------------------------------------


def test_trace_function_sync_keeps_signature_and_records(tracer: DistributedTracer) -> None:
    @trace_function("my_function", attributes={"component": "demo"}, tracer=tracer)
    def my_function(arg1: int, arg2: int = 2) -> int:
        """Adds."""
        assert current_span() is not None
        return arg1 + arg2

    @trace_function(tracer=tracer)
    def failing() -> None:
        raise ValueError("nope")

    assert my_function(1, arg2=5) == 6
    assert my_function.__name__ == "my_function" and my_function.__doc__ == "Adds."
    assert str(inspect.signature(my_function)) == "(arg1: 'int', arg2: 'int' = 2) -> 'int'"
    with pytest.raises(ValueError, match="nope"):
        failing()
    spans = {s.name: s for s in tracer.finished_spans()}
    assert spans["my_function"].attributes == {"component": "demo"}
    failed = spans["test_trace_function_sync_keeps_signature_and_records.<locals>.failing"]
    assert failed.status == "error" and failed.events[0]["attributes"]["exception.type"] == "ValueError"


async def test_trace_function_async_detected_and_records(tracer: DistributedTracer) -> None:
    @trace_function("fetch", tracer=tracer)
    async def fetch(x: int) -> int:
        await asyncio.sleep(0)
        inner = current_span()
        assert inner is not None and inner.name == "fetch"
        return x * 2

    @trace_async_function(tracer=tracer)
    async def broken() -> None:
        await asyncio.sleep(0)
        raise RuntimeError("async boom")

    assert inspect.iscoroutinefunction(fetch) and inspect.iscoroutinefunction(broken)
    with tracer.start_span("parent") as parent:
        assert await fetch(21) == 42
        with pytest.raises(RuntimeError, match="async boom"):
            await broken()
    spans = by_name(tracer, parent.trace_id)
    assert spans["fetch"].parent_span_id == parent.span_id
    assert spans["test_trace_function_async_detected_and_records.<locals>.broken"].status == "error"


def test_bare_decorator_and_global_tracer() -> None:
    tracer = DistributedTracer("global.test")
    previous = get_global_tracer()
    set_global_tracer(tracer)
    try:

        @trace_function
        def plain() -> str:
            return "ok"

        assert plain() == "ok"
        assert get_global_tracer() is tracer
        assert [s.name for s in tracer.finished_spans()] == [plain.__qualname__]
    finally:
        set_global_tracer(previous)
    with pytest.raises(ValueError, match="DistributedTracer"):
        set_global_tracer("nope")  # type: ignore[arg-type]


# --- sampling ------------------------------------------------------------------------------------------------------


def test_ratio_sampling_is_close_over_100k_roots_and_deterministic() -> None:
    tracer = DistributedTracer("sampled", sampler=TraceIdRatioSampler(0.1), max_spans=0)
    kept = 0
    for _ in range(100_000):
        span = tracer.start_span("root")
        kept += span.sampled
        span.end()
    assert 9_400 <= kept <= 10_600, kept
    sampler = TraceIdRatioSampler(0.1)
    other_service = TraceIdRatioSampler(0.1)
    for _ in range(1000):
        span = tracer.start_span("again")
        assert sampler.should_sample(span.trace_id) == other_service.should_sample(span.trace_id) == span.sampled
    # The OpenTelemetry rule on the low 64 bits: below ratio * 2**64 keeps.
    assert sampler.should_sample("ffffffffffffffff0000000000000001")
    assert not sampler.should_sample("0000000000000000ffffffffffffffff")
    with pytest.raises(ValueError, match="ratio"):
        TraceIdRatioSampler(1.5)


def test_unsampled_span_records_nothing_but_propagates() -> None:
    tracer = DistributedTracer("off", sampler=ALWAYS_OFF)
    with tracer.start_span("root") as root:
        assert isinstance(root, NonRecordingSpan) and not root.is_recording()
        root.set_attribute("ignored", 1)
        root.add_event("ignored")
        with tracer.start_span("child") as child:
            headers = tracer.inject_context({})
        assert current_span() is root
    assert child.trace_id == root.trace_id
    assert headers["traceparent"].startswith(f"00-{root.trace_id}-") and headers["traceparent"].endswith(
        "-02"
    )  # random, not sampled
    assert tracer.finished_spans() == []
    assert tracer.stats()["spans_unsampled"] == 2 and tracer.stats()["spans_finished"] == 0
    assert current_span() is None
    with pytest.raises(ZeroDivisionError), tracer.start_span("raises"):
        1 / 0  # noqa: B018


def test_parent_based_follows_remote_and_local_decisions() -> None:
    tracer = DistributedTracer("pb", sampler=ParentBasedSampler(ALWAYS_OFF))
    sampled = SpanContext("0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331", sampled=True)
    unsampled = SpanContext("0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331", sampled=False)
    with tracer.start_span("from-sampled", parent=sampled) as a, tracer.start_span("local-child") as b:
        pass
    assert isinstance(a, Span) and isinstance(b, Span) and b.parent_span_id == a.span_id
    assert isinstance(tracer.start_span("from-unsampled", parent=unsampled), NonRecordingSpan)
    assert isinstance(tracer.start_span("root"), NonRecordingSpan)


def test_custom_python_sampler_and_broken_sampler() -> None:
    class ByName:
        def should_sample(self, trace_id: str, parent_sampled: bool | None, name: str) -> bool:
            return name.startswith("keep")

    tracer = DistributedTracer("custom", sampler=ByName())
    assert tracer.start_span("keep-me").sampled and not tracer.start_span("drop-me").sampled

    class Broken:
        def should_sample(self, trace_id: str, parent_sampled: bool | None, name: str) -> bool:
            raise RuntimeError("sampler bug")

    broken = DistributedTracer("broken", sampler=Broken())
    assert not broken.start_span("x").sampled
    assert broken.stats()["sampler_errors"] == 1
    with pytest.raises(ValueError, match="sampler"):
        DistributedTracer("bad", sampler=42)  # type: ignore[arg-type]


# --- ids -----------------------------------------------------------------------------------------------------------

_ID_SCRIPT = """
import os, random, sys, warnings
random.seed(1234)
from victor_observability import DistributedTracer
t = DistributedTracer("fork")
ids = [t.start_span("a").trace_id]
warnings.simplefilter("ignore", DeprecationWarning)
r, w = os.pipe()
pid = os.fork()
if pid == 0:
    random.seed(1234)
    os.write(w, t.start_span("child").trace_id.encode())
    os._exit(0)
os.waitpid(pid, 0)
child = os.read(r, 64).decode()
print(ids[0], child, t.start_span("parent").trace_id)
"""


def test_ids_unique_across_processes_random_seed_and_fork() -> None:
    runs = [
        subprocess.run([sys.executable, "-c", _ID_SCRIPT], capture_output=True, text=True, timeout=60, check=True)
        for _ in range(2)
    ]
    first, second = (r.stdout.split() for r in runs)
    assert len(set(first + second)) == 6, (first, second)
    assert all(HEX32.match(i) for i in first + second)


def test_ids_are_never_zero_and_unique(tracer: DistributedTracer) -> None:
    seen = set()
    for _ in range(5000):
        span = tracer.start_span("x", parent=False)
        assert span.trace_id != "0" * 32 and span.span_id != "0" * 16
        seen.add(span.trace_id)
    assert len(seen) == 5000


# --- buffer, export_trace, context helpers -------------------------------------------------------------------------


def test_buffer_is_bounded_and_counts_evictions() -> None:
    tracer = DistributedTracer("bounded", max_spans=10)
    for _ in range(25):
        with tracer.start_span("s"):
            pass
    assert len(tracer.finished_spans()) == 10
    assert tracer.stats()["spans_evicted"] == 15
    tracer.clear_spans()
    assert tracer.finished_spans() == []


def test_export_trace_and_context_helpers(tracer: DistributedTracer) -> None:
    assert tracer.current_context() is None and tracer.get_trace_context() == {}
    with tracer.start_span("root") as root:
        root.set_baggage_item("tenant", "acme")
        with tracer.start_span("leaf") as leaf:
            ctx = tracer.current_context()
            info = tracer.get_trace_context()
    assert ctx is not None and ctx.span_id == leaf.span_id and not ctx.is_remote
    assert info["trace_id"] == root.trace_id and info["span_id"] == leaf.span_id
    assert info["traceparent"] == f"00-{root.trace_id}-{leaf.span_id}-03"  # sampled, random
    assert info["baggage"] == "tenant=acme"
    exported = tracer.export_trace(root.trace_id)
    assert exported["span_count"] == 2 and exported["service_name"] == "test.tracing"
    assert [s["name"] for s in exported["spans"]] == ["root", "leaf"]
    assert exported["spans"][1]["parent_span_id"] == root.span_id
    assert tracer.export_trace("nonsense")["span_count"] == 0


def test_definition_errors_name_the_tracer() -> None:
    with pytest.raises(ValueError, match="service_name"):
        DistributedTracer("")
    with pytest.raises(ValueError, match="max_spans"):
        DistributedTracer("svc", max_spans=-1)
    with pytest.raises(TypeError, match="parent"):
        DistributedTracer("svc").start_span("x", parent="not a span")  # type: ignore[arg-type]
