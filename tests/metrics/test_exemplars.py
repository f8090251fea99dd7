"""Exemplars: the current sampled span's ids (or labels given) on the histogram bucket an observation lands in."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator

import prometheus_client
import pytest
from prometheus_client.openmetrics import exposition as om_exposition
from prometheus_client.openmetrics.parser import text_string_to_metric_families as om_parse
from victor_observability import (
    ALWAYS_OFF,
    DistributedTracer,
    Histogram,
    ProductionMetricsCollector,
    Registry,
    create_production_collector,
)

# prometheus-client stamps exemplars with time.time() at observe(); so do we, so only the stamps differ.
STAMP = re.compile(rb"(# \{[^}]*\} \S+) \d+\.\d+")


@pytest.fixture
def no_created() -> Iterator[None]:
    prometheus_client.disable_created_metrics()
    yield
    prometheus_client.enable_created_metrics()


@pytest.fixture
def tracer() -> Iterator[DistributedTracer]:
    t = DistributedTracer("exemplars", flush_on_exit=False)
    yield t
    t.shutdown()


def exemplars(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], tuple[dict[str, str], float]]:
    """Every exemplar prometheus-client's OpenMetrics parser finds: (sample, labels) -> (exemplar labels, value)."""
    return {
        (s.name, tuple(sorted(s.labels.items()))): (s.exemplar.labels, s.exemplar.value)
        for f in om_parse(text)
        for s in f.samples
        if s.exemplar is not None
    }


def observe_both(mod: object, registry: object) -> None:
    h = mod.Histogram("latency_seconds", "Latency.", ["route"], buckets=(0.1, 1.0), registry=registry)  # type: ignore[attr-defined]
    h.labels("/a").observe(0.05, {"trace_id": "0af7651916cd43dd8448eb211c80319c", "span_id": "b7ad6b7169203331"})
    h.labels("/a").observe(0.07, {"trace_id": "aaaa"})  # the latest of the bucket wins
    h.labels("/b").observe(5.0, {"user": 'quo"te\\ new\nline ☃'})
    h.labels("/b").observe(0.5)


@pytest.mark.usefixtures("no_created")
def test_openmetrics_exemplars_are_prometheus_clients_byte_for_byte_but_the_stamp() -> None:
    theirs = prometheus_client.CollectorRegistry()
    observe_both(prometheus_client, theirs)
    ours = Registry()
    observe_both(__import__("victor_observability"), ours)
    mine, expected = ours.export(openmetrics=True), om_exposition.generate_latest(theirs)
    assert b" # {" in mine
    assert STAMP.sub(rb"\1 T", mine) == STAMP.sub(rb"\1 T", expected)
    # The stamp is the observation's wall time, in seconds.
    stamps = [float(m) for m in re.findall(rb"# \{[^}]*\} \S+ (\d+\.\d+)", mine)]
    assert stamps and all(abs(s - time.time()) < 600 for s in stamps)


@pytest.mark.usefixtures("no_created")
def test_text_format_has_no_exemplars_byte_for_byte() -> None:
    theirs = prometheus_client.CollectorRegistry()
    observe_both(prometheus_client, theirs)
    ours = Registry()
    observe_both(__import__("victor_observability"), ours)
    assert ours.export() == prometheus_client.generate_latest(theirs)
    assert b"#" not in b"".join(line for line in ours.export().splitlines() if not line.startswith(b"# "))


def test_the_current_sampled_span_is_the_exemplar_of_every_recorder(tracer: DistributedTracer) -> None:
    c = create_production_collector(collect_system_metrics=False)
    h = Histogram("work_seconds", "Work.", buckets=(1.0,), registry=c.registry)
    with tracer.start_span("op") as span:
        c.record_request("/chat", "anthropic", True, 30.0)
        c.record_tool_execution("read_file", True, 3.0)
        c.record_coordinator_execution("planner", False, 700.0)
        h.observe(0.5)
    c.record_request("/chat", "anthropic", True, 3000.0)  # no span: that bucket has none
    found = exemplars(c.export_prometheus(openmetrics=True))
    ids = {"trace_id": span.trace_id, "span_id": span.span_id}
    assert found == {
        ("victor_request_latency_ms_bucket", (("endpoint", "/chat"), ("le", "50.0"), ("provider", "anthropic"))): (
            ids,
            30.0,
        ),
        ("victor_tool_duration_ms_bucket", (("le", "10.0"), ("tool", "read_file"))): (ids, 3.0),
        ("victor_coordinator_duration_ms_bucket", (("coordinator", "planner"), ("le", "1000.0"))): (ids, 700.0),
        ("work_seconds_bucket", (("le", "1.0"),)): (ids, 0.5),
    }


def test_unsampled_spans_give_no_exemplar() -> None:
    tracer = DistributedTracer("off", sampler=ALWAYS_OFF, flush_on_exit=False)
    c = create_production_collector(collect_system_metrics=False)
    with tracer.start_span("op"):
        c.record_request("/chat", "p", True, 30.0)
    tracer.shutdown()
    assert exemplars(c.export_prometheus(openmetrics=True)) == {}


def test_an_explicit_exemplar_wins_and_a_bad_one_is_dropped_and_counted(tracer: DistributedTracer) -> None:
    c = ProductionMetricsCollector(prefix="victor", collect_system_metrics=False)
    h = Histogram("work_seconds", "Work.", buckets=(1.0,), registry=c.registry)
    with tracer.start_span("op"):
        h.observe(0.5, {"request": "r1"})
        # prometheus-client's rule: at most 128 characters of names and values; the value still counts.
        h.observe(2.0, {"k": "v" * 128})
        h.observe(0.7, {})  # explicitly none: the bucket keeps r1
    found = exemplars(c.export_prometheus(openmetrics=True))
    assert found == {("work_seconds_bucket", (("le", "1.0"),)): ({"request": "r1"}, 0.5)}
    assert h.get() == 3.0
    text = c.export_prometheus()
    assert 'victor_invalid_samples_total{metric="work_seconds",reason="invalid_exemplar"} 1.0' in text
    # 128 characters exactly (counted as characters, not bytes) are fine.
    h.observe(3.0, {"k": "é" * 127})
    assert exemplars(c.export_prometheus(openmetrics=True))[("work_seconds_bucket", (("le", "+Inf"),))][0] == {
        "k": "é" * 127
    }


def test_exemplars_survive_an_invalid_value_elsewhere(tracer: DistributedTracer) -> None:
    c = create_production_collector(collect_system_metrics=False)
    with tracer.start_span("op"):
        c.record_request("/a", "p", True, float("nan"))
    # The sample was dropped, so there is no bucket to carry an exemplar.
    assert exemplars(c.export_prometheus(openmetrics=True)) == {}
