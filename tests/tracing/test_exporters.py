"""Span export: in-memory, JSON lines, console, the bounded retrying worker, atexit flush, tracer metrics."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
from victor_observability import (
    ConsoleSpanExporter,
    DistributedTracer,
    InMemorySpanExporter,
    JsonLinesSpanExporter,
    OTLPSpanExporter,
    SpanData,
    SpanExporter,
)
from victor_observability.metrics import Registry


@pytest.fixture
def tracers() -> Iterator[list[DistributedTracer]]:
    made: list[DistributedTracer] = []
    yield made
    for tracer in made:
        tracer.shutdown(timeout=5.0)


def make(tracers: list[DistributedTracer], *exporters: SpanExporter, **options: object) -> DistributedTracer:
    tracer = DistributedTracer("test.export", exporters=exporters, schedule_delay=0.05, **options)  # type: ignore[arg-type]
    tracers.append(tracer)
    return tracer


def run_spans(tracer: DistributedTracer, n: int) -> None:
    for i in range(n):
        with tracer.start_span(f"span-{i}") as span:
            span.set_attribute("i", i)


def test_in_memory_exporter_receives_every_span(tracers: list[DistributedTracer]) -> None:
    memory = InMemorySpanExporter()
    assert isinstance(memory, SpanExporter)
    tracer = make(tracers, memory)
    run_spans(tracer, 1200)
    assert tracer.force_flush(timeout=10.0)
    spans = memory.get_finished_spans()
    assert [s.name for s in spans] == [f"span-{i}" for i in range(1200)]
    assert tracer.stats()["exported_spans"] == 1200
    memory.clear()
    assert memory.get_finished_spans() == []


def test_json_lines_and_console_exporters(tracers: list[DistributedTracer], tmp_path: Path) -> None:
    path = tmp_path / "nested" / "spans.jsonl"
    stream = io.StringIO()
    tracer = make(tracers, JsonLinesSpanExporter(path), ConsoleSpanExporter(stream))
    with (
        tracer.start_span("parent", kind="server") as parent,
        tracer.start_span("child", attributes={"n": 1, "tags": ["a", "b"]}) as child,
    ):
        child.add_event("step", {"ok": True})
    assert tracer.shutdown(timeout=10.0)
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    assert [r["name"] for r in rows] == ["child", "parent"]
    assert rows[0]["parent_span_id"] == parent.span_id and rows[0]["trace_id"] == parent.trace_id
    assert rows[0]["attributes"] == {"n": 1, "tags": ["a", "b"]}
    assert rows[0]["events"][0]["name"] == "step" and rows[0]["events"][0]["attributes"] == {"ok": True}
    assert rows[1]["kind"] == "server" and rows[1]["service_name"] == "test.export"
    assert [json.loads(line)["span_id"] for line in stream.getvalue().splitlines()] == [child.span_id, parent.span_id]


class Flaky:
    """Raises `failures` times, then succeeds."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.calls = 0
        self.received: list[SpanData] = []

    def export(self, spans: Sequence[SpanData]) -> bool:
        self.calls += 1
        if self.calls <= self.failures:
            raise ConnectionError("collector unavailable")
        self.received.extend(spans)
        return True

    def shutdown(self) -> None:
        pass


def test_failing_exporter_is_retried_with_backoff_then_counted(tracers: list[DistributedTracer]) -> None:
    recovers = Flaky(failures=2)
    never = Flaky(failures=10**9)
    tracer = make(tracers, recovers, never, max_retries=3)
    run_spans(tracer, 10)
    assert not tracer.force_flush(timeout=10.0)  # one exporter never got them out
    assert len(recovers.received) == 10
    per = tracer._pipeline.exporter_stats()
    assert per[0]["exported"] == 10 and per[0]["retries"] == 2
    assert per[1]["failed"] == 10 and per[1]["retries"] == 3 and never.calls == 4
    stats = tracer.stats()
    assert stats["export_failed_spans"] == 10 and stats["exported_spans"] == 10


def test_exporter_saying_false_is_not_retried(tracers: list[DistributedTracer]) -> None:
    class Refuses:
        calls = 0

        def export(self, spans: Sequence[SpanData]) -> bool:
            self.calls += 1
            return False

        def shutdown(self) -> None:
            pass

    refuses = Refuses()
    tracer = make(tracers, refuses, max_retries=3)
    run_spans(tracer, 5)
    assert not tracer.force_flush(timeout=10.0)  # nothing went out
    assert refuses.calls == 1 and tracer.stats()["export_failed_spans"] == 5


def test_hung_exporter_never_blocks_the_application(tracers: list[DistributedTracer]) -> None:
    release = threading.Event()

    class Hangs:
        def export(self, spans: Sequence[SpanData]) -> bool:
            release.wait(30)
            return True

        def shutdown(self) -> None:
            pass

    tracer = make(tracers, Hangs(), export_timeout=0.1, max_retries=1, max_queue_size=50, max_export_batch_size=10)
    try:
        run_spans(tracer, 2000)  # returns although the exporter is stuck
        assert not tracer.force_flush(timeout=0.5) or tracer.stats()["export_timeouts"] > 0
        tracer.shutdown(timeout=1.0)
        # Every span is accounted for once the batch in flight has timed out (bounded wait, no timing assertion).
        for _ in range(200):
            stats = tracer.stats()
            lost = stats["queue_dropped"] + stats["export_dropped_spans"] + stats["export_failed_spans"]
            if lost + stats["exported_spans"] == 2000:
                break
            threading.Event().wait(0.05)
        assert lost + stats["exported_spans"] == 2000, stats
        assert stats["spans_finished"] == 2000
        assert stats["export_timeouts"] >= 1
        assert stats["queue_dropped"] > 0, "the bounded queue overflowed instead of growing"
    finally:
        release.set()


