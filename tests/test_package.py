"""The package's public surface: every exported name lives in a public module, and nothing private leaks."""

import importlib
import inspect
import sys

import pytest
import victor_observability
from victor_observability import DistributedTracer

PACKAGES = [
    "victor_observability",
    "victor_observability.metrics",
    "victor_observability.tracing",
    "victor_observability.health",
    "victor_observability.alerting",
]


def _home(obj: object) -> str | None:
    """The module an exported object reports: its own for classes and functions, its type's for instances."""
    if inspect.isclass(obj) or callable(obj):
        return getattr(obj, "__module__", None)
    if isinstance(obj, (str, int, float, bool, tuple, frozenset)):
        return None
    return type(obj).__module__


@pytest.mark.parametrize("package", PACKAGES)
def test_every_exported_name_reports_a_public_module(package: str) -> None:
    module = importlib.import_module(package)
    private = {}
    for name in module.__all__:
        home = _home(getattr(module, name))
        if home is not None and any(part.startswith("_") for part in home.split(".")):
            private[name] = home
    assert private == {}


def test_every_name_in_all_is_importable_and_unique() -> None:
    names = victor_observability.__all__
    assert len(names) == len(set(names))
    for name in names:
        assert hasattr(victor_observability, name), name


def test_a_tracer_has_no_pipeline_internals() -> None:
    tracer = DistributedTracer("svc", flush_on_exit=False)
    for name in ("drain", "set_exporting", "wait", "wake", "queue_len", "core_stats", "with_scope"):
        assert not hasattr(tracer, name), name
    assert not isinstance(tracer, victor_observability._core.TracerCore)
    # The public surface still works, through the bound core methods.
    with tracer.start_span("op") as span:
        headers = tracer.inject_context({})
    assert headers["traceparent"].split("-")[1] == span.trace_id
    assert tracer.extract_context(headers) is not None
    assert [s.name for s in tracer.get_trace(span.trace_id)] == ["op"]
    assert tracer.stats()["spans_finished"] == 1
    tracer.shutdown()


def test_bench_hooks_are_not_in_the_released_extension() -> None:
    for name in ("noop", "_noop_trace", "_NoopContext"):
        assert not hasattr(victor_observability._core, name), name


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("victor_observability.collector", "victor_observability.metrics.collector"),
        ("victor_observability.http", "victor_observability.metrics.http"),
        ("victor_observability.prometheus_bridge", "victor_observability.metrics.bridge"),
        ("victor_observability.system", "victor_observability.metrics.system"),
        ("victor_observability.exporters", "victor_observability.tracing.exporters"),
        ("victor_observability.health_http", "victor_observability.health.http"),
    ],
)
def test_moved_module_paths_still_import_and_warn(old: str, new: str) -> None:
    sys.modules.pop(old, None)
    with pytest.warns(DeprecationWarning, match="moved to"):
        module = importlib.import_module(old)
    assert module is importlib.import_module(new)
