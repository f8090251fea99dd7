"""Hostile values on the record path: lone surrogates, huge label values, non-numbers, overflowing sums."""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client.parser import text_string_to_metric_families
from victor_observability import (
    Counter,
    Gauge,
    Histogram,
    ProductionMetricsCollector,
    Registry,
    create_production_collector,
)
from victor_observability.metrics import DEFAULT_LABEL_VALUE_CAP

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


@pytest.fixture
def collector() -> Iterator[ProductionMetricsCollector]:
    c = create_production_collector(collect_system_metrics=False)
    yield c
    c.close()


def samples(text: str) -> Samples:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for f in text_string_to_metric_families(text)
        for s in f.samples
    }


def invalid(text: str, metric: str, reason: str) -> float:
    key = ("victor_invalid_samples_total", (("metric", metric), ("reason", reason)))
    return samples(text).get(key, 0.0)


# -- item 1: lone surrogates ------------------------------------------------------------------------------

SURROGATE_CALLS: list[tuple[str, Callable[[ProductionMetricsCollector], None], str]] = [
    ("endpoint", lambda c: c.record_request("/chat\ud800", "p", True, 1.0), "victor_request_total"),
    ("fsdecode", lambda c: c.record_request(os.fsdecode(b"/files/\xff"), "p", True, 1.0), "victor_request_total"),
    ("extra", lambda c: c.record_request("/a", "p", True, 1.0, labels={"model": "\udcff"}), "victor_request_total"),
    ("tool", lambda c: c.record_tool_execution("t\ud800", True, 1.0), "victor_tool_calls_total"),
    (
        "coordinator",
        lambda c: c.record_coordinator_execution("k\ud800", True, 1.0),
        "victor_coordinator_invocations_total",
    ),
    ("cache_hit", lambda c: c.record_cache_hit("c\ud800"), "victor_cache_hits_total"),
    ("cache_size", lambda c: c.set_cache_size("c\ud800", 3), "victor_cache_size"),
    ("error", lambda c: c.record_error("E\ud800", "m"), "victor_errors_total"),
]


@pytest.mark.parametrize(("name", "call", "family"), SURROGATE_CALLS, ids=[c[0] for c in SURROGATE_CALLS])
def test_a_lone_surrogate_never_raises_and_the_event_counts(
    collector: ProductionMetricsCollector, name: str, call: Callable[[ProductionMetricsCollector], None], family: str
) -> None:
    call(collector)
    text = collector.export_prometheus()
    fam = family.removesuffix("_total")
    assert sum(v for (n, _), v in samples(text).items() if n in (family, fam)) >= 1
    assert invalid(text, family, "label_not_utf8") == 1
    # Escaped as Python's backslashreplace writes it, and the exposition is valid UTF-8.
    assert "\\\\ud800" in text or "\\\\udcff" in text


def test_surrogates_stay_distinct_series(collector: ProductionMetricsCollector) -> None:
    for path in (b"/files/\xff", b"/files/\xfe", b"/files/\xff"):
        collector.record_request(os.fsdecode(path), "p", True, 1.0)
    got = samples(collector.export_prometheus())
    assert got[("victor_request_total", (("endpoint", "/files/\\udcff"), ("provider", "p")))] == 2
    assert got[("victor_request_total", (("endpoint", "/files/\\udcfe"), ("provider", "p")))] == 1


def test_generic_instruments_take_surrogates() -> None:
    reg = Registry("app")
    c = Counter("jobs_total", "Jobs.", ["queue"], registry=reg)
    g = Gauge("depth", "Depth.", ["queue"], registry=reg)
    h = Histogram("wait_seconds", "Wait.", ["queue"], registry=reg, buckets=(1.0,))
    c.labels("q\ud800").inc()
    c.labels(queue="q\ud800").inc()
    g.labels("q\udcff").set(2)
    h.labels("q\ud800").observe(0.5)
    got = samples(reg.export_text())
    assert got[("jobs_total", (("queue", "q\\ud800"),))] == 2
    assert got[("depth", (("queue", "q\\udcff"),))] == 2
    assert got[("app_invalid_samples_total", (("metric", "jobs_total"), ("reason", "label_not_utf8")))] == 1