def test_shutdown_is_idempotent_and_final(tracers: list[DistributedTracer]) -> None:
    memory = InMemorySpanExporter()
    tracer = make(tracers, memory)
    run_spans(tracer, 3)
    assert tracer.shutdown() and tracer.shutdown()
    assert len(memory.get_finished_spans()) == 3
    with pytest.raises(ValueError, match="shutdown"):
        tracer.add_exporter(InMemorySpanExporter())
    run_spans(tracer, 2)  # still fine, just not exported
    assert len(memory.get_finished_spans()) == 3
    with pytest.raises(ValueError, match="export"):
        tracer.add_exporter(object())  # type: ignore[arg-type]


def test_atexit_flushes_by_default(tmp_path: Path) -> None:
    path = tmp_path / "exit.jsonl"
    script = (
        "from victor_observability import DistributedTracer, JsonLinesSpanExporter\n"
        f"t = DistributedTracer('exit', exporters=[JsonLinesSpanExporter({str(path)!r})], schedule_delay=60)\n"
        "for i in range(5):\n"
        "    t.start_span(f's{i}').end()\n"
    )
    subprocess.run([sys.executable, "-c", script], check=True, timeout=60)
    assert [json.loads(line)["name"] for line in path.read_text().splitlines()] == [f"s{i}" for i in range(5)]


def test_tracer_metrics_on_a_registry(tracers: list[DistributedTracer]) -> None:
    registry = Registry(prefix="victor")
    memory = InMemorySpanExporter()
    tracer = DistributedTracer("metered", exporters=[memory], registry=registry, schedule_delay=0.05)
    tracers.append(tracer)
    run_spans(tracer, 4)
    assert tracer.force_flush(timeout=10.0)
    text = registry.export_text()
    assert 'victor_tracing_events_total{event="spans_started",service="metered"} 4.0' in text
    assert 'victor_tracing_events_total{event="exported_spans",service="metered"} 4.0' in text


def test_otlp_endpoint_from_standard_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", raising=False)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318/")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_HEADERS", "authorization=Bearer%20secret,x-tenant=a")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TIMEOUT", "2500")
    exporter = OTLPSpanExporter()
    assert exporter.endpoint == "http://collector:4318/v1/traces" and exporter.timeout == 2.5
    assert "secret" not in repr(exporter)
    exporter.shutdown()
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://traces:9999/custom")
    exporter = OTLPSpanExporter()
    assert exporter.endpoint == "http://traces:9999/custom"
    exporter.shutdown()
    assert OTLPSpanExporter("http://explicit:1/v1/traces").endpoint == "http://explicit:1/v1/traces"
    with pytest.raises(ValueError, match="endpoint"):
        OTLPSpanExporter("collector:4318")


def test_export_keeps_working_in_a_forked_child(tmp_path: Path) -> None:
    path = tmp_path / "fork.jsonl"
    script = (
        "import os, warnings\n"
        "from victor_observability import DistributedTracer, JsonLinesSpanExporter\n"
        f"t = DistributedTracer('fork', exporters=[JsonLinesSpanExporter({str(path)!r})], schedule_delay=0.05)\n"
        "t.start_span('before-fork').end()\n"
        "assert t.force_flush(10)\n"
        "warnings.simplefilter('ignore', DeprecationWarning)\n"
        "pid = os.fork()\n"
        "if pid == 0:\n"
        "    t.start_span('in-child').end()\n"
        "    os._exit(0 if t.force_flush(10) else 1)\n"
        "_, status = os.waitpid(pid, 0)\n"
        "assert os.waitstatus_to_exitcode(status) == 0\n"
        "t.shutdown()\n"
    )
    subprocess.run([sys.executable, "-c", script], check=True, timeout=60)
    names = [json.loads(line)["name"] for line in path.read_text().splitlines()]
    assert names == ["before-fork", "in-child"]


_APPENDER = """
import sys
from victor_observability import DistributedTracer, JsonLinesSpanExporter
exporter = JsonLinesSpanExporter(sys.argv[1])
tracer = DistributedTracer(sys.argv[2], flush_on_exit=False)
for _ in range(300):
    with tracer.start_span("op", attributes={"pad": "x" * 700}):
        pass
batch = tracer.finished_spans()
for _ in range(10):
    exporter.export(batch)
exporter.shutdown()
"""


def test_processes_appending_to_one_json_lines_file_never_split_a_line(tmp_path: Path) -> None:
    # The demo's services share one span file: a batch goes out in one write() on an O_APPEND file (the text
    # layer hands a large batch straight down, a small one at the flush), so processes never cut into each
    # other's lines.
    path = tmp_path / "spans.jsonl"
    procs = [
        subprocess.Popen([sys.executable, "-c", _APPENDER, str(path), f"service-{i}"], stderr=subprocess.PIPE)
        for i in range(3)
    ]
    try:
        for proc in procs:
            assert proc.wait(timeout=60) == 0, proc.stderr.read() if proc.stderr else ""
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=10)
            if proc.stderr is not None:
                proc.stderr.close()
    lines = path.read_text().splitlines()
    assert len(lines) == 3 * 300 * 10
    services = [json.loads(line)["service_name"] for line in lines]
    assert {s: services.count(s) for s in set(services)} == {f"service-{i}": 3000 for i in range(3)}
