"""ProductionMetricsCollector: every record method's exact counts and labels, summary, JSON, bad input."""

from __future__ import annotations

import json
import math
import statistics
import time
from collections.abc import Iterator

import pytest
from prometheus_client.parser import text_string_to_metric_families
from victor_observability import MetricCategory, ProductionMetricsCollector, create_production_collector


@pytest.fixture
def collector() -> Iterator[ProductionMetricsCollector]:
    c = create_production_collector(collect_system_metrics=False)
    yield c
    c.close()


def values(c: ProductionMetricsCollector) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of the exposition, parsed back by prometheus-client, keyed by name and labels."""
    out = {}
    for fam in text_string_to_metric_families(c.export_prometheus()):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def L(**kw: str) -> tuple[tuple[str, str], ...]:
    return tuple(sorted(kw.items()))


def test_guide_example_runs_as_written() -> None:
    collector = create_production_collector()
    collector.record_request(
        endpoint="/chat", provider="anthropic", success=True, latency_ms=123.4, labels={"model": "claude-sonnet-4-5"}
    )
    collector.record_tool_execution(tool_name="read_file", success=True, duration_ms=45.2)
    collector.record_cache_hit("tool_cache")
    collector.record_cache_miss("tool_cache")
    summary = collector.get_summary()
    assert summary["requests"]["total"] == 1
    assert summary["cache"]["hit_rate"] == 50.0
    assert isinstance(collector.export_prometheus(), str)
    assert isinstance(collector.export_json(), dict)
    collector.close()


def test_record_request_counts_and_labels(collector: ProductionMetricsCollector) -> None:
    for _ in range(3):
        collector.record_request("/chat", "anthropic", True, 120.0, labels={"model": "m1"})
    collector.record_request("/chat", "anthropic", False, 30.0, labels={"model": "m1"})
    collector.record_request("/embed", "openai", True, 5.0)
    v = values(collector)
    chat = L(endpoint="/chat", provider="anthropic", model="m1")
    assert v[("victor_request_total", chat)] == 4
    assert v[("victor_request_success_total", chat)] == 3
    assert v[("victor_request_errors_total", chat)] == 1
    assert v[("victor_request_latency_ms_count", chat)] == 4
    assert v[("victor_request_latency_ms_sum", chat)] == 390.0
    assert v[("victor_request_latency_ms_bucket", (*chat[:1], ("le", "50.0"), *chat[1:]))] == 1
    embed = L(endpoint="/embed", provider="openai")
    assert v[("victor_request_total", embed)] == 1
    assert v[("victor_request_latency_ms_bucket", (*embed[:1], ("le", "10.0"), *embed[1:]))] == 1
    assert v[("victor_error_rate", ())] == 20.0


def test_extra_label_order_does_not_split_series(collector: ProductionMetricsCollector) -> None:
    collector.record_request("/a", "p", True, 1.0, labels={"x": "1", "y": "2"})
    collector.record_request("/a", "p", True, 1.0, labels={"y": "2", "x": "1"})
    assert values(collector)[("victor_request_total", L(endpoint="/a", provider="p", x="1", y="2"))] == 2


def test_record_tool_and_coordinator(collector: ProductionMetricsCollector) -> None:
    collector.record_tool_execution("read_file", True, 45.2)
    collector.record_tool_execution("read_file", False, 12.0, labels={"vertical": "coding"})
    collector.record_coordinator_execution("planner", True, 100.0)
    collector.record_coordinator_execution("planner", False, 300.0)
    collector.increment_tool_active(3)
    collector.decrement_tool_active()
    v = values(collector)
    assert v[("victor_tool_calls_total", L(tool="read_file"))] == 1
    assert v[("victor_tool_errors_total", L(tool="read_file"))] == 0
    assert v[("victor_tool_errors_total", L(tool="read_file", vertical="coding"))] == 1
    assert v[("victor_tool_duration_ms_sum", L(tool="read_file"))] == 45.2
    assert v[("victor_tool_active", ())] == 2
    assert v[("victor_coordinator_invocations_total", L(coordinator="planner"))] == 2
    assert v[("victor_coordinator_errors_total", L(coordinator="planner"))] == 1
    assert v[("victor_coordinator_duration_ms_count", L(coordinator="planner"))] == 2


def test_business_cache_and_errors(collector: ProductionMetricsCollector) -> None:
    collector.record_task_completion(True, cost_usd=0.25)
    collector.record_task_completion(True, 0.5)
    collector.record_task_completion(False)
    collector.record_token_usage(1500)
    collector.record_token_usage(500)
    for _ in range(3):
        collector.record_cache_hit("tool_cache")
    collector.record_cache_miss("tool_cache")
    collector.record_cache_eviction("tool_cache")
    collector.set_cache_size("tool_cache", 42)
    collector.record_error("TimeoutError", "upstream took too long")
    collector.record_error("TimeoutError")
    collector.record_error("ValueError", "bad")
    v = values(collector)
    assert v[("victor_tasks_completed_total", ())] == 2
    assert v[("victor_tasks_failed_total", ())] == 1
    assert v[("victor_total_cost_usd", ())] == 0.75
    assert v[("victor_tokens_used_total", ())] == 2000
    assert v[("victor_cache_hits_total", L(cache="tool_cache"))] == 3
    assert v[("victor_cache_misses_total", L(cache="tool_cache"))] == 1
    assert v[("victor_cache_evictions_total", L(cache="tool_cache"))] == 1
    assert v[("victor_cache_size", L(cache="tool_cache"))] == 42
    assert v[("victor_errors_total", L(type="TimeoutError"))] == 2
    assert v[("victor_errors_total", L(type="ValueError"))] == 1
    assert collector.get_cache_hit_rate() == 75.0
    # one errors family with a type label, never a metric name per error type
    assert "TimeoutError_total" not in collector.export_prometheus()


def test_every_guide_metric_name_is_exported() -> None:
    c = create_production_collector(prefix="acme", collect_system_metrics=True)
    text = c.export_prometheus()
    c.close()
    names = [
        "request_total",
        "request_success_total",
        "request_errors_total",
        "request_latency_ms",
        "active_requests",
        "tool_calls_total",
        "tool_errors_total",
        "tool_duration_ms",
        "tool_active",
        "coordinator_invocations_total",
        "coordinator_errors_total",
        "coordinator_duration_ms",
        "tasks_completed_total",
        "tasks_failed_total",
        "total_cost_usd",
        "tokens_used_total",
        "cache_hits_total",
        "cache_misses_total",
        "cache_size",
        "cache_evictions_total",
        "errors_total",
        "error_rate",
        "memory_usage_bytes",
        "cpu_usage_percent",
        "disk_usage_bytes",
        "open_file_descriptors",
        "uptime_seconds",
    ]
    for n in names:
        assert f"# TYPE acme_{n} " in text, n
    assert "victor_" not in text


def test_summary_shape_and_percentiles(collector: ProductionMetricsCollector) -> None:
    for ms in range(1, 101):
        collector.record_request("/x", "p", ms % 10 != 0, float(ms))
        collector.record_tool_execution("t", True, float(ms))
    s = collector.get_summary()
    assert set(s) >= {"requests", "tools", "cache", "business", "system"}
    r = s["requests"]
    assert (r["total"], r["success"], r["errors"]) == (100, 90, 10)
    assert r["error_rate"] == 10.0
    assert r["latency_p50"] == pytest.approx(50, rel=1e-3)
    assert r["latency_p95"] == pytest.approx(95, rel=1e-3)
    assert r["latency_p99"] == pytest.approx(99, rel=1e-3)
    assert s["tools"]["duration_p95"] == pytest.approx(95, rel=1e-3)
    assert set(s["tools"]) >= {"calls", "errors", "active", "duration_p50", "duration_p95"}
    assert set(s["cache"]) >= {"hits", "misses", "hit_rate", "size"}
    assert set(s["business"]) >= {"tasks_completed", "tasks_failed", "total_cost_usd", "tokens_used"}
    assert s["system"]["memory_bytes"] is None and s["system"]["cpu_percent"] is None


def test_export_json_has_every_series_and_survives_dumps(collector: ProductionMetricsCollector) -> None:
    collector.record_request("/chat", "anthropic", True, 10.0, labels={"model": "m"})
    collector.record_error("E", "msg")
    data = json.loads(json.dumps(collector.export_json(), allow_nan=False))
    assert set(data) >= {"timestamp", "metrics", "summary"}
    by_name = {m["name"]: m for m in data["metrics"]}
    samples = by_name["victor_request"]["samples"]
    assert samples == [
        {
            "name": "victor_request_total",
            "labels": {"endpoint": "/chat", "model": "m", "provider": "anthropic"},
            "value": 1.0,
        }
    ]
    assert by_name["victor_request_latency_ms"]["type"] == "histogram"
    assert data["summary"]["requests"]["total"] == 1


@pytest.mark.parametrize(
    ("bad", "reason"), [(float("nan"), "nan"), (float("inf"), "infinite"), (-5.0, "negative"), ("fast", "not_a_number")]
)
def test_bad_values_are_dropped_and_counted_never_raised(
    collector: ProductionMetricsCollector, bad: object, reason: str
) -> None:
    collector.record_request("/a", "p", True, bad)  # type: ignore[arg-type]
    collector.record_tool_execution("t", True, bad)  # type: ignore[arg-type]
    collector.record_coordinator_execution("c", True, bad)  # type: ignore[arg-type]
    collector.record_task_completion(True, bad)  # type: ignore[arg-type]
    collector.record_token_usage(bad)  # type: ignore[arg-type]
    collector.set_cache_size("c", bad)  # type: ignore[arg-type]
    v = values(collector)
    for metric in [
        "victor_request_latency_ms",
        "victor_tool_duration_ms",
        "victor_coordinator_duration_ms",
        "victor_total_cost_usd",
        "victor_tokens_used_total",
        "victor_cache_size",
    ]:
        assert v[("victor_invalid_samples_total", L(metric=metric, reason=reason))] == 1, metric
    # the events still count; only the bad sample is dropped
    assert v[("victor_request_total", L(endpoint="/a", provider="p"))] == 1
    assert v[("victor_request_latency_ms_count", L(endpoint="/a", provider="p"))] == 0
    assert v[("victor_tasks_completed_total", ())] == 1
    assert v[("victor_tokens_used_total", ())] == 0


def test_bad_extra_labels_are_dropped_and_counted(collector: ProductionMetricsCollector) -> None:
    collector.record_request("/a", "p", True, 1.0, labels={"bad-name": "x", "__x": "y", "endpoint": "z", "ok": 1})
    collector.record_request("/a", "p", True, 1.0, labels="not a dict")  # type: ignore[arg-type]
    v = values(collector)
    assert v[("victor_request_total", L(endpoint="/a", provider="p", ok="1"))] == 1
    assert v[("victor_request_total", L(endpoint="/a", provider="p"))] == 1
    assert v[("victor_invalid_samples_total", L(metric="victor_request_total", reason="invalid_label"))] == 1
    assert v[("victor_invalid_samples_total", L(metric="victor_request_total", reason="invalid_labels"))] == 1


def test_series_cap_on_the_record_path(caplog: pytest.LogCaptureFixture) -> None:
    c = ProductionMetricsCollector("victor", False, series_cap=5)
    for i in range(20):
        c.record_request(f"/scan/{i}", "p", True, 1.0)
        c.record_cache_hit(f"cache{i}")
    v = values(c)
    over = L(endpoint="__overflow__", provider="__overflow__")
    assert v[("victor_request_total", over)] == 15
    assert v[("victor_request_latency_ms_count", over)] == 15
    assert v[("victor_cache_hits_total", L(cache="__overflow__"))] == 15
    assert v[("victor_metric_series_overflow_total", L(metric="victor_request_total"))] == 15
    assert sum(1 for f in text_string_to_metric_families(c.export_prometheus()) if f.name == "victor_request") == 1
    warned = [r.message for r in caplog.records if "series cap" in r.message]
    assert len([m for m in warned if "victor_request_total" in m]) == 1
    assert c.get_summary()["requests"]["total"] == 20


def test_collect_system_metrics_does_not_block() -> None:
    c = create_production_collector(collect_system_metrics=True)
    try:
        timings = []
        for _ in range(20):
            t0 = time.perf_counter()
            sample = c.collect_system_metrics()
            timings.append(time.perf_counter() - t0)
        # The bound: "well under 10 ms" (cpu_percent(interval=0.1) would take 100 ms).
        assert statistics.median(timings) < 0.010
        assert sample["memory_bytes"] and sample["memory_bytes"] > 0
        v = values(c)
        assert v[("victor_memory_usage_bytes", ())] > 0
        assert v[("victor_open_file_descriptors", ())] > 0
        assert v[("victor_disk_usage_bytes", ())] > 0
        assert v[("victor_uptime_seconds", ())] > 0
        assert c.get_summary()["system"]["memory_bytes"] > 0
    finally:
        c.close()


def test_background_sampler_refreshes_and_stops() -> None:
    c = ProductionMetricsCollector(collect_system_metrics=True, system_interval=0.02)
    sampler = c._sampler
    assert sampler is not None and sampler.running
    try:
        deadline = time.monotonic() + 5
        while sampler.runs < 3 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert sampler.runs >= 3
    finally:
        c.close()
    assert not sampler.running
    runs = sampler.runs
    time.sleep(0.1)
    assert sampler.runs == runs


def test_metric_category_enum() -> None:
    assert {m.value for m in MetricCategory} == {
        "request",
        "tool",
        "coordinator",
        "business",
        "system",
        "cache",
        "error",
    }


def test_invalid_prefix_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="invalid metric name"):
        ProductionMetricsCollector("bad-prefix", False)


def test_no_nan_in_summary_when_empty(collector: ProductionMetricsCollector) -> None:
    s = collector.get_summary()
    assert s["requests"]["latency_p50"] is None
    assert s["requests"]["error_rate"] == 0.0
    assert not any(isinstance(x, float) and math.isnan(x) for x in s["requests"].values())
