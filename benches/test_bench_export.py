"""Span export cost: make and export spans with 3 attributes, JSON lines and OTLP/HTTP, beside a null exporter and
the OpenTelemetry SDK (BatchSpanProcessor + its OTLP/HTTP exporter) posting to the same local receiver.

The main thread makes spans and flushes after every 2,048 (a queue's worth, so that nothing is dropped and every
span is exported). The ratios compare process CPU per span (all threads: making, the worker, encoding, sending):
what export takes from the requests a service is serving; best of rounds, the cases interleaved so that load on
the shared machine hits them alike. Wall time per span is printed beside it.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest
from conftest import NOTES, RESULTS, compare
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as SdkOTLPSpanExporter
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from victor_observability import DistributedTracer, JsonLinesSpanExporter, OTLPSpanExporter, SpanData
from victor_observability.tracing import SpanBatch

# Flat out, the main thread outruns any export worker (it holds the GIL) and both queues (ours and the SDK's hold
# 2,048 spans) would drop: spans are made in chunks of one queue, each flushed, so every span is exported.
CHUNK = 2_048
N = 48 * CHUNK
N_SDK = 3 * CHUNK
ROUNDS = 5
ATTRIBUTES = {"http.method": "GET", "http.status_code": 200, "user.id": "user-123"}

compare(
    "make + export, JSON lines file vs a null exporter (>= 0.83 means within 1.2x)",
    "export_jsonl",
    "export_null",
    ">= 0.83",
)
compare(
    "make + export, JSON lines encoded in Python (before) vs a null exporter",
    "export_jsonl_python",
    "export_null",
    "(before)",
)
compare(
    "make + export, OTLP/HTTP vs a null exporter (>= 0.83 means within 1.2x)", "export_otlp", "export_null", ">= 0.83"
)
compare(
    "make + OTLP/HTTP export vs OpenTelemetry SDK BatchSpanProcessor + OTLP/HTTP", "export_otlp", "otel_otlp", ">= 50"
)

# An OTLP/HTTP receiver in its own process (its CPU is not the exporter's): reads each body, answers 200.
RECEIVER = """
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
class H(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_POST(self):
        self.rfile.read(int(self.headers["Content-Length"]))
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()
    def log_message(self, *a):
        pass
server = ThreadingHTTPServer(("127.0.0.1", 0), H)
print(server.server_address[1], flush=True)
server.serve_forever()
"""


class PythonJsonLines:
    """The JSON-lines exporter as it was before encoding moved to Rust (the 'before' of this bench)."""

    def __init__(self, path: Path) -> None:
        self._file = path.open("a", encoding="utf-8")

    def export(self, spans: Sequence[SpanData]) -> bool:
        self._file.write("".join(json.dumps(s.to_dict(), separators=(",", ":"), default=str) + "\n" for s in spans))
        self._file.flush()
        return True

    def shutdown(self) -> None:
        self._file.close()


class NullExporter:
    """The floor: takes each batch and does nothing with it (no SpanData made)."""

    def export(self, spans: object) -> bool:
        return True

    def export_batch(self, batch: SpanBatch) -> bool:
        return True

    def shutdown(self) -> None:
        pass


@pytest.fixture(scope="module")
def endpoint() -> Iterator[str]:
    proc = subprocess.Popen([sys.executable, "-c", RECEIVER], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    port = int(proc.stdout.readline())
    yield f"http://127.0.0.1:{port}/v1/traces"
    proc.terminate()
    proc.wait(timeout=10)
    proc.stdout.close()


def ours(exporter: object) -> tuple[Callable[[int], None], Callable[[], None]]:
    tracer = DistributedTracer("bench", exporters=[exporter], flush_on_exit=False, max_spans=0)  # type: ignore[list-item]

    def run(n: int) -> None:
        start = tracer.start_span
        before = tracer.stats()["exported_spans"]
        for _ in range(n // CHUNK):
            for _ in range(CHUNK):
                with start("GET /items", attributes=ATTRIBUTES):
                    pass
            assert tracer.force_flush(timeout=60.0)
        assert tracer.stats()["exported_spans"] - before == n, "every span exported, none dropped"

    return run, lambda: tracer.shutdown(timeout=10.0)


def sdk(endpoint: str) -> tuple[Callable[[int], None], Callable[[], None]]:
    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(SdkOTLPSpanExporter(endpoint=endpoint)))
    tracer = provider.get_tracer("bench")

    def run(n: int) -> None:
        for _ in range(n // CHUNK):
            for _ in range(CHUNK):
                with tracer.start_as_current_span("GET /items", attributes=ATTRIBUTES):
                    pass
            assert provider.force_flush(60_000)

    return run, provider.shutdown


def test_export_cost(endpoint: str, tmp_path: Path) -> None:
    cases = {
        "export_null": (ours(NullExporter()), N),
        "export_jsonl": (ours(JsonLinesSpanExporter(tmp_path / "spans.jsonl")), N),
        "export_jsonl_python": (ours(PythonJsonLines(tmp_path / "old.jsonl")), N),
        "export_otlp": (ours(OTLPSpanExporter(endpoint, timeout=30.0)), N),
        "otel_otlp": (sdk(endpoint), N_SDK),
    }
    wall = dict.fromkeys(cases, float("inf"))
    cpu = dict.fromkeys(cases, float("inf"))
    try:
        for (run, _), _n in cases.values():
            run(2 * CHUNK)  # warm up: threads, connections
        for _ in range(ROUNDS):
            for key, ((run, _), n) in cases.items():
                t0, c0 = time.perf_counter(), time.process_time()
                run(n)
                wall[key] = min(wall[key], (time.perf_counter() - t0) / n)
                cpu[key] = min(cpu[key], (time.process_time() - c0) / n)
    finally:
        for (_, close), _n in cases.values():
            close()
    # The ratios compare process CPU (every thread's): what export takes from the service. Wall time includes the
    # flushes' polling after each chunk, the same for every case, and is printed beside it.
    RESULTS.update(cpu)
    for key in cases:
        NOTES.append(
            f"export: {key:<19} {wall[key] * 1e6:7.2f} us/span wall, {cpu[key] * 1e6:7.2f} us/span process CPU"
        )
    null = cpu["export_null"]
    NOTES.append(
        f"export: process CPU vs null: JSON lines {cpu['export_jsonl'] / null:.2f}x"
        f" (in Python, before: {cpu['export_jsonl_python'] / null:.2f}x),"
        f" OTLP {cpu['export_otlp'] / null:.2f}x; SDK/ours OTLP {cpu['otel_otlp'] / cpu['export_otlp']:.0f}x"
    )