def test_unhashable_or_unprintable_label_values_never_raise() -> None:
    class Unprintable:
        def __str__(self) -> str:
            raise RuntimeError("no")

    reg = Registry("app")
    c = Counter("jobs_total", "Jobs.", ["queue"], registry=reg)
    c.labels(["a", "b"]).inc()
    c.labels(Unprintable()).inc()
    got = samples(reg.export_text())
    assert got[("jobs_total", (("queue", "['a', 'b']"),))] == 1
    assert got[("jobs_total", (("queue", "__unprintable__"),))] == 1
    assert got[("app_invalid_samples_total", (("metric", "jobs_total"), ("reason", "label_unprintable")))] == 1
    collector = create_production_collector(collect_system_metrics=False)
    collector.record_request(Unprintable(), "p", True, 1.0, labels={"model": Unprintable()})  # type: ignore[arg-type]
    text = collector.export_prometheus()
    assert invalid(text, "victor_request_total", "label_unprintable") == 1


@settings(max_examples=200, deadline=None)
# Lone surrogates mixed in on purpose: hypothesis' characters() almost never draws them.
@given(st.text(st.one_of(st.characters(), st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF)), max_size=40))
def test_any_text_is_recorded_and_exported(value: str) -> None:
    c = create_production_collector(collect_system_metrics=False)
    c.record_request(value, value, True, 1.0, labels={"model": value})
    c.record_tool_execution(value, False, 2.0)
    text = c.export_prometheus()
    got = samples(text)
    assert (
        got[
            (
                "victor_request_total",
                (("endpoint", _escaped(value)), ("model", _escaped(value)), ("provider", _escaped(value))),
            )
        ]
        == 1
    )
    assert sum(v for (n, _), v in got.items() if n == "victor_tool_calls_total") == 1


def _escaped(value: str) -> str:
    return value.encode("utf-8", "backslashreplace").decode("utf-8")


# -- item 2: label value length ---------------------------------------------------------------------------


def test_label_values_are_capped_in_bytes(collector: ProductionMetricsCollector) -> None:
    huge = "/x" * 500_000
    for i in range(3):
        collector.record_request(huge + str(i), "p", True, 1.0, labels={"model": "m" * 10_000})
    text = collector.export_prometheus()
    assert len(text) < 20_000, "three 1 MB endpoints made a large exposition"
    got = samples(text)
    endpoints = {dict(labels)["endpoint"] for (n, labels) in got if n == "victor_request_total"}
    assert len(endpoints) == 1, "values cut to the same prefix are one series"
    (endpoint,) = endpoints
    assert len(endpoint.encode()) == DEFAULT_LABEL_VALUE_CAP
    assert endpoint.endswith("\u2026")
    assert invalid(text, "victor_request_total", "label_truncated") == 3
    assert (
        got[("victor_request_total", (("endpoint", endpoint), ("model", "m" * 253 + "\u2026"), ("provider", "p")))] == 3
    )


def test_a_cut_never_splits_a_character() -> None:
    c = create_production_collector(collect_system_metrics=False, label_value_cap=10)
    c.record_tool_execution("ééééééé", True, 1.0)  # 14 bytes
    text = c.export_prometheus()
    (tool,) = {dict(labels)["tool"] for (n, labels) in samples(text) if n == "victor_tool_calls_total"}
    assert tool == "ééé\u2026"


def test_the_cap_is_configurable_and_checked() -> None:
    reg = Registry()
    c = Counter("c_total", "C.", ["v"], registry=reg, label_value_cap=16)
    c.labels("a" * 100).inc()
    assert ("c_total", (("v", "a" * 13 + "\u2026"),)) in samples(reg.export_text())
    with pytest.raises(ValueError, match="tiny_total"):
        Counter("tiny_total", "C.", ["v"], registry=reg, label_value_cap=2)
    with pytest.raises(ValueError, match="label_value_cap"):
        create_production_collector(collect_system_metrics=False, label_value_cap=0)


# -- item 12: non-numbers, None label names, overflowing sums ---------------------------------------------


@pytest.mark.parametrize("latency", ["12", None, object(), b"1", [1.0]], ids=["str", "None", "object", "bytes", "list"])
def test_a_latency_that_is_not_a_number_has_its_own_reason(
    collector: ProductionMetricsCollector, latency: object
) -> None:
    collector.record_request("/a", "p", True, latency)  # type: ignore[arg-type]
    collector.record_request("/a", "p", True, math.nan)
    text = collector.export_prometheus()
    assert invalid(text, "victor_request_latency_ms", "not_a_number") == 1
    assert invalid(text, "victor_request_latency_ms", "nan") == 1
    assert samples(text)[("victor_request_total", (("endpoint", "/a"), ("provider", "p")))] == 2


