"""Metrics hot paths beside prometheus-client and a no-op extension call, in the same run."""

from __future__ import annotations

import time
from collections.abc import Callable

import prometheus_client as pc
import pytest
from conftest import NOTES, bench_hook, compare
from victor_observability import Counter, DistributedTracer, Histogram, ProductionMetricsCollector, Registry

N = 1000  # calls per timed round: the loop's own cost is the same on both sides
LAT = (10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000)
LABELS = {"model": "claude-sonnet-4-5"}

compare("record_request (1 extra label) vs prometheus-client 3 labelled updates", "rr_ours", "rr_pc", ">= 10x")
compare(
    "record_request vs no-op extension call, same args (ratio >= 0.33 means within 3x)", "rr_ours", "rr_noop", ">= 0.33"
)
compare("record_cache_hit vs prometheus-client Counter.labels(...).inc()", "cache_ours", "cache_pc", ">= 3x")
compare("child.inc() vs no-op extension call (>= 0.5 means within 2x)", "inc_ours", "inc_noop", ">= 0.5")
compare("child.observe() vs no-op extension call (>= 0.5 means within 2x)", "observe_ours", "observe_noop", ">= 0.5")
compare("child.inc() vs prometheus-client child.inc()", "inc_ours", "inc_pc", "(context)")
compare("export 1,000 labelled histogram series vs generate_latest()", "export_ours", "export_pc", ">= 20x")
compare("record_request with an exemplar / without (the cost of one)", "rr_ours", "rr_exemplar", "<= 1.3")
compare("child.observe() with an exemplar / without (the cost of one)", "observe_ours", "observe_exemplar", "<= 1.3")


@pytest.fixture(scope="module")
def collector() -> ProductionMetricsCollector:
    return ProductionMetricsCollector(prefix="victor", collect_system_metrics=False)


def test_record_request_ours(bench, collector) -> None:  # type: ignore[no-untyped-def]
    rr = collector.record_request

    def run() -> None:
        for _ in range(N):
            rr("/chat", "anthropic", True, 123.4, LABELS)

    bench("rr_ours", run)


def test_record_request_noop(bench) -> None:  # type: ignore[no-untyped-def]
    noop = bench_hook("noop")

    def run() -> None:
        for _ in range(N):
            noop("/chat", "anthropic", True, 123.4, LABELS)

    bench("rr_noop", run)


def test_record_request_prometheus_client(bench) -> None:  # type: ignore[no-untyped-def]
    reg = pc.CollectorRegistry()
    names = ["endpoint", "provider", "model"]
    total = pc.Counter("victor_request_total", "", names, registry=reg)
    success = pc.Counter("victor_request_success_total", "", names, registry=reg)
    errors = pc.Counter("victor_request_errors_total", "", names, registry=reg)
    latency = pc.Histogram("victor_request_latency_ms", "", names, buckets=LAT, registry=reg)

    def record(endpoint: str, provider: str, ok: bool, latency_ms: float, labels: dict[str, str]) -> None:
        lv = (endpoint, provider, labels["model"])
        total.labels(*lv).inc()
        (success if ok else errors).labels(*lv).inc()
        latency.labels(*lv).observe(latency_ms)

    def run() -> None:
        for _ in range(N):
            record("/chat", "anthropic", True, 123.4, LABELS)

    bench("rr_pc", run)


def test_cache_hit_ours(bench, collector) -> None:  # type: ignore[no-untyped-def]
    hit = collector.record_cache_hit

    def run() -> None:
        for _ in range(N):
            hit("tool_cache")

    bench("cache_ours", run)


def test_cache_hit_prometheus_client(bench) -> None:  # type: ignore[no-untyped-def]
    hits = pc.Counter("victor_cache_hits_total", "", ["cache"], registry=pc.CollectorRegistry())

    def run() -> None:
        for _ in range(N):
            hits.labels("tool_cache").inc()

    bench("cache_pc", run)


def test_child_inc_ours(bench) -> None:  # type: ignore[no-untyped-def]
    child = Counter("c_total", "", ["a"], registry=Registry()).labels("x")
    inc = child.inc

    def run() -> None:
        for _ in range(N):
            inc()

    bench("inc_ours", run)


