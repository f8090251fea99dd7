"""The tracer's own health as metrics: span and export counters mirrored onto a Registry at scrape time."""

from __future__ import annotations

import weakref
from typing import TYPE_CHECKING

from victor_observability.metrics.instruments import Counter, Registry

if TYPE_CHECKING:
    from victor_observability.tracing.tracer import DistributedTracer


def _family(registry: Registry) -> Counter:
    return registry.shared(
        "tracing",
        lambda: Counter(
            f"{registry.prefix}_tracing_events_total",
            "Tracer events: spans started, unsampled, finished, evicted from the buffer, dropped by the full "
            "export queue, exported, failed or dropped by an exporter, export retries and timeouts",
            ["service", "event"],
            registry=registry,
        ),
    )


def register_tracer_metrics(tracer: DistributedTracer, registry: Registry) -> None:
    """Exposes `tracer.stats()` as `<prefix>_tracing_events_total{service, event}` on `registry`."""
    counter = _family(registry)
    service = tracer.service_name
    seen: dict[str, int] = {}
    ref = weakref.ref(tracer)

    def refresh() -> None:
        live = ref()
        if live is None:
            return
        for event, value in live.stats().items():
            delta = value - seen.get(event, 0)
            if delta > 0:
                counter.labels(service, event).inc(delta)
                seen[event] = value

    registry.add_collect_hook(refresh)
