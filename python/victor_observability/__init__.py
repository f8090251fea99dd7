"""victor-observability: production metrics, tracing, health probes, ASGI middleware and alerting.

Drop-in for the guide's ``victor.observability``: change the import line only.

>>> from victor_observability import create_production_collector
>>> collector = create_production_collector(collect_system_metrics=False)
>>> collector.record_cache_hit("tool_cache")
"""

from victor_observability._core import __version__
from victor_observability.alerting import (
    Alert,
    AlertManager,
    AlertmanagerNotifier,
    AlertRule,
    AlertSeverity,
    AlertStatus,
    EmailNotifier,
    LogNotifier,
    Notifier,
    SlackNotifier,
    WebhookNotifier,
    create_alert_manager,
)
from victor_observability.collector import MetricCategory, ProductionMetricsCollector, create_production_collector
from victor_observability.health import (
    CheckResult,
    HealthCheckResponse,
    HealthCheckType,
    HealthStatus,
    ProductionHealthChecker,
    create_production_health_checker,
)
from victor_observability.health_http import HealthApp, create_health_app, create_health_router
from victor_observability.http import make_metrics_app, start_http_server
from victor_observability.metrics import REGISTRY, Counter, Gauge, Histogram, Registry
from victor_observability.middleware import MonitoringMiddleware, create_monitoring_middleware
from victor_observability.prometheus_bridge import PrometheusClientBridge, register_with_prometheus_client
from victor_observability.tracing import (
    DistributedTracer,
    ParentBasedSampler,
    SpanKind,
    StatusCode,
    TraceIdRatioSampler,
    current_span,
    get_global_tracer,
    set_global_tracer,
    trace_async_function,
    trace_function,
)

__all__ = [
    "REGISTRY",
    "Alert",
    "AlertManager",
    "AlertRule",
    "AlertSeverity",
    "AlertStatus",
    "AlertmanagerNotifier",
    "CheckResult",
    "Counter",
    "DistributedTracer",
    "EmailNotifier",
    "Gauge",
    "HealthApp",
    "HealthCheckResponse",
    "HealthCheckType",
    "HealthStatus",
    "Histogram",
    "LogNotifier",
    "MetricCategory",
    "MonitoringMiddleware",
    "Notifier",
    "ParentBasedSampler",
    "ProductionHealthChecker",
    "ProductionMetricsCollector",
    "PrometheusClientBridge",
    "Registry",
    "SlackNotifier",
    "SpanKind",
    "StatusCode",
    "TraceIdRatioSampler",
    "WebhookNotifier",
    "__version__",
    "create_alert_manager",
    "create_health_app",
    "create_health_router",
    "create_monitoring_middleware",
    "create_production_collector",
    "create_production_health_checker",
    "current_span",
    "get_global_tracer",
    "make_metrics_app",
    "register_with_prometheus_client",
    "set_global_tracer",
    "start_http_server",
    "trace_async_function",
    "trace_function",
]
