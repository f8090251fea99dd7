"""Metric handles on the collector's own families: the pure-Python collector's attributes (`request_total`, ...)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from victor_observability import _core

# (attribute, family name without the prefix and without a counter's `_total`): every public metric attribute the
# pure-Python collector defines, onto the family our record methods update.
HANDLES: tuple[tuple[str, str], ...] = (
    ("request_total", "request"),
    ("request_success", "request_success"),
    ("request_errors", "request_errors"),
    ("request_latency", "request_latency_ms"),
    ("active_requests", "active_requests"),
    ("tool_calls_total", "tool_calls"),
    ("tool_errors_total", "tool_errors"),
    ("tool_duration", "tool_duration_ms"),
    ("tool_active", "tool_active"),
    ("coordinator_invocations", "coordinator_invocations"),
    ("coordinator_duration", "coordinator_duration_ms"),
    ("coordinator_errors", "coordinator_errors"),
    ("tasks_completed", "tasks_completed"),
    ("tasks_failed", "tasks_failed"),
    ("total_cost", "total_cost_usd"),
    ("tokens_used", "tokens_used"),
    ("cache_hits", "cache_hits"),
    ("cache_misses", "cache_misses"),
    ("cache_size", "cache_size"),
    ("cache_evictions", "cache_evictions"),
    ("errors_total", "errors"),
    ("error_rate", "error_rate"),
    ("memory_usage", "memory_usage_bytes"),
    ("cpu_usage", "cpu_usage_percent"),
    ("disk_usage", "disk_usage_bytes"),
    ("open_fds", "open_file_descriptors"),
    ("uptime", "uptime_seconds"),
)


class MetricHandle:
    """One family of the collector, usable as the pure-Python collector's metric objects and as a
    prometheus-client metric: ``labels(...)`` gives the Rust child (``inc``/``set``/``observe`` with no Python
    frame in between); on a family without labels ``inc``/``increment``, ``dec``/``decrement``, ``set`` and
    ``observe`` write its one series. ``value`` is the sum over every series (a histogram's: its count), and
    ``percentile(p)`` reads a histogram's HDR recording.

    >>> from victor_observability import ProductionMetricsCollector
    >>> collector = ProductionMetricsCollector(collect_system_metrics=False)
    >>> collector.record_request("/chat", "anthropic", True, 120.0)
    >>> collector.request_total.labels(endpoint="/chat", provider="anthropic").get(), collector.request_total.value
    (1.0, 1.0)
    >>> collector.tokens_used.increment(5); collector.tokens_used.value
    5.0
    """

    __slots__ = ("_family", "_single", "kind", "labelnames", "name")

    def __init__(self, family: _core.FamilyCore) -> None:
        self._family = family
        self.kind = family.kind
        self.labelnames = tuple(family.labelnames)
        self.name = family.name + "_total" if self.kind == "counter" else family.name
        self._single: Any = None if self.labelnames else family.labels()

    def labels(self, *values: Any, **kwvalues: Any) -> Any:
        """The series of one label set: values by position (in ``labelnames`` order) or by name."""
        if kwvalues:
            if values or set(kwvalues) != set(self.labelnames):
                raise ValueError(f"metric {self.name!r}: expected labels {self.labelnames}, got {tuple(kwvalues)}")
            values = tuple(kwvalues[n] for n in self.labelnames)
        return self._family.labels(*values)

    def _one(self) -> Any:
        if self._single is None:
            raise ValueError(f"metric {self.name!r} has labels {self.labelnames}: call .labels(...) first")
        return self._single

    def inc(self, amount: float = 1.0) -> None:
        self._one().inc(amount)

    def dec(self, amount: float = 1.0) -> None:
        self._one().dec(amount)

    def set(self, value: float) -> None:
        self._one().set(value)

    def observe(self, value: float) -> None:
        self._one().observe(value)

    increment = inc
    decrement = dec

    def get(self) -> float:
        return self.value

    @property
    def value(self) -> float:
        """Sum over every series (counters and gauges); the number of observations for a histogram."""
        return self._family.total()

    @property
    def count(self) -> int:
        return int(self._family.total())

    @property
    def sum(self) -> float:
        """Sum of a histogram's observations (its one series; labelled families: read ``labels(...).sum()``)."""
        return float(self._one().sum())

    def percentile(self, p: float) -> float | None:
        """The p-th percentile (0-100) of a histogram over all its series; None before any observation."""
        return self._family.quantiles([p / 100.0])[0]

    def __repr__(self) -> str:
        return f"MetricHandle({self.name!r}, kind={self.kind!r}, labelnames={self.labelnames!r})"


class ErrorsByType(Mapping[str, Any]):
    """``errors_by_type[type]``: the series of ``<prefix>_errors_total{type=...}`` for each type recorded so far."""

    __slots__ = ("_family", "_registry")

    def __init__(self, family: _core.FamilyCore, registry: _core.RegistryCore) -> None:
        self._family = family
        self._registry = registry

    def _types(self) -> list[str]:
        name = self._family.name
        for family, _kind, _help, samples in self._registry.samples():
            if family == name:
                return [labels["type"] for _sample, labels, _value in samples if "type" in labels]
        return []

    def __getitem__(self, key: str) -> Any:
        if key not in self._types():
            raise KeyError(key)
        return self._family.labels(key)

    def __iter__(self) -> Iterator[str]:
        return iter(self._types())

    def __len__(self) -> int:
        return len(self._types())


def attach(owner: Any, core_registry: _core.RegistryCore, prefix: str, label_value_cap: int) -> None:
    """Sets every handle of `HANDLES` (and ``errors_by_type``) on `owner`."""
    stem = f"{prefix}_" if prefix else ""
    for attribute, family_name in HANDLES:
        family = core_registry.get(stem + family_name, label_value_cap)
        if family is None:  # pragma: no cover - the collector's schema defines every one
            raise ValueError(f"metric {stem + family_name!r}: not defined by the collector")
        setattr(owner, attribute, MetricHandle(family))
    errors = core_registry.get(stem + "errors", label_value_cap)
    assert errors is not None
    owner.errors_by_type = ErrorsByType(errors, core_registry)
