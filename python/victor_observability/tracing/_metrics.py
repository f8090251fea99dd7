"""The tracer's own metrics: span and export counters, mirrored from the tracer's stats at scrape time."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Protocol

from victor_observability.metrics.component import ComponentMetrics
from victor_observability.metrics.instruments import Counter, Registry

Stats = Callable[[], Mapping[str, int] | None]


class TracingMetrics(Protocol):
    """Where a tracer publishes its stats; `NoTracingMetrics` is the "off" object."""

    def watch(self, service: str, stats: Stats) -> None: ...


class NoTracingMetrics:
    """Publishes nothing."""

    def watch(self, service: str, stats: Stats) -> None:
        return None


class RegistryTracingMetrics(ComponentMetrics):
    """`<prefix>_tracing_events_total{service, event}`, refreshed from each watched tracer before every export."""

    namespace = "tracing"

    def __init__(self, registry: Registry, prefix: str) -> None:
        self._registry = registry
        self._events = Counter(
            f"{prefix}_tracing_events_total",
            "Tracer events: spans started, unsampled, finished, evicted from the buffer, dropped by the full "
            "export queue, exported, failed or dropped by an exporter, export retries and timeouts",
            ["service", "event"],
            registry=registry,
        )

    def watch(self, service: str, stats: Stats) -> None:
        """Mirrors `stats()` (None once its tracer is gone) as counter increments before every export."""
        seen: dict[str, int] = {}
        events = self._events

        def refresh() -> None:
            current = stats()
            if current is None:
                return
            for event, value in current.items():
                delta = value - seen.get(event, 0)
                if delta > 0:
                    events.labels(service, event).inc(delta)
                    seen[event] = value

        self._registry.add_collect_hook(refresh)
