"""The generic metrics API: prometheus-client's surface, and byte-for-byte its exposition."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import prometheus_client
import pytest
from prometheus_client.openmetrics import exposition as om_exposition
from victor_observability import Counter, Gauge, Histogram, Registry

WEIRD = ["plain", 'quo"te', "back\\slash", "new\nline", "naïve ☃ 日本"]


@pytest.fixture
def no_created() -> Iterator[None]:
    # prometheus-client adds *_created samples by default; ours never does (see README), so golden
    # comparisons run with them off, as PROMETHEUS_DISABLE_CREATED_SERIES does.
    prometheus_client.disable_created_metrics()
    yield
    prometheus_client.enable_created_metrics()


def populate(mod: object, registry: object) -> None:
    """Makes the same metrics, with the same values, through either library's API."""
    kw = {"registry": registry}
    c = mod.Counter("jobs_total", "Jobs run.\nSecond \\ line", ["queue", "kind"], **kw)  # type: ignore[attr-defined]
    for i, v in enumerate(WEIRD):
        c.labels(v, "a").inc(i + 1)
    c.labels(queue="q", kind="b").inc(0.25)
    u = mod.Counter("plain_events", "No labels, no _total suffix.", **kw)  # type: ignore[attr-defined]
    u.inc(3)
    g = mod.Gauge("temperature_celsius", 'A "quoted" help', ["room"], **kw)  # type: ignore[attr-defined]
    for v, x in zip(WEIRD, [-1.5, 1e-7, 12345678.9, 1e21, 0.0], strict=True):
        g.labels(v).set(x)
    g2 = mod.Gauge("queue_depth", "", **kw)  # type: ignore[attr-defined]
    g2.set(7)
    h = mod.Histogram("latency_seconds", "Latency.", ["route"], buckets=(0.1, 0.5, 1, 2.5, 1e7), **kw)  # type: ignore[attr-defined]
    for i, route in enumerate(["/a", "/b\n"]):
        for x in [0.05, 0.1, 0.3, 0.7, 3.0, 9e6 + i]:
            h.labels(route).observe(x)
    h2 = mod.Histogram("sizes", "Default buckets.", **kw)  # type: ignore[attr-defined]
    h2.observe(0.02)
    mod.Counter("never_used_total", "Labelled, no children.", ["x"], **kw)  # type: ignore[attr-defined]


@pytest.mark.usefixtures("no_created")
def test_text_exposition_is_byte_for_byte_prometheus_client() -> None:
    theirs = prometheus_client.CollectorRegistry()
    populate(prometheus_client, theirs)
    ours = Registry()
    populate(__import__("victor_observability"), ours)
    assert ours.export() == prometheus_client.generate_latest(theirs)


@pytest.mark.usefixtures("no_created")
def test_openmetrics_exposition_is_byte_for_byte_prometheus_client() -> None:
    theirs = prometheus_client.CollectorRegistry()
    populate(prometheus_client, theirs)
    ours = Registry()
    populate(__import__("victor_observability"), ours)
    assert ours.export(openmetrics=True) == om_exposition.generate_latest(theirs)


def test_labels_by_name_and_position_are_one_series() -> None:
    reg = Registry()
    c = Counter("hits_total", "Hits.", ["a", "b"], registry=reg)
    c.labels("1", "2").inc()
    c.labels(b="2", a="1").inc(2)
    assert c.labels("1", "2").get() == 3.0
    assert c.labels("1", "2") is c.labels("1", "2")


def test_counter_refuses_negative_and_nan_increments() -> None:
    c = Counter("c_total", "", registry=Registry())
    with pytest.raises(ValueError, match="c_total"):
        c.inc(-1)
    with pytest.raises(ValueError, match="c_total"):
        c.inc(float("nan"))
    assert c.get() == 0.0


@pytest.mark.parametrize(
    ("make", "fragment"),
    [
        (lambda r: Counter("bad-name", "", registry=r), "bad-name"),
        (lambda r: Counter("", "", registry=r), "invalid metric name"),
        (lambda r: Gauge("g1", "", ["__reserved"], registry=r), "reserved"),
        (lambda r: Gauge("g2", "", ["a-b"], registry=r), "invalid label name"),
        (lambda r: Gauge("g3", "", ["a", "a"], registry=r), "duplicate"),
        (lambda r: Histogram("h1", "", ["le"], registry=r), "reserved"),
        (lambda r: Histogram("h2", "", buckets=(2, 1), registry=r), "increasing"),
        (lambda r: Histogram("h3", "", buckets=(), registry=r), "at least one"),
        (lambda r: Histogram("h4", "", buckets=(float("nan"),), registry=r), "NaN"),
    ],
)
def test_definition_mistakes_raise_value_error_naming_the_metric(make, fragment) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError, match=fragment):
        make(Registry())


def test_wrong_label_count_names_the_metric() -> None:
    c = Counter("req_total", "", ["a", "b"], registry=Registry())
    with pytest.raises(ValueError, match=r'"req_total".*expected 2 label values'):
        c.labels("only-one")
    with pytest.raises(ValueError, match="req_total"):
        c.labels(a="x")
    with pytest.raises(ValueError, match="req_total"):
        c.inc()
    with pytest.raises(ValueError, match="no label names"):
        Counter("n_total", "", registry=Registry()).labels("x")


def test_duplicate_registration_is_refused() -> None:
    reg = Registry()
    Counter("dup_total", "", registry=reg)
    with pytest.raises(ValueError, match="duplicated"):
        Gauge("dup_total", "", registry=reg)


def test_series_cap_folds_into_overflow_and_counts(caplog: pytest.LogCaptureFixture) -> None:
    reg = Registry("svc")
    c = Counter("users_total", "", ["user"], registry=reg, series_cap=3)
    for i in range(10):
        c.labels(f"u{i}").inc()
    text = reg.export_text()
    assert 'users_total{user="__overflow__"} 7.0' in text
    assert 'svc_metric_series_overflow_total{metric="users_total"} 7.0' in text
    assert sum("series cap" in r.message for r in caplog.records) == 1


def test_histogram_time_and_gauge_track_inprogress_as_context_and_decorator() -> None:
    reg = Registry()
    h = Histogram("work_seconds", "", buckets=(0.5, 10), registry=reg)
    g = Gauge("inflight", "", registry=reg)

    @h.time()
    @g.track_inprogress()
    def work() -> float:
        return g.get()

    @h.time()
    @g.track_inprogress()
    async def awork() -> float:
        return g.get()

    with h.time(), g.track_inprogress():
        assert g.get() == 1.0
    assert work() == 1.0
    assert asyncio.run(awork()) == 1.0
    assert work.__name__ == "work"
    assert g.get() == 0.0
    assert h.get() == 3.0
    assert 'work_seconds_bucket{le="0.5"} 3.0' in reg.export_text()


def test_gauge_set_function_and_count_exceptions() -> None:
    reg = Registry()
    g = Gauge("answer", "", registry=reg)
    g.set_function(lambda: 42)
    c = Counter("failures_total", "", registry=reg)
    with pytest.raises(KeyError), c.count_exceptions(KeyError):
        raise KeyError("x")
    assert "answer 42.0" in reg.export_text()
    assert c.get() == 1.0


def test_clear_removes_labelled_series() -> None:
    reg = Registry()
    c = Counter("x_total", "", ["a"], registry=reg)
    c.labels("1").inc()
    c.clear()
    assert "x_total{" not in reg.export_text()
    c.labels("1").inc()
    assert c.labels("1").get() == 1.0
