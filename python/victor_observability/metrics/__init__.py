"""Metrics: prometheus-client style instruments, the production collector, system metrics, /metrics serving."""

# The children report this module as theirs (the extension names it), so they are importable from it.
from victor_observability._core import CounterChild, GaugeChild, HistogramChild
from victor_observability.metrics.bridge import PrometheusClientBridge, register_with_prometheus_client
from victor_observability.metrics.collector import (
    MetricCategory,
    MetricLabel,
    ProductionMetricsCollector,
    create_production_collector,
)
from victor_observability.metrics.http import make_metrics_app, start_http_server
from victor_observability.metrics.instruments import (
    DEFAULT_LABEL_VALUE_CAP,
    DEFAULT_SERIES_CAP,
    REGISTRY,
    Counter,
    Gauge,
    Histogram,
    MetricBase,
    Registry,
)

__all__ = [
    "DEFAULT_LABEL_VALUE_CAP",
    "DEFAULT_SERIES_CAP",
    "REGISTRY",
    "Counter",
    "CounterChild",
    "Gauge",
    "GaugeChild",
    "Histogram",
    "HistogramChild",
    "MetricBase",
    "MetricCategory",
    "MetricLabel",
    "ProductionMetricsCollector",
    "PrometheusClientBridge",
    "Registry",
    "create_production_collector",
    "make_metrics_app",
    "register_with_prometheus_client",
    "start_http_server",
]
