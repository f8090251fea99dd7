"""OTLP/HTTP export to a real receiver on 127.0.0.1 that decodes ExportTraceServiceRequest; down, slow and 500."""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from victor_observability import DistributedTracer, OTLPSpanExporter, SpanKind
from victor_observability.tracing.exporters import RetryableExportError

pytestmark = pytest.mark.integration


class Receiver:
    """An OTLP/HTTP traces endpoint: answers per `mode` and keeps every decoded request."""

    def __init__(self) -> None:
        self.mode = "ok"  # ok | error500 | slow | unavailable-once
        self.requests: list[ExportTraceServiceRequest] = []
        self.content_types: list[str] = []
        self.hits = 0
        self.peers: list[tuple[str, int]] = []  # the client address of each request
        self.release = threading.Event()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keeps connections alive, as collectors do

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.hits += 1
                receiver.peers.append(self.client_address)
                receiver.content_types.append(self.headers["Content-Type"])
                if self.path != "/v1/traces":
                    return self._answer(404)
                if receiver.mode == "error500":
                    return self._answer(500)
                if receiver.mode == "slow":
                    receiver.release.wait(5)  # longer than the exporter's timeout; bounded for the test
                if receiver.mode == "unavailable-once":
                    receiver.mode = "ok"
                    return self._answer(503)
                request = ExportTraceServiceRequest()
                request.ParseFromString(body)
                receiver.requests.append(request)
                self._answer(200, ExportTraceServiceResponse().SerializeToString())

            def _answer(self, status: int, body: bytes = b"") -> None:
                self.send_response(status)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.endpoint = f"http://127.0.0.1:{self.server.server_address[1]}/v1/traces"
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def spans(self) -> list[Any]:
        return [
            (rs, ss, span)
            for req in self.requests
            for rs in req.resource_spans
            for ss in rs.scope_spans
            for span in ss.spans
        ]

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


@pytest.fixture
def tracers() -> Iterator[list[DistributedTracer]]:
    made: list[DistributedTracer] = []
    yield made
    for tracer in made:
        tracer.shutdown(timeout=5.0)


def otlp_tracer(tracers: list[DistributedTracer], endpoint: str, **options: Any) -> DistributedTracer:
    exporter = OTLPSpanExporter(endpoint, timeout=options.pop("timeout", 2.0), headers={"x-api-key": "secret"})
    tracer = DistributedTracer("checkout", exporters=[exporter], schedule_delay=0.05, **options)
    tracers.append(tracer)
    return tracer


def value_of(v: AnyValue) -> Any:
    kind = v.WhichOneof("value")
    if kind == "array_value":
        return tuple(value_of(x) for x in v.array_value.values)
    return getattr(v, kind)


def test_spans_reach_a_real_receiver_intact(receiver: Receiver, tracers: list[DistributedTracer]) -> None:
    tracer = otlp_tracer(tracers, receiver.endpoint)
    incoming = tracer.extract_context(
        {"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", "tracestate": "congo=t61"}
    )
    with tracer.start_span("GET /orders", parent=incoming, kind=SpanKind.SERVER) as server:
        server.set_attributes({"http.status_code": 200, "ratio": 0.5, "ok": True, "tags": ["a", "b"]})
        with tracer.start_span("db.query", kind="client") as db:
            db.add_event("rows", {"count": 3})
        with pytest.raises(TimeoutError), tracer.start_span("llm.call"):
            raise TimeoutError("model slow")
    assert tracer.force_flush(timeout=10.0)
    got = {span.name: (rs, ss, span) for rs, ss, span in receiver.spans()}
    assert set(got) == {"GET /orders", "db.query", "llm.call"}
    rs, ss, s = got["GET /orders"]
    resource = {kv.key: value_of(kv.value) for kv in rs.resource.attributes}
    assert resource["service.name"] == "checkout" and ss.scope.name == "checkout"
    assert s.trace_id.hex() == "0af7651916cd43dd8448eb211c80319c" == server.trace_id
    assert s.span_id.hex() == server.span_id and s.parent_span_id.hex() == "b7ad6b7169203331"
    assert s.kind == 2 and s.trace_state == "congo=t61"
    assert s.flags & 0x300 == 0x300, "parent known to be remote"
    assert {kv.key: value_of(kv.value) for kv in s.attributes} == {
        "http.status_code": 200,
        "ratio": 0.5,
        "ok": True,
        "tags": ("a", "b"),
    }
    data = {d.name: d for d in tracer.get_trace(server.trace_id)}
    assert s.start_time_unix_nano == data["GET /orders"].start_time_ns
    assert s.end_time_unix_nano == data["GET /orders"].end_time_ns > s.start_time_unix_nano
    _, _, d = got["db.query"]
    assert d.parent_span_id.hex() == server.span_id and d.kind == 3
    assert d.events[0].name == "rows" and value_of(d.events[0].attributes[0].value) == 3
    assert d.flags & 0x300 == 0x100
    _, _, e = got["llm.call"]
    assert e.status.code == 2 and e.status.message == "TimeoutError: model slow"
    assert e.events[0].name == "exception"
    assert set(receiver.content_types) == {"application/x-protobuf"}
    assert tracer.stats()["exported_spans"] == 3


