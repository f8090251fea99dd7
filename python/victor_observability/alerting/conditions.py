"""Ready-made alert conditions over a ProductionMetricsCollector (the guide's alert thresholds)."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any, Protocol


class SummarySource(Protocol):
    """What the conditions read: `ProductionMetricsCollector.get_summary()`."""

    def get_summary(self) -> Mapping[str, Any]: ...


class MetricCondition:
    """A named threshold check: calling it reads the collector, keeps the value in `last_value` (which the alert
    carries) and answers whether it crosses the threshold.

    >>> class Source:
    ...     def get_summary(self):
    ...         return {"requests": {"total": 100, "error_rate": 7.5}}
    >>> check = error_rate_above(Source(), 5.0)
    >>> check(), check.last_value
    (True, 7.5)
    """

    def __init__(self, name: str, read: Callable[[], float | None], threshold: float, above: bool) -> None:
        self.__name__ = name
        self._read = read
        self.threshold = float(threshold)
        self.above = above
        self.last_value: float | None = None

    def __repr__(self) -> str:
        return f"{self.__name__}({self.threshold:g})"

    def __call__(self) -> bool:
        value = self._read()
        self.last_value = value
        if value is None:  # not enough data to judge
            return False
        return value > self.threshold if self.above else value < self.threshold


def _num(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _section(source: SummarySource, name: str) -> Mapping[str, Any]:
    section = source.get_summary().get(name)
    return section if isinstance(section, Mapping) else {}


def _ratio_percent(part: float, whole: float, minimum: int) -> float | None:
    if whole <= 0 or whole < minimum:
        return None
    return 100.0 * part / whole


def error_rate_above(collector: SummarySource, percent: float, min_requests: int = 1) -> MetricCondition:
    """Request error rate (percent of requests) above `percent`, once at least `min_requests` were seen."""

    def read() -> float | None:
        requests = _section(collector, "requests")
        if float(requests.get("total", 0)) < max(min_requests, 1):
            return None
        return _num(requests.get("error_rate"))

    return MetricCondition("error_rate_above", read, percent, above=True)


def p95_latency_above(collector: SummarySource, milliseconds: float) -> MetricCondition:
    """Request latency p95 (milliseconds) above the threshold."""

    def read() -> float | None:
        requests = _section(collector, "requests")
        return _num(requests.get("latency_p95")) if requests.get("total", 0) else None

    return MetricCondition("p95_latency_above", read, milliseconds, above=True)


def cache_hit_rate_below(collector: SummarySource, percent: float, min_lookups: int = 1) -> MetricCondition:
    """Cache hit rate (percent) below the threshold, once at least `min_lookups` lookups were seen."""

    def read() -> float | None:
        cache = _section(collector, "cache")
        hits, misses = float(cache.get("hits", 0)), float(cache.get("misses", 0))
        return _ratio_percent(hits, hits + misses, min_lookups)

    return MetricCondition("cache_hit_rate_below", read, percent, above=False)


def tool_error_rate_above(collector: SummarySource, percent: float, min_calls: int = 1) -> MetricCondition:
    """Tool error rate (percent of tool calls) above the threshold."""

    def read() -> float | None:
        tools = _section(collector, "tools")
        return _ratio_percent(float(tools.get("errors", 0)), float(tools.get("calls", 0)), min_calls)

    return MetricCondition("tool_error_rate_above", read, percent, above=True)


def memory_above(collector: SummarySource, bytes_: float) -> MetricCondition:
    """Process memory (resident bytes from the collector's system sampling) above the threshold."""

    def read() -> float | None:
        return _num(_section(collector, "system").get("memory_bytes"))

    return MetricCondition("memory_above", read, bytes_, above=True)


def cpu_above(collector: SummarySource, percent: float) -> MetricCondition:
    """Process CPU (percent) above the threshold."""

    def read() -> float | None:
        return _num(_section(collector, "system").get("cpu_percent"))

    return MetricCondition("cpu_above", read, percent, above=True)


def task_failure_rate_above(collector: SummarySource, percent: float, min_tasks: int = 1) -> MetricCondition:
    """Failed tasks as a percent of finished tasks (completed + failed) above the threshold."""

    def read() -> float | None:
        business = _section(collector, "business")
        failed = float(business.get("tasks_failed", 0))
        return _ratio_percent(failed, failed + float(business.get("tasks_completed", 0)), min_tasks)

    return MetricCondition("task_failure_rate_above", read, percent, above=True)


def token_usage_rate_above(
    collector: SummarySource, tokens_per_minute: float, clock: Callable[[], float] = time.monotonic
) -> MetricCondition:
    """Tokens used per minute, measured between two consecutive evaluations, above the threshold.

    The first evaluation only takes the baseline (no rate yet).
    """
    last: list[float] = []

    def read() -> float | None:
        now = clock()
        tokens = float(_section(collector, "business").get("tokens_used", 0))
        previous = list(last)
        last[:] = [now, tokens]
        if not previous or now <= previous[0]:
            return None
        return (tokens - previous[1]) * 60.0 / (now - previous[0])

    return MetricCondition("token_usage_rate_above", read, tokens_per_minute, above=True)
