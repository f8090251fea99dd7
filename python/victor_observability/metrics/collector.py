"""ProductionMetricsCollector: the guide's collector, every record method one call into Rust.

>>> collector = create_production_collector(collect_system_metrics=False)
>>> collector.record_request("/chat", "anthropic", True, 123.4, labels={"model": "claude-sonnet-4-5"})
>>> collector.get_summary()["requests"]["total"]
1
"""

from __future__ import annotations

import enum
import math
import time
from collections import deque
from typing import Any

from victor_observability import _core
from victor_observability.metrics.instruments import DEFAULT_LABEL_VALUE_CAP, DEFAULT_SERIES_CAP, Registry
from victor_observability.metrics.system import BackgroundSampler, SystemReader


class MetricCategory(str, enum.Enum):
    """The families of metrics the collector records."""

    REQUEST = "request"
    TOOL = "tool"
    COORDINATOR = "coordinator"
    BUSINESS = "business"
    SYSTEM = "system"
    CACHE = "cache"
    ERROR = "error"


def _finite(v: float | None) -> float | None:
    return v if v is not None and math.isfinite(v) else None


def _count(v: float) -> int | float:
    return int(v) if float(v).is_integer() else v


class ProductionMetricsCollector(_core.CollectorCore):
    """Request, tool, coordinator, cache, business, error and system metrics under one prefix.

    The record methods (``record_request``, ``record_tool_execution``, ``record_cache_hit``, ...)
    are the Rust core's own: bad values (NaN, infinities, negative durations, costs or counts)
    are dropped and counted in ``<prefix>_invalid_samples_total{metric,reason}``, never raised.
    Label sets past ``series_cap`` per family fold into one ``__overflow__`` series. Label values
    longer than ``label_value_cap`` bytes are cut (ending in ``…``) and lone surrogates escaped
    (``\\ud800``), counted with ``reason="label_truncated"`` / ``"label_not_utf8"``; the event still counts.
    """

    def __init__(
        self,
        prefix: str = "victor",
        collect_system_metrics: bool = True,
        *,
        series_cap: int = DEFAULT_SERIES_CAP,
        label_value_cap: int = DEFAULT_LABEL_VALUE_CAP,
        system_interval: float = 30.0,
        max_recent_errors: int = 100,
    ) -> None:
        self.prefix = prefix
        self.registry = Registry(prefix, _core_registry=self.core_registry)
        self.registry.add_collect_hook(self._before_export)
        self._started = time.monotonic()
        self._recent_errors: deque[dict[str, Any]] = deque(maxlen=max_recent_errors)
        self.system_metrics_enabled = collect_system_metrics
        self._reader: SystemReader | None = None
        self._sampler: BackgroundSampler | None = None
        if collect_system_metrics:
            self._reader = SystemReader()
            self.collect_system_metrics()
            self._sampler = BackgroundSampler(self.collect_system_metrics, system_interval).start()

    # -- policy around the Rust recorders -------------------------------------------------------

    def record_error(self, error_type: str, message: str = "") -> None:
        """Counts an error in ``<prefix>_errors_total{type=...}``; the last messages are kept for export_json."""
        self._count_error(error_type)
        self._recent_errors.append({"type": str(error_type), "message": str(message), "timestamp": time.time()})

    def uptime_seconds(self) -> float:
        return time.monotonic() - self._started

    def collect_system_metrics(self) -> dict[str, float | None]:
        """Samples memory, CPU, disk and file descriptors now, without sleeping."""
        uptime = self.uptime_seconds()
        if self._reader is None:
            self._set_system(uptime_seconds=uptime)
            return {"uptime_seconds": uptime}
        s = self._reader.read()
        self._set_system(s.memory_bytes, s.cpu_percent, s.disk_bytes, s.open_fds, uptime)
        return {
            "memory_bytes": s.memory_bytes,
            "cpu_percent": s.cpu_percent,
            "disk_bytes": s.disk_bytes,
            "open_file_descriptors": s.open_fds,
            "uptime_seconds": uptime,
        }

    def stop_system_sampler(self) -> None:
        if self._sampler is not None:
            self._sampler.stop()

    def close(self) -> None:
        """Stops the background sampler; the collector keeps recording."""
        self.stop_system_sampler()

    def _before_export(self) -> None:
        self._refresh_error_rate()
        self._set_system(uptime_seconds=self.uptime_seconds())

    # -- exports --------------------------------------------------------------------------------

    def export_prometheus(self, openmetrics: bool = False) -> str:
        """Every metric in the Prometheus text format 0.0.4 (or OpenMetrics 1.0.0)."""
        return self.registry.export(openmetrics).decode()

    def export_json(self) -> dict[str, Any]:
        """``{timestamp, metrics: [...every series...], summary}``; safe for ``json.dumps``."""
        metrics = []
        for name, kind, help_text, samples in self.registry.samples():
            metrics.append(
                {
                    "name": name,
                    "type": kind,
                    "help": help_text,
                    "samples": [
                        {"name": sample, "labels": labels, "value": _finite(value)} for sample, labels, value in samples
                    ],
                }
            )
        return {
            "timestamp": time.time(),
            "metrics": metrics,
            "summary": self.get_summary(),
            "recent_errors": list(self._recent_errors),
        }

    def get_summary(self) -> dict[str, Any]:
        """Totals and HDR percentiles, arranged as the guide's summary."""
        s = self._stats()
        p50, p95, p99 = s["latency_quantiles"]
        t50, t95 = s["tool_quantiles"]
        system: dict[str, float | None] = {"uptime_seconds": self.uptime_seconds()}
        if self.system_metrics_enabled and self._reader is not None:
            sample = self._reader.read()
            system.update(memory_bytes=sample.memory_bytes, cpu_percent=sample.cpu_percent)
        else:
            system.update(memory_bytes=None, cpu_percent=None)
        return {
            "requests": {
                "total": _count(s["requests_total"]),
                "success": _count(s["requests_success"]),
                "errors": _count(s["requests_errors"]),
                "error_rate": s["error_rate"],
                "latency_p50": p50,
                "latency_p95": p95,
                "latency_p99": p99,
                "active": _count(s["active_requests"]),
            },
            "tools": {
                "calls": _count(s["tool_calls"]),
                "errors": _count(s["tool_errors"]),
                "active": _count(s["tool_active"]),
                "duration_p50": t50,
                "duration_p95": t95,
            },
            "coordinators": {
                "invocations": _count(s["coordinator_invocations"]),
                "errors": _count(s["coordinator_errors"]),
            },
            "cache": {
                "hits": _count(s["cache_hits"]),
                "misses": _count(s["cache_misses"]),
                "evictions": _count(s["cache_evictions"]),
                "hit_rate": s["cache_hit_rate"],
                "size": _count(s["cache_size"]),
            },
            "business": {
                "tasks_completed": _count(s["tasks_completed"]),
                "tasks_failed": _count(s["tasks_failed"]),
                "total_cost_usd": s["total_cost_usd"],
                "tokens_used": _count(s["tokens_used"]),
            },
            "errors": {"total": _count(s["errors_total"]), "invalid_samples": _count(s["invalid_samples"])},
            "system": system,
        }

    def __repr__(self) -> str:
        return f"ProductionMetricsCollector(prefix={self.prefix!r})"


def create_production_collector(
    prefix: str = "victor", collect_system_metrics: bool = True, **kwargs: Any
) -> ProductionMetricsCollector:
    """The guide's factory: ``collector = create_production_collector()``."""
    return ProductionMetricsCollector(prefix, collect_system_metrics, **kwargs)
