"""What the demo service is instrumented with: collector, tracer (JSON-lines spans), middleware, health, alerting.

>>> instr = instrument(enabled=False)
>>> instr.collector is None
True
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, Protocol

from victor_observability.alerting import AlertManager, AlertRule, AlertSeverity, LogNotifier, create_alert_manager
from victor_observability.alerting.conditions import cache_hit_rate_below, error_rate_above, tool_error_rate_above
from victor_observability.demo._off import NoopRecorder, NoopTracer
from victor_observability.health.checker import ProductionHealthChecker, create_production_health_checker
from victor_observability.health.http import create_health_router
from victor_observability.metrics.collector import ProductionMetricsCollector, create_production_collector
from victor_observability.middleware import MonitoringMiddleware
from victor_observability.tracing.exporters import JsonLinesSpanExporter
from victor_observability.tracing.otlp import OTLPSpanExporter
from victor_observability.tracing.sampling import ALWAYS_ON, ParentBasedSampler
from victor_observability.tracing.tracer import DistributedTracer

log = logging.getLogger("victor_observability.demo")

DEMO_SERVICE = "victor-demo"


class Recorder(Protocol):
    """The collector methods the service calls (ProductionMetricsCollector, or NoopRecorder when off)."""

    def record_request(
        self, endpoint: str, provider: str, success: bool, latency_ms: float, labels: dict[str, Any] | None = None
    ) -> None: ...
    def record_tool_execution(
        self, tool_name: str, success: bool, duration_ms: float, labels: dict[str, Any] | None = None
    ) -> None: ...
    def record_coordinator_execution(
        self, coordinator_name: str, success: bool, duration_ms: float, labels: dict[str, Any] | None = None
    ) -> None: ...
    def record_task_completion(self, success: bool, cost_usd: float | None = None) -> None: ...
    def record_token_usage(self, token_count: float) -> None: ...
    def record_cache_hit(self, cache_name: str) -> None: ...
    def record_cache_miss(self, cache_name: str) -> None: ...
    def record_cache_eviction(self, cache_name: str) -> None: ...
    def set_cache_size(self, cache_name: str, size: float) -> None: ...
    def increment_tool_active(self, count: int = 1) -> None: ...
    def decrement_tool_active(self, count: int = 1) -> None: ...
    def record_error(self, error_type: str, message: str = "") -> None: ...


class Tracer(Protocol):
    """What the service needs of a tracer: ``start_span`` returning a context-manager span."""

    def start_span(
        self, name: str, parent: Any = None, kind: str | None = None, attributes: dict[str, Any] | None = None
    ) -> Any: ...


class Instrumentation:
    """The parts one demo service is wired with, and their lifecycle (start in the app's lifespan, close at exit)."""

    def __init__(
        self,
        recorder: Recorder,
        tracer: Tracer,
        *,
        collector: ProductionMetricsCollector | None = None,
        distributed_tracer: DistributedTracer | None = None,
        spans_path: Path | None = None,
        health: ProductionHealthChecker | None = None,
        alerts: AlertManager | None = None,
        alert_interval: float = 1.0,
    ) -> None:
        self.recorder = recorder
        self.tracer = tracer
        self.collector = collector
        self.distributed_tracer = distributed_tracer
        self.spans_path = spans_path
        self.health = health
        self.alerts = alerts
        self.alert_interval = alert_interval

    @contextlib.asynccontextmanager
    async def lifespan(self, app: Any) -> AsyncIterator[None]:
        """Starts the alert loop with the service and marks startup complete; stops the loop on shutdown."""
        if self.alerts is not None:
            self.alerts.start(interval=self.alert_interval)
        if self.health is not None:
            self.health.mark_startup_complete()
        try:
            yield
        finally:
            if self.alerts is not None:
                await self.alerts.stop(timeout=2.0)

    def wire(self, app: Any) -> None:
        """Adds the monitoring middleware and the health routes to ``app`` (a FastAPI app)."""
        if self.health is not None:
            app.include_router(create_health_router(self.health, detail="checks"))
        if self.collector is not None:
            # Excludes /metrics and /health/* by default: scrapes and probes are not traffic.
            app.add_middleware(MonitoringMiddleware, metrics_collector=self.collector, tracer=self.distributed_tracer)

    def recorded_requests(self) -> dict[str, float]:
        """HTTP requests (the middleware's, provider "http") and LLM calls (the other providers) in the exposition."""
        out = dict.fromkeys(("http_requests", "http_errors", "llm_calls", "llm_errors"), 0.0)
        if self.collector is None:
            return out
        prefix = self.collector.prefix
        for _family, _kind, _help, series in self.collector.registry.samples():
            for sample, labels, value in series:
                kind = "http" if labels.get("provider") == "http" else "llm"
                if sample == f"{prefix}_request_total":
                    out["http_requests" if kind == "http" else "llm_calls"] += value
                elif sample == f"{prefix}_request_errors_total":
                    out[f"{kind}_errors"] += value
        return out

    def spans_finished(self) -> int:
        if self.distributed_tracer is None:
            return 0
        return int(self.distributed_tracer.stats().get("spans_finished", 0))

    def alerts_fired(self) -> int:
        """Alerts that started firing, as exported in ``<prefix>_alerts_fired_total``."""
        if self.collector is None:
            return 0
        name = f"{self.collector.prefix}_alerts_fired_total"
        samples = (s for _family, _kind, _help, series in self.collector.registry.samples() for s in series)
        return int(sum(value for sample, _labels, value in samples if sample == name))

    def close(self) -> None:
        """Flushes spans to their file and stops the system sampler."""
        if self.distributed_tracer is not None:
            self.distributed_tracer.shutdown(timeout=5.0)
        if self.collector is not None:
            self.collector.close()


def instrument(
    enabled: bool = True,
    *,
    spans_path: Path | str | None = None,
    alert_error_rate: float = 5.0,
    collect_system_metrics: bool = True,
    system_interval: float = 5.0,
    service_name: str = DEMO_SERVICE,
) -> Instrumentation:
    """Everything on (collector, tracer writing JSON lines to ``spans_path``, middleware, health, alerts), or off.

    ``alert_error_rate`` is the request error rate (percent) over which the in-process ``high_error_rate`` rule
    fires; lower it to see alerts fire.
    """
    if not enabled:
        return Instrumentation(NoopRecorder(), NoopTracer())
    collector = create_production_collector(
        collect_system_metrics=collect_system_metrics, system_interval=system_interval
    )
    path = Path(spans_path) if spans_path is not None else None
    # The embedded default: finished spans stay in the tracer's memory buffer; the JSON-lines file is the export.
    # Parent-based: a caller's decision (traceparent's sampled flag) holds in every service of the trace.
    tracer = DistributedTracer(service_name, sampler=ParentBasedSampler(ALWAYS_ON), registry=collector.registry)
    if path is not None:
        tracer.add_exporter(JsonLinesSpanExporter(path))
    if os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"):
        try:
            tracer.add_exporter(OTLPSpanExporter())  # endpoint, headers and timeout from the standard variables
        except ImportError as exc:  # the `otel` extra is not installed: spans still go to the file
            log.warning("OTLP export is off: %s", exc)
    return Instrumentation(
        collector,
        tracer,
        collector=collector,
        distributed_tracer=tracer,
        spans_path=path,
        health=_health_checker(collector),
        alerts=_alert_manager(collector, alert_error_rate),
    )


def _health_checker(collector: ProductionMetricsCollector) -> ProductionHealthChecker:
    checker = create_production_health_checker(
        startup_timeout=60.0, service_version="demo", metrics_collector=collector
    )
    checker.add_liveness_check("process", lambda: True)
    # Ready once the collector answers; started once the app's lifespan has run (mark_startup_complete).
    checker.add_readiness_check("metrics", lambda: collector.get_summary() is not None)
    return checker


def _alert_manager(collector: ProductionMetricsCollector, error_rate: float) -> AlertManager:
    manager = create_alert_manager(collector, notifiers={"log": LogNotifier()})
    rules = [
        ("high_error_rate", error_rate_above(collector, error_rate, min_requests=20), AlertSeverity.CRITICAL),
        ("high_tool_error_rate", tool_error_rate_above(collector, 10.0, min_calls=20), AlertSeverity.WARNING),
        ("low_cache_hit_rate", cache_hit_rate_below(collector, 30.0, min_lookups=50), AlertSeverity.WARNING),
    ]
    for name, condition, severity in rules:
        manager.add_rule(
            AlertRule.builder()
            .name(name)
            .description(f"{name.replace('_', ' ')}: {condition!r}")
            .condition(condition)
            .severity(severity)
            .notification_channels(["log"])
            .for_duration(2.0)  # the early, small-sample rates swing: a little hysteresis
            .cooldown(60)
            .build()
        )
    return manager