def test_receiver_down_loses_nothing_for_the_app_and_counts(tracers: list[DistributedTracer]) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    tracer = otlp_tracer(tracers, f"http://127.0.0.1:{port}/v1/traces", max_retries=2)
    for i in range(20):
        with tracer.start_span(f"op-{i}"):
            pass
    assert not tracer.force_flush(timeout=20.0)
    stats = tracer.stats()
    assert len(tracer.finished_spans()) == 20, "the application still has every span"
    assert stats["spans_finished"] == 20 and stats["exported_spans"] == 0
    assert stats["export_failed_spans"] == 20
    assert stats["export_retries"] >= 2


def test_receiver_500_is_counted_not_retried(receiver: Receiver, tracers: list[DistributedTracer]) -> None:
    receiver.mode = "error500"
    tracer = otlp_tracer(tracers, receiver.endpoint, max_retries=3)
    for i in range(7):
        tracer.start_span(f"op-{i}").end()
    assert not tracer.force_flush(timeout=10.0)
    stats = tracer.stats()
    assert len(tracer.finished_spans()) == 7, "the application still has every span"
    assert stats["export_failed_spans"] == 7 and stats["export_retries"] == 0
    assert receiver.hits == 1 and receiver.requests == []


def test_slow_receiver_is_timed_out_and_counted(receiver: Receiver, tracers: list[DistributedTracer]) -> None:
    receiver.mode = "slow"
    tracer = otlp_tracer(tracers, receiver.endpoint, timeout=0.2, max_retries=1)
    for i in range(5):
        tracer.start_span(f"op-{i}").end()
    assert not tracer.force_flush(timeout=20.0)
    stats = tracer.stats()
    assert len(tracer.finished_spans()) == 5, "the application still has every span"
    assert stats["export_failed_spans"] == 5 and stats["export_retries"] == 1
    assert stats["spans_finished"] == 5
    receiver.release.set()


def test_unavailable_receiver_is_retried_until_it_recovers(
    receiver: Receiver, tracers: list[DistributedTracer]
) -> None:
    receiver.mode = "unavailable-once"
    tracer = otlp_tracer(tracers, receiver.endpoint, max_retries=3)
    for i in range(4):
        tracer.start_span(f"op-{i}").end()
    assert tracer.force_flush(timeout=10.0)
    assert sorted(span.name for _, _, span in receiver.spans()) == [f"op-{i}" for i in range(4)]
    stats = tracer.stats()
    assert stats["exported_spans"] == 4 and stats["export_retries"] == 1 and stats["export_failed_spans"] == 0


def test_connection_is_kept_alive_and_a_forked_child_opens_its_own(
    receiver: Receiver, tracers: list[DistributedTracer]
) -> None:
    tracer = otlp_tracer(tracers, receiver.endpoint)
    for name in ("parent-1", "parent-2"):
        tracer.start_span(name).end()
        assert tracer.force_flush(timeout=10.0)
    pid = os.fork()
    if pid == 0:  # the child: export one span on its own, then report through the exit code
        code = 1
        try:
            tracer.start_span("child").end()
            code = 0 if tracer.force_flush(timeout=10.0) and tracer.stats()["exported_spans"] == 1 else 2
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    tracer.start_span("parent-3").end()
    assert tracer.force_flush(timeout=10.0)
    names = [span.name for _, _, span in receiver.spans()]
    assert names == ["parent-1", "parent-2", "child", "parent-3"]
    parent_1, parent_2, child, parent_3 = receiver.peers
    assert parent_1 == parent_2 == parent_3, "one kept-alive connection"
    assert child != parent_1, "the child must not write on the parent's socket"