def test_child_inc_noop(bench) -> None:  # type: ignore[no-untyped-def]
    noop = bench_hook("noop")

    def run() -> None:
        for _ in range(N):
            noop()

    bench("inc_noop", run)


def test_child_inc_prometheus_client(bench) -> None:  # type: ignore[no-untyped-def]
    inc = pc.Counter("c_total", "", ["a"], registry=pc.CollectorRegistry()).labels("x").inc

    def run() -> None:
        for _ in range(N):
            inc()

    bench("inc_pc", run)


def test_child_observe_ours(bench) -> None:  # type: ignore[no-untyped-def]
    observe = Histogram("h", "", ["a"], buckets=LAT, registry=Registry()).labels("x").observe

    def run() -> None:
        for _ in range(N):
            observe(123.4)

    bench("observe_ours", run)


def test_child_observe_noop(bench) -> None:  # type: ignore[no-untyped-def]
    noop = bench_hook("noop")

    def run() -> None:
        for _ in range(N):
            noop(123.4)

    bench("observe_noop", run)


def _fill(hist: object) -> None:
    for i in range(1000):
        child = hist.labels(f"/route/{i}", "GET")  # type: ignore[attr-defined]
        for v in (5, 30, 120, 700, 4000):
            child.observe(v * (1 + i / 1000))


def test_export_ours(bench) -> None:  # type: ignore[no-untyped-def]
    reg = Registry()
    _fill(Histogram("latency_ms", "Latency.", ["route", "method"], buckets=LAT, registry=reg))
    body = bench("export_ours", reg.export)
    assert body.count(b"_bucket{") == 11_000


def test_export_prometheus_client(bench) -> None:  # type: ignore[no-untyped-def]
    reg = pc.CollectorRegistry()
    _fill(pc.Histogram("latency_ms", "Latency.", ["route", "method"], buckets=LAT, registry=reg))
    body = bench("export_pc", pc.generate_latest, reg)
    assert body.count(b"_bucket{") == 11_000


def _in_sampled_span(run: Callable[[], None]) -> Callable[[], None]:
    """`run` with a sampled span current: every observation takes its ids as the bucket's exemplar."""
    tracer = DistributedTracer("bench", flush_on_exit=False)

    def traced() -> None:
        with tracer.start_span("request"):
            run()

    return traced


def _record_requests(collector: ProductionMetricsCollector) -> Callable[[], None]:
    rr = collector.record_request

    def run() -> None:
        for _ in range(N):
            rr("/chat", "anthropic", True, 123.4, LABELS)

    return run


def _observations() -> Callable[[], None]:
    observe = Histogram("h", "", ["a"], buckets=LAT, registry=Registry()).labels("x").observe

    def run() -> None:
        for _ in range(N):
            observe(123.4)

    return run


def test_record_request_exemplar(bench, collector) -> None:  # type: ignore[no-untyped-def]
    bench("rr_exemplar", _in_sampled_span(_record_requests(collector)))


def test_child_observe_exemplar(bench) -> None:  # type: ignore[no-untyped-def]
    bench("observe_exemplar", _in_sampled_span(_observations()))


def test_report_exemplar_cost() -> None:
    """Interleaved rounds, CPU time, best of: the same record with and without a sampled span current."""
    collector = ProductionMetricsCollector(prefix="victor", collect_system_metrics=False)
    runs = {
        "rr": _record_requests(collector),
        "rr_exemplar": _in_sampled_span(_record_requests(collector)),
        "observe": _observations(),
        "observe_exemplar": _in_sampled_span(_observations()),
    }
    best = dict.fromkeys(runs, float("inf"))
    for _ in range(30):
        for key, run in runs.items():
            t0 = time.process_time()
            run()
            best[key] = min(best[key], (time.process_time() - t0) / N * 1e9)
    NOTES.append(
        "exemplars (interleaved, best of 30, ns per call): record_request {rr:.0f} -> {rr_exemplar:.0f} with one "
        "({r1:.2f}x), Histogram.observe {observe:.0f} -> {observe_exemplar:.0f} ({r2:.2f}x); target <= 1.3x".format(
            r1=best["rr_exemplar"] / best["rr"], r2=best["observe_exemplar"] / best["observe"], **best
        )
    )
