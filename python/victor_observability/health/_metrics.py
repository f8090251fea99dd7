"""The health checker's own metrics: a Protocol, the no-op "off" object and the families on a registry."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, Protocol

from victor_observability.health.model import HealthStatus
from victor_observability.metrics.component import ComponentMetrics
from victor_observability.metrics.instruments import Gauge, Histogram, Registry

log = logging.getLogger("victor_observability.health")

#: Health checks are cheap or bounded by their timeout (1 s by default): resolve the low end finely.
DURATION_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class HealthMetrics(Protocol):
    """Where the checker reports each evaluated check; `NoHealthMetrics` is the "off" object."""

    def record(self, probe: str, check: str, status: HealthStatus, duration_seconds: float) -> None: ...

    # Optional, looked up with getattr so that older implementations still fit:
    # `watch_hung(hung: Callable[[], dict[str, int] | None]) -> None` reports a checker's `hung_checks()`
    # (None once that checker is gone).


class NoHealthMetrics:
    """Records nothing."""

    def record(self, probe: str, check: str, status: HealthStatus, duration_seconds: float) -> None:
        return None

    def watch_hung(self, hung: Callable[[], dict[str, int] | None]) -> None:
        return None


class RegistryHealthMetrics(ComponentMetrics):
    """Gauge and histogram on a `Registry`, children cached per (probe, check).

    >>> from victor_observability import Registry
    >>> reg = Registry(prefix="victor")
    >>> RegistryHealthMetrics(reg, "victor").record("readiness", "db", HealthStatus.DEGRADED, 0.01)
    >>> 'victor_health_check_status{check="db",probe="readiness"} 0.5' in reg.export_text()
    True
    """

    namespace = "health"

    def __init__(self, registry: Registry, prefix: str) -> None:
        self._status = Gauge(
            f"{prefix}_health_check_status",
            "Last result of each health check: 1 pass, 0.5 warn, 0 fail.",
            ["probe", "check"],
            registry=registry,
        )
        self._duration = Histogram(
            f"{prefix}_health_check_duration_seconds",
            "Duration of each health check evaluation, in seconds.",
            ["probe", "check"],
            buckets=DURATION_BUCKETS,
            registry=registry,
        )
        self._hung = Gauge(
            f"{prefix}_health_checks_hung",
            "Sync health checks still running past their timeout, each holding a worker thread, per pool "
            "(liveness, or readiness and startup).",
            ["pool"],
            registry=registry,
        )
        self._registry = registry
        self._watched: list[Callable[[], dict[str, int] | None]] = []
        self._children: dict[tuple[str, str], tuple[Any, Any]] = {}
        self._warned = False

    def watch_hung(self, hung: Callable[[], dict[str, int] | None]) -> None:
        """Sums the hung checks of every watched checker into the gauge before every export."""
        if not self._watched:
            self._registry.add_collect_hook(self._refresh_hung)
        self._watched.append(hung)

    def _refresh_hung(self) -> None:
        totals = {"liveness": 0, "readiness": 0}
        live = []
        for hung in self._watched:
            counts = hung()
            if counts is None:
                continue  # that checker is gone
            live.append(hung)
            for pool, n in counts.items():
                totals[pool] = totals.get(pool, 0) + n
        self._watched[:] = live
        for pool, n in totals.items():
            self._hung.labels(pool).set(n)

    def record(self, probe: str, check: str, status: HealthStatus, duration_seconds: float) -> None:
        try:
            key = (probe, check)
            pair = self._children.get(key)
            if pair is None:
                pair = (self._status.labels(probe, check), self._duration.labels(probe, check))
                self._children[key] = pair
            pair[0].set(status.metric_value)
            pair[1].observe(duration_seconds)
        except Exception:
            # A metrics problem must never fail a probe; say so once.
            if not self._warned:
                self._warned = True
                log.warning("could not record health metrics for %s/%s", probe, check, exc_info=True)


def registry_health_metrics(
    *, metrics_collector: Any = None, registry: Any = None, prefix: str | None = None
) -> RegistryHealthMetrics:
    """Health metrics on the collector's registry (or on `registry`), named with its prefix."""
    if registry is None:
        registry = getattr(metrics_collector, "registry", None)
        if registry is None:
            raise ValueError(f"health metrics: {metrics_collector!r} has no .registry")
    if prefix is None:
        prefix = getattr(metrics_collector, "prefix", None) or getattr(registry, "prefix", None) or "victor"
    return RegistryHealthMetrics.on(registry, prefix)