def test_every_answer_framing_and_a_closed_connection_are_followed(tracers: list[DistributedTracer]) -> None:
    # A collector (or a proxy in front of it) may answer chunked, close after answering, or speak HTTP/1.0; the
    # exporter's own HTTP client (plain http://) must read each answer whole and reconnect when told to close.
    answers = [
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\n0\r\nX-Trailer: 1\r\n\r\n",
        b"HTTP/1.1 202 Accepted\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}",
        b"HTTP/1.0 200 OK\r\nContent-Type: application/x-protobuf\r\n\r\nto the close",
        b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n",
    ]
    listener = socket.create_server(("127.0.0.1", 0))
    requests: list[tuple[int, bytes, bytes]] = []  # (connection number, head, body)

    def serve() -> None:
        for number in range(3):
            conn, _ = listener.accept()
            with conn:
                data = b""
                while answers:
                    while b"\r\n\r\n" not in data:
                        chunk = conn.recv(65536)
                        if not chunk:
                            break
                        data += chunk
                    if not data:
                        break
                    head, _, data = data.partition(b"\r\n\r\n")
                    length = int(next(h for h in head.split(b"\r\n") if h.lower().startswith(b"content-length:"))[15:])
                    while len(data) < length:
                        data += conn.recv(65536)
                    requests.append((number, head, data[:length]))
                    data = data[length:]
                    answer = answers.pop(0)
                    conn.sendall(answer)
                    if b"close" in answer or answer.startswith(b"HTTP/1.0"):
                        break

    server = threading.Thread(target=serve, daemon=True)
    server.start()
    exporter = OTLPSpanExporter(f"http://127.0.0.1:{listener.getsockname()[1]}/v1/traces", headers={"x-api-key": "k"})
    tracer = DistributedTracer("svc", flush_on_exit=False)
    tracers.append(tracer)
    try:
        spans = []
        for name in ("a", "b", "c", "d"):
            with tracer.start_span(name):
                pass
            spans.append(tracer.finished_spans()[-1])
        assert [exporter.export([s]) for s in spans[:3]] == [True, True, True]
        with pytest.raises(RetryableExportError, match="HTTP 503"):
            exporter.export([spans[3]])
    finally:
        exporter.shutdown()
        listener.close()
    server.join(5)
    assert [number for number, _, _ in requests] == [0, 0, 1, 2], "reconnected after close and after HTTP/1.0"
    for (_, head, body), span in zip(requests, spans, strict=True):
        assert head.startswith(b"POST /v1/traces HTTP/1.1\r\n")
        assert b"\r\nx-api-key: k\r\n" in head
        assert b"\r\ncontent-type: application/x-protobuf\r\n" in head
        decoded = ExportTraceServiceRequest.FromString(body)
        assert [sp.name for rs in decoded.resource_spans for ss in rs.scope_spans for sp in ss.spans] == [span.name]


def test_the_two_service_demo_exports_each_service_under_its_own_name(receiver: Receiver, tmp_path: Any) -> None:
    import os
    import re
    import signal
    import subprocess
    import sys
    import time

    import httpx

    env = {**os.environ, "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint.removesuffix("/v1/traces")}
    args = ["demo", "--services", "2", "--port", "0", "--no-load", "--latency-scale", "0.01", "--spans-file", ""]
    proc = subprocess.Popen(
        [sys.executable, "-u", "-m", "victor_observability", *args],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert proc.stdout is not None
        port = None
        deadline = time.monotonic() + 45
        while port is None and time.monotonic() < deadline and proc.poll() is None:
            if found := re.search(r"serving http://127\.0\.0\.1:(\d+)", proc.stdout.readline()):
                port = int(found.group(1))
        assert port is not None, "the demo did not report its port"
        chat = {"provider": "anthropic", "model": "claude-haiku-4-5", "prompt": "hi"}
        with httpx.Client(timeout=10, trust_env=False) as client:
            client.post(f"http://127.0.0.1:{port}/v1/chat", json=chat)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0, proc.stderr.read() if proc.stderr else ""
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()

    def service(rs: Any) -> str:
        return next(value_of(a.value) for a in rs.resource.attributes if a.key == "service.name")  # type: ignore[no-any-return]

    spans = [(service(rs), span) for rs, _ss, span in receiver.spans()]
    assert {name for name, _ in spans} == {"victor-demo-gateway", "victor-demo-backend"}
    assert len({span.trace_id for _, span in spans}) == 1
    (client_span,) = [s for name, s in spans if name == "victor-demo-gateway" and s.kind == s.SPAN_KIND_CLIENT]
    (server_span,) = [s for name, s in spans if name == "victor-demo-backend" and s.kind == s.SPAN_KIND_SERVER]
    assert server_span.parent_span_id == client_span.span_id
