"""The exposition parses back with prometheus-client's parsers and passes promtool; label values round-trip."""

from __future__ import annotations

import shutil
import subprocess
import threading

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client.openmetrics.parser import text_string_to_metric_families as om_parse
from prometheus_client.parser import text_string_to_metric_families as text_parse
from victor_observability import Counter, Gauge, Histogram, ProductionMetricsCollector, Registry


def busy_collector() -> ProductionMetricsCollector:
    c = ProductionMetricsCollector(prefix="victor", collect_system_metrics=True)
    c.record_request("/chat", "anthropic", True, 123.4, labels={"model": "claude-sonnet-4-5"})
    c.record_request("/chat", "openai", False, 2500.0)
    c.record_tool_execution("read_file", True, 45.2)
    c.record_coordinator_execution("planner", False, 12.0)
    c.record_task_completion(True, 0.01)
    c.record_token_usage(100)
    c.record_cache_hit("tool_cache")
    c.record_cache_miss("tool_cache")
    c.set_cache_size("tool_cache", 10)
    c.record_cache_eviction("tool_cache")
    c.record_error("TimeoutError")
    c.record_request("/x", "p", True, float("nan"))
    c.close()
    return c


def as_map(families: object) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value for f in families for s in f.samples}  # type: ignore[attr-defined]


def test_text_and_openmetrics_parse_back_to_the_same_values() -> None:
    c = busy_collector()
    text = as_map(text_parse(c.export_prometheus()))
    om = as_map(om_parse(c.export_prometheus(openmetrics=True)))
    volatile = {
        "victor_uptime_seconds",
        "victor_memory_usage_bytes",
        "victor_cpu_usage_percent",
        "victor_disk_usage_bytes",
    }
    stable = {k: v for k, v in text.items() if k[0] not in volatile}
    assert stable == {k: v for k, v in om.items() if k[0] not in volatile}
    assert text[("victor_request_total", (("endpoint", "/chat"), ("provider", "openai")))] == 1.0
    assert len(stable) > 60


def test_promtool_finds_only_the_ms_unit_lint() -> None:
    promtool = shutil.which("promtool")
    assert promtool, "promtool missing: install Debian's prometheus package (scripts/install-system-deps.sh)"
    text = busy_collector().export_prometheus()
    out = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, text=True, timeout=30)
    problems = [line for line in (out.stdout + out.stderr).splitlines() if line.strip()]
    assert problems, "expected the documented _ms lint"
    for line in problems:
        assert line.endswith("metric names should not contain abbreviated units"), line
        assert line.split()[0].endswith("_ms"), line


label_text = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=40)


@settings(max_examples=150, deadline=None)
@given(values=st.lists(label_text, min_size=1, max_size=5, unique=True), help_text=label_text)
def test_label_values_round_trip_through_both_formats(values: list[str], help_text: str) -> None:
    reg = Registry()
    c = Counter("events_total", help_text, ["v"], registry=reg)
    h = Histogram("sizes", help_text, ["v"], buckets=(1, 10), registry=reg)
    for i, v in enumerate(values):
        c.labels(v).inc(i + 1)
        h.labels(v).observe(i)
    for parse, om in [(text_parse, False), (om_parse, True)]:
        fams = {f.name: f for f in parse(reg.export(openmetrics=om).decode())}
        got = {s.labels["v"]: s.value for s in fams["events"].samples if s.name == "events_total"}
        assert got == {v: float(i + 1) for i, v in enumerate(values)}
        counts = {s.labels["v"]: s.value for s in fams["sizes"].samples if s.name == "sizes_count"}
        assert counts == {v: 1.0 for v in values}
        # The formats cannot carry HELP's leading/trailing whitespace (parsers strip it); all else round-trips.
        assert fams["events"].documentation.strip() == help_text.strip()


def test_hdr_percentiles_within_a_tenth_of_a_percent_of_numpy() -> None:
    rng = np.random.default_rng(20261127)
    latencies = rng.lognormal(mean=4.0, sigma=1.0, size=1_000_000)
    c = ProductionMetricsCollector(prefix="victor", collect_system_metrics=False)
    record = c.record_request
    for ms in latencies.tolist():
        record("/chat", "p", True, ms)
    s = c.get_summary()["requests"]
    for key, q in [("latency_p50", 50), ("latency_p95", 95), ("latency_p99", 99)]:
        exact = float(np.percentile(latencies, q))
        assert abs(s[key] - exact) / exact < 0.001, (key, s[key], exact)
    assert s["total"] == 1_000_000


def test_eight_threads_give_exact_totals() -> None:
    reg = Registry()
    c = Counter("hits_total", "", ["t"], registry=reg)
    g = Gauge("level", "", registry=reg)
    h = Histogram("obs", "", buckets=(0.5,), registry=reg)
    collector = ProductionMetricsCollector(prefix="victor", collect_system_metrics=False)
    n, threads = 100_000, 8
    start = threading.Barrier(threads)

    def work(i: int) -> None:
        child = c.labels("shared")
        start.wait()
        for _ in range(n):
            child.inc()
            g.inc()
            h.observe(1.0)
            collector.record_request("/e", "p", True, 0.25)
        collector.record_cache_hit(f"c{i % 2}")

    ts = [threading.Thread(target=work, args=(i,)) for i in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert c.labels("shared").get() == n * threads
    assert g.get() == n * threads
    assert h.get() == n * threads
    text = as_map(text_parse(reg.export_text()))
    assert text[("obs_sum", ())] == n * threads
    assert text[("obs_bucket", (("le", "+Inf"),))] == n * threads
    s = collector.get_summary()
    assert s["requests"]["total"] == n * threads
    assert s["cache"]["hits"] == threads
    assert (
        as_map(text_parse(collector.export_prometheus()))[
            ("victor_request_latency_ms_sum", (("endpoint", "/e"), ("provider", "p")))
        ]
        == n * threads * 0.25
    )
