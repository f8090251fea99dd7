"""Spans encoded in Rust: JSON lines byte for byte as the Python exporter wrote them, OTLP as opentelemetry-proto."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2
from opentelemetry.proto.common.v1 import common_pb2
from opentelemetry.proto.resource.v1 import resource_pb2
from opentelemetry.proto.trace.v1 import trace_pb2
from victor_observability import (
    ALWAYS_ON,
    ConsoleSpanExporter,
    DistributedTracer,
    InMemorySpanExporter,
    JsonLinesSpanExporter,
    OTLPSpanExporter,
    SpanContext,
    SpanData,
)
from victor_observability._core import __version__
from victor_observability.tracing import BatchSpanExporter, SpanBatch
from victor_observability.tracing.tracer import scoped_core

# --- the reference: the Python encoders the exporters used before export moved to Rust, copied unchanged -------


def old_json_line(s: SpanData, compact: bool = True) -> str:
    if compact:
        return json.dumps(s.to_dict(), separators=(",", ":"), default=str) + "\n"
    return json.dumps(s.to_dict(), default=str) + "\n"


def _any_value(value: Any) -> Any:
    if isinstance(value, bool):
        return common_pb2.AnyValue(bool_value=value)
    if isinstance(value, int):
        return common_pb2.AnyValue(int_value=value)
    if isinstance(value, float):
        return common_pb2.AnyValue(double_value=value)
    if isinstance(value, (tuple, list)):
        return common_pb2.AnyValue(array_value=common_pb2.ArrayValue(values=[_any_value(v) for v in value]))
    return common_pb2.AnyValue(string_value=str(value))


def _key_values(attrs: Mapping[str, Any]) -> list[Any]:
    return [common_pb2.KeyValue(key=k, value=_any_value(v)) for k, v in attrs.items()]


_STATUS = {"unset": 0, "ok": 1, "error": 2}


def _span_pb(s: SpanData, links: Sequence[tuple[SpanContext, dict[str, Any]]]) -> Any:
    flags = s.trace_flags | 0x100 | (0x200 if s.parent_is_remote else 0)
    return trace_pb2.Span(
        trace_id=s.trace_id_bytes,
        span_id=s.span_id_bytes,
        parent_span_id=s.parent_span_id_bytes,
        trace_state=s.tracestate or "",
        flags=flags,
        name=s.name,
        kind=s.kind_index + 1,
        start_time_unix_nano=s.start_time_ns,
        end_time_unix_nano=s.end_time_ns,
        attributes=_key_values(s.attributes),
        dropped_attributes_count=s.dropped_attributes,
        events=[
            trace_pb2.Span.Event(
                time_unix_nano=e["timestamp_ns"],
                name=e["name"],
                attributes=_key_values(e["attributes"]),
                dropped_attributes_count=e.get("dropped_attributes", 0),
            )
            for e in s.events
        ],
        dropped_events_count=s.dropped_events,
        # Links are new with the Rust encoder; built here from the contexts the test linked, as the OTel SDK does.
        links=[
            trace_pb2.Span.Link(
                trace_id=bytes.fromhex(ctx.trace_id),
                span_id=bytes.fromhex(ctx.span_id),
                trace_state=ctx.tracestate or "",
                attributes=_key_values(attrs),
                flags=(1 if ctx.sampled else 0) | 0x100 | (0x200 if ctx.is_remote else 0),
            )
            for ctx, attrs in links
        ],
        status=trace_pb2.Status(code=_STATUS[s.status], message=s.status_message),
    )


def old_otlp(
    spans: Sequence[SpanData],
    links: Mapping[str, Sequence[tuple[SpanContext, dict[str, Any]]]],
    resource_attributes: Mapping[str, Any],
) -> Any:
    by_resource: dict[str, dict[tuple[str, str | None], list[Any]]] = {}
    for s in spans:
        scopes = by_resource.setdefault(s.service_name, {})
        scopes.setdefault((s.scope_name, s.scope_version), []).append(_span_pb(s, links.get(s.span_id, ())))
    request = trace_service_pb2.ExportTraceServiceRequest()
    for service, scopes in by_resource.items():
        attrs = {"service.name": service, "telemetry.sdk.name": "victor-observability"}
        attrs["telemetry.sdk.language"] = "python"
        attrs["telemetry.sdk.version"] = __version__
        attrs.update(resource_attributes)
        resource_spans = request.resource_spans.add()
        resource_spans.resource.CopyFrom(resource_pb2.Resource(attributes=_key_values(attrs)))
        for (scope_name, scope_version), pbs in scopes.items():
            scope_spans = resource_spans.scope_spans.add()
            scope_spans.scope.name = scope_name
            if scope_version:
                scope_spans.scope.version = scope_version
            scope_spans.spans.extend(pbs)
    return request


# --- spans to encode -------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tracer() -> Iterator[DistributedTracer]:
    # Always on: the property test links and parents spans to unsampled contexts, which ParentBased would follow.
    tracer = DistributedTracer("svc-é", max_spans=0, sampler=ALWAYS_ON)
    yield tracer
    tracer.shutdown(timeout=5.0)


def finish(span: Any) -> SpanData:
    span.end()
    data = span.to_span_data()
    assert data is not None
    return data  # type: ignore[no-any-return]


def sample_spans(
    tracer: DistributedTracer,
) -> tuple[list[SpanData], dict[str, list[tuple[SpanContext, dict[str, Any]]]]]:
    remote = SpanContext("0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331", tracestate="congo=t61rcWkgMzE,x=1")
    link_ctx = SpanContext("4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7", sampled=False, is_remote=False)
    server = tracer.start_span("GET /ü/😀", parent=remote, kind="server", attributes={"http.status_code": 200})
    server.set_attributes(
        {
            "s": 'q"\\\n\t\x01\x7fé中😀',
            "b": False,
            "i": -(2**63),
            "big": 2**64,
            "f": 1e16,
            "small": 1e-05,
            "nan": math.nan,
            "inf": -math.inf,
            "sa": ["a", "é", ""],
            "ba": (True, False),
            "ia": [1, -2, 3],
            "fa": [0.1, -0.0, 2.5e-300],
            "empty": [],
        }
    )
    server.add_event("retry", {"attempt": 2, "why": "timeout ⏱"}, timestamp=1_700_000_000_000_000_123)
    server.add_event("plain")
    server.add_link(link_ctx, {"rel": "caused-by", "n": 3})
    server.add_link(remote)
    server.set_status("error", "boom ✗")
    child = tracer.start_span("child", parent=server, kind="client")
    scoped = tracer.start_span("no attributes", parent=False, kind="consumer")
    spans = [finish(child), finish(server), finish(scoped)]
    links = {server.span_id: [(link_ctx, {"rel": "caused-by", "n": 3}), (remote, {})]}
    return spans, links


def test_json_lines_are_byte_for_byte_the_python_encoders(tracer: DistributedTracer) -> None:
    spans, _ = sample_spans(tracer)
    batch = SpanBatch.of(spans)
    assert batch.encode_json_lines() == "".join(old_json_line(s) for s in spans).encode()
    assert batch.encode_json_lines(compact=False) == "".join(old_json_line(s, compact=False) for s in spans).encode()
    assert [json.loads(line)["name"] for line in batch.encode_json_lines().splitlines()] == [s.name for s in spans]


def test_the_exporters_write_the_old_bytes_through_the_pipeline(tmp_path: Path) -> None:
    import io

    path = tmp_path / "spans.jsonl"
    memory, stream = InMemorySpanExporter(), io.StringIO()
    tracer = DistributedTracer("svc", exporters=[JsonLinesSpanExporter(path), memory, ConsoleSpanExporter(stream)])
    try:
        sample_spans(tracer)
        for i in range(700):  # more than one batch
            with tracer.start_span(f"op-{i}", attributes={"i": i, "x": i / 7, "s": "é" * (i % 3)}):
                pass
        assert tracer.force_flush(timeout=10.0)
        spans = memory.get_finished_spans()
        assert len(spans) == 703
        assert path.read_bytes() == "".join(old_json_line(s) for s in spans).encode()
        assert stream.getvalue() == "".join(old_json_line(s, compact=False) for s in spans)
    finally:
        tracer.shutdown(timeout=5.0)


def test_otlp_decodes_to_exactly_the_spans_made(tracer: DistributedTracer) -> None:
    spans, links = sample_spans(tracer)
    spans = [s for s in spans if not any(isinstance(v, float) and math.isnan(v) for v in s.attributes.values())]
    resource = {"deployment.environment": "test", "service.name": "overridden", "ratio": 0.5, "tags": ("a", "b")}
    body = OTLPSpanExporter("http://127.0.0.1:9/v1/traces", resource_attributes=resource).encode(spans)
    got = trace_service_pb2.ExportTraceServiceRequest.FromString(body)
    assert got == old_otlp(spans, links, resource)


def test_otlp_keeps_nan_and_big_ints(tracer: DistributedTracer) -> None:
    spans, _ = sample_spans(tracer)
    got = trace_service_pb2.ExportTraceServiceRequest.FromString(SpanBatch.of(spans).encode_otlp())
    server = got.resource_spans[0].scope_spans[0].spans[1]
    values = {kv.key: kv.value for kv in server.attributes}
    assert math.isnan(values["nan"].double_value)
    assert values["big"].string_value == str(2**64)  # past int64: a string, as the span itself holds it
    assert values["empty"].HasField("array_value") and not values["empty"].array_value.values
    assert server.links[0].flags == 0x100 and server.links[1].flags == 0x301


def test_spans_of_several_services_and_scopes() -> None:
    a, b = DistributedTracer("a", max_spans=0), DistributedTracer("b", max_spans=0)
    try:
        scoped = scoped_core(a, "lib", "1.2")
        spans = [finish(a.start_span("1")), finish(scoped.start_span("2")), finish(b.start_span("3"))]
        spans.append(finish(a.start_span("4")))
        exporter = OTLPSpanExporter("http://127.0.0.1:9/v1/traces")
        got = trace_service_pb2.ExportTraceServiceRequest.FromString(exporter.encode(spans))
        assert [
            (
                rs.resource.attributes[0].value.string_value,
                [(ss.scope.name, s.name) for ss in rs.scope_spans for s in ss.spans],
            )
            for rs in got.resource_spans
        ] == [("a", [("a", "1"), ("lib", "2")]), ("b", [("b", "3")]), ("a", [("a", "4")])]
        with pytest.raises(ValueError, match="one service"):
            SpanBatch.of(spans)
        with pytest.raises(ValueError, match="no spans"):
            SpanBatch.of([])
    finally:
        a.shutdown(timeout=5.0)
        b.shutdown(timeout=5.0)


def test_batch_exporters_get_the_batch_and_the_others_span_data() -> None:
    seen: list[str] = []

    class Bytes:
        def export(self, spans: Sequence[SpanData]) -> bool:
            raise AssertionError("a batch exporter is given the batch")

        def export_batch(self, batch: SpanBatch) -> bool:
            seen.append(type(batch).__name__)
            assert len(batch) == len(batch.spans()) == len(list(batch))
            assert batch[-1].name == batch.spans()[-1].name
            return True

        def shutdown(self) -> None:
            pass

    class Objects:
        def export(self, spans: Sequence[SpanData]) -> bool:
            seen.append(type(spans).__name__ + "/" + type(spans[0]).__name__)
            return True

        def shutdown(self) -> None:
            pass

    assert isinstance(Bytes(), BatchSpanExporter) and not isinstance(Objects(), BatchSpanExporter)
    tracer = DistributedTracer("svc", exporters=[Bytes(), Objects()])
    try:
        with tracer.start_span("op"):
            pass
        assert tracer.force_flush(timeout=10.0)
        assert sorted(seen) == ["SpanBatch", "list/SpanData"]
        assert tracer.stats()["exported_spans"] == 2
    finally:
        tracer.shutdown(timeout=5.0)


# --- property: random attribute types, events, links, non-ASCII ------------------------------------------------

text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=12)
keys = st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=8)
floats = st.floats(allow_nan=False)
scalars = st.one_of(text, st.booleans(), st.integers(-(2**63), 2**63 - 1), floats)
values = st.one_of(
    scalars,
    st.lists(text, max_size=4),
    st.lists(st.booleans(), max_size=4),
    st.lists(st.integers(-(2**63), 2**63 - 1), min_size=1, max_size=4),
    st.lists(floats, min_size=1, max_size=4),
)
attributes = st.dictionaries(keys, values, max_size=5)
contexts = st.builds(
    lambda t, s, sampled, remote, state: SpanContext(f"{t:032x}", f"{s:016x}", sampled, remote, state),
    st.integers(1, 2**128 - 1),
    st.integers(1, 2**64 - 1),
    st.booleans(),
    st.booleans(),
    st.sampled_from([None, "a=1", "vendor@x=y,b=2"]),
)
span_shapes = st.fixed_dictionaries(
    {
        "name": text,
        "kind": st.sampled_from(["internal", "server", "client", "producer", "consumer"]),
        "parent": st.one_of(st.just(False), contexts),
        "attributes": attributes,
        "events": st.lists(st.tuples(text, attributes, st.integers(0, 2**63)), max_size=3),
        "links": st.lists(st.tuples(contexts, attributes), max_size=3),
        "status": st.sampled_from([("unset", None), ("ok", None), ("error", "é ✗")]),
    }
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(shapes=st.lists(span_shapes, min_size=1, max_size=4))
def test_property_otlp_and_json_match_the_python_encoders(
    tracer: DistributedTracer, shapes: list[dict[str, Any]]
) -> None:
    spans: list[SpanData] = []
    links: dict[str, list[tuple[SpanContext, dict[str, Any]]]] = {}
    for shape in shapes:
        span = tracer.start_span(shape["name"], parent=shape["parent"], kind=shape["kind"])
        span.set_attributes(shape["attributes"])
        for name, attrs, ts in shape["events"]:
            span.add_event(name, attrs, timestamp=ts)
        for ctx, attrs in shape["links"]:
            span.add_link(ctx, attrs)
        span.set_status(*shape["status"])
        links[span.span_id] = shape["links"]
        spans.append(finish(span))
    batch = SpanBatch.of(spans)
    got = trace_service_pb2.ExportTraceServiceRequest.FromString(batch.encode_otlp())
    assert got == old_otlp(spans, links, {})
    assert batch.encode_json_lines() == "".join(old_json_line(s) for s in spans).encode()


def test_otlp_export_needs_neither_protobuf_nor_opentelemetry_proto() -> None:
    import subprocess
    import sys

    code = """
import sys
for name in ("google", "google.protobuf", "opentelemetry.proto"):
    sys.modules[name] = None  # importing any of them now raises ImportError
from victor_observability import DistributedTracer, OTLPSpanExporter
tracer = DistributedTracer("svc", max_spans=0)
span = tracer.start_span("op")
span.end()
body = OTLPSpanExporter("http://127.0.0.1:9/v1/traces").encode([span.to_span_data()])
assert body and b"op" in body
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr


def test_floats_of_every_shape_are_written_as_python_repr_writes_them(tracer: DistributedTracer) -> None:
    import random
    import struct

    rng = random.Random(17)
    spans = []
    for _ in range(100):
        values = [struct.unpack("<d", rng.getrandbits(64).to_bytes(8, "little"))[0] for _ in range(100)]
        values += [rng.uniform(-1e6, 1e6), rng.random() / 10 ** rng.randint(0, 30), float(rng.randint(0, 10**17))]
        span = tracer.start_span("floats", attributes={f"f{i}": v for i, v in enumerate(values)})
        spans.append(finish(span))
    assert SpanBatch.of(spans).encode_json_lines() == "".join(old_json_line(s) for s in spans).encode()
