"""The pure-Python ProductionMetricsCollector's public behaviour, case by case (only the import line differs)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from victor_observability import MetricCategory, MetricLabel, ProductionMetricsCollector, create_production_collector


@pytest.fixture
def collector() -> Iterator[ProductionMetricsCollector]:
    # The reference's own fixture shape: a collector without system sampling, its registry cleared afterwards.
    c = ProductionMetricsCollector(collect_system_metrics=False)
    yield c
    c._registry.clear()


def test_private_aliases_of_the_reference(collector: ProductionMetricsCollector) -> None:
    assert collector._prefix == "victor"
    assert collector._registry is collector.registry


def test_reference_parameter_order() -> None:
    c = ProductionMetricsCollector(None, "svc", False)
    assert c._prefix == "svc"
    assert "svc_request_total" in c.export_prometheus()
    with pytest.raises(ValueError, match="owns its registry"):
        ProductionMetricsCollector(registry=object())  # type: ignore[arg-type]


@pytest.mark.parametrize("success", [True, False])
def test_request_counts(collector: ProductionMetricsCollector, success: bool) -> None:
    collector.record_request(endpoint="/chat", provider="anthropic", success=success, latency_ms=200.0)
    requests = collector.get_summary()["requests"]
    assert (requests["total"], requests["success"], requests["errors"]) == (1, int(success), int(not success))


@pytest.mark.parametrize("success", [True, False])
def test_tool_counts(collector: ProductionMetricsCollector, success: bool) -> None:
    collector.record_tool_execution(tool_name="read_file", success=success, duration_ms=45.2)
    tools = collector.get_summary()["tools"]
    assert (tools["calls"], tools["errors"]) == (1, int(not success))


def test_cache_hit_rate_is_the_same_float(collector: ProductionMetricsCollector) -> None:
    collector.record_cache_hit("tool_cache")
    collector.record_cache_hit("tool_cache")
    collector.record_cache_miss("tool_cache")
    assert collector.get_cache_hit_rate() == 2 / 3 * 100


def test_exports_carry_the_reference_names_and_keys(collector: ProductionMetricsCollector) -> None:
    collector.record_request(endpoint="/test", provider="anthropic", success=True, latency_ms=100.0)
    text = collector.export_prometheus()
    assert "victor_request_total" in text and "victor_request_success_total" in text
    assert {"timestamp", "metrics", "summary"} <= set(collector.export_json())


def test_summary_sections(collector: ProductionMetricsCollector) -> None:
    collector.record_request(endpoint="/test", provider="anthropic", success=True, latency_ms=100.0)
    collector.record_tool_execution(tool_name="read_file", success=True, duration_ms=50.0)
    assert {"requests", "tools", "cache", "business"} <= set(collector.get_summary())


def test_record_error_and_business_metrics(collector: ProductionMetricsCollector) -> None:
    collector.record_error("ValueError", "test error")
    assert collector.get_summary()["requests"]["errors"] >= 0
    collector.record_task_completion(success=True, cost_usd=0.05)
    collector.record_task_completion(success=False, cost_usd=0.0)
    collector.record_token_usage(1000)
    collector.record_token_usage(2000)
    business = collector.get_summary()["business"]
    assert business == {"tasks_completed": 1, "tasks_failed": 1, "total_cost_usd": 0.05, "tokens_used": 3000}


def test_factory_keeps_the_prefix() -> None:
    c = create_production_collector(prefix="test", collect_system_metrics=False)
    assert c._prefix == "test"


def test_metric_categories_are_strings() -> None:
    for member in ("request", "tool", "coordinator", "business", "system", "cache", "error"):
        assert MetricCategory[member.upper()] == member
    assert MetricLabel("provider", "anthropic").to_tuple() == ("provider", "anthropic")


# -- the reference's metric attributes, as handles on the series the record methods update -------------------------

REFERENCE_ATTRIBUTES = [
    "request_total",
    "request_success",
    "request_errors",
    "request_latency",
    "active_requests",
    "tool_calls_total",
    "tool_errors_total",
    "tool_duration",
    "tool_active",
    "coordinator_invocations",
    "coordinator_duration",
    "coordinator_errors",
    "tasks_completed",
    "tasks_failed",
    "total_cost",
    "tokens_used",
    "cache_hits",
    "cache_misses",
    "cache_size",
    "cache_evictions",
    "errors_total",
    "errors_by_type",
    "error_rate",
    "memory_usage",
    "cpu_usage",
    "disk_usage",
    "open_fds",
    "uptime",
]


def test_every_reference_attribute_exists(collector: ProductionMetricsCollector) -> None:
    missing = [name for name in REFERENCE_ATTRIBUTES if not hasattr(collector, name)]
    assert missing == []


def test_handles_read_what_the_record_methods_wrote(collector: ProductionMetricsCollector) -> None:
    collector.record_request("/chat", "anthropic", True, 120.0)
    collector.record_request("/chat", "openai", False, 480.0)
    assert collector.request_total.value == 2
    assert collector.request_success.value == 1
    assert collector.request_errors.value == 1
    assert collector.request_latency.count == 2
    p50 = collector.request_latency.percentile(50)
    assert p50 is not None and 110 < p50 < 130
    # Labels are really recorded: each provider is its own series.
    assert collector.request_total.labels(endpoint="/chat", provider="openai").get() == 1
    assert collector.request_total.labels("/chat", "anthropic").get() == 1


def test_handles_write_into_the_exported_series(collector: ProductionMetricsCollector) -> None:
    collector.tokens_used.increment(10)
    collector.tool_active.increment(2)
    collector.tool_active.decrement(1)
    collector.total_cost.set(1.5)
    collector.cache_hits.labels("tool_cache").inc()
    collector.request_total.labels("/x", "p").inc()
    summary = collector.get_summary()
    assert summary["business"]["tokens_used"] == 10
    assert summary["tools"]["active"] == 1
    assert summary["business"]["total_cost_usd"] == 1.5
    assert summary["cache"]["hits"] == 1
    assert summary["requests"]["total"] == 1
    assert "victor_tokens_used_total 10.0" in collector.export_prometheus()


def test_labelled_handle_refuses_an_unlabelled_write(collector: ProductionMetricsCollector) -> None:
    with pytest.raises(ValueError, match="victor_request_total"):
        collector.request_total.increment()


def test_errors_by_type(collector: ProductionMetricsCollector) -> None:
    collector.record_error("ValueError")
    collector.record_error("ValueError")
    collector.record_error("KeyError")
    assert sorted(collector.errors_by_type) == ["KeyError", "ValueError"]
    assert collector.errors_by_type["ValueError"].get() == 2
    assert collector.errors_total.value == 3


def test_registry_clear_resets_every_series(collector: ProductionMetricsCollector) -> None:
    collector.record_request("/chat", "anthropic", True, 120.0)
    collector.record_cache_hit("c")
    collector.record_token_usage(5)
    child = collector.request_total.labels("/chat", "anthropic")
    collector._registry.clear()
    summary = collector.get_summary()
    assert summary["requests"]["total"] == 0 and summary["requests"]["latency_p50"] is None
    assert summary["cache"]["hits"] == 0 and summary["business"]["tokens_used"] == 0
    # Series stay registered: the record path and children held before the reset keep working.
    collector.record_request("/chat", "anthropic", True, 120.0)
    child.inc()
    assert collector.request_total.value == 2