def test_non_numbers_elsewhere_have_the_same_reason(collector: ProductionMetricsCollector) -> None:
    collector.record_task_completion(True, "free")  # type: ignore[arg-type]
    collector.record_token_usage(None)  # type: ignore[arg-type]
    collector.set_cache_size("c", "big")  # type: ignore[arg-type]
    text = collector.export_prometheus()
    for metric in ("victor_total_cost_usd", "victor_tokens_used_total", "victor_cache_size"):
        assert invalid(text, metric, "not_a_number") == 1, metric


def test_an_outcome_that_is_not_a_bool_reads_as_python_truth(collector: ProductionMetricsCollector) -> None:
    class Broken:
        def __bool__(self) -> bool:
            raise RuntimeError("no")

    for success in (1, None, "yes", 0, Broken()):
        collector.record_request("/a", "p", success, 1.0)  # type: ignore[arg-type]
        collector.record_tool_execution("t", success, 1.0)  # type: ignore[arg-type]
        collector.record_task_completion(success, 0.5)  # type: ignore[arg-type]
    got = samples(collector.export_prometheus())
    key = (("endpoint", "/a"), ("provider", "p"))
    assert got[("victor_request_total", key)] == 5
    assert got[("victor_request_success_total", key)] == 2
    assert got[("victor_tool_errors_total", (("tool", "t"),))] == 3
    assert got[("victor_tasks_completed_total", ())] == 2


def test_an_extra_label_named_none_is_dropped_and_counted(collector: ProductionMetricsCollector) -> None:
    collector.record_request("/a", "p", True, 1.0, labels={None: "v", "model": "m"})  # type: ignore[dict-item]
    text = collector.export_prometheus()
    assert 'None="v"' not in text
    assert samples(text)[("victor_request_total", (("endpoint", "/a"), ("model", "m"), ("provider", "p")))] == 1
    assert invalid(text, "victor_request_total", "invalid_label") == 1


@pytest.mark.parametrize("labelnames", [[None], ["ok", None], None, [1]], ids=["None", "mixed", "bare-None", "int"])
def test_a_label_name_that_is_not_a_str_is_refused_at_definition(labelnames: object) -> None:
    with pytest.raises(ValueError, match="'jobs_total'"):
        Counter("jobs_total", "Jobs.", labelnames, registry=Registry())  # type: ignore[arg-type]


def test_two_huge_latencies_do_not_make_the_sum_infinite(collector: ProductionMetricsCollector) -> None:
    for _ in range(2):
        collector.record_request("/a", "p", True, 1e308)
    collector.record_request("/a", "p", True, 5.0)
    text = collector.export_prometheus()
    got = samples(text)
    key = (("endpoint", "/a"), ("provider", "p"))
    assert got[("victor_request_latency_ms_sum", key)] == 1e308 + 5.0
    assert got[("victor_request_latency_ms_count", key)] == 2
    assert got[("victor_request_total", key)] == 3
    assert invalid(text, "victor_request_latency_ms", "overflow") == 1


def test_running_totals_refuse_overflow_too(collector: ProductionMetricsCollector) -> None:
    for _ in range(2):
        collector.record_token_usage(1e308)
        collector.record_task_completion(True, 1e308)
    text = collector.export_prometheus()
    assert math.isfinite(samples(text)[("victor_tokens_used_total", ())])
    assert math.isfinite(samples(text)[("victor_total_cost_usd", ())])
    assert invalid(text, "victor_tokens_used_total", "overflow") == 1
    assert invalid(text, "victor_total_cost_usd", "overflow") == 1


def test_generic_histogram_and_counter_refuse_overflow() -> None:
    reg = Registry("app")
    h = Histogram("size_bytes", "Size.", registry=reg, buckets=(1.0,))
    c = Counter("bytes_total", "Bytes.", registry=reg)
    for _ in range(2):
        h.observe(1e308)
        c.inc(1e308 + 0.5e308)
    got = samples(reg.export_text())
    assert math.isfinite(got[("size_bytes_sum", ())])
    assert got[("size_bytes_count", ())] == 1
    assert math.isfinite(got[("bytes_total", ())])
    assert got[("app_invalid_samples_total", (("metric", "size_bytes"), ("reason", "overflow")))] == 1
    assert got[("app_invalid_samples_total", (("metric", "bytes_total"), ("reason", "overflow")))] == 1
