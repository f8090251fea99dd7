"""victor-observability: production metrics, tracing, health probes, ASGI middleware and alerting.

Drop-in for the guide's ``victor.observability``: change the import line only.

>>> from victor_observability import create_production_collector
>>> collector = create_production_collector(collect_system_metrics=False)
>>> collector.record_cache_hit("tool_cache")
"""

from victor_observability._core import __version__
from victor_observability.collector import MetricCategory, ProductionMetricsCollector, create_production_collector
from victor_observability.http import make_metrics_app, start_http_server
from victor_observability.middleware import MonitoringMiddleware, create_monitoring_middleware
from victor_observability.metrics import REGISTRY, Counter, Gauge, Histogram, Registry
from victor_observability.prometheus_bridge import PrometheusClientBridge, register_with_prometheus_client

# isort: split
# -- alerting (issue 5) --
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

__all__ = [
    "REGISTRY",
    "Counter",
    "Gauge",
    "Histogram",
    "MetricCategory",
    "MonitoringMiddleware",
    "ProductionMetricsCollector",
    "PrometheusClientBridge",
    "Registry",
    "__version__",
    "create_monitoring_middleware",
    "create_production_collector",
    "make_metrics_app",
    "register_with_prometheus_client",
    "start_http_server",
]
# -- alerting (issue 5) --
__all__ += [
    "Alert",
    "AlertManager",
    "AlertRule",
    "AlertSeverity",
    "AlertStatus",
    "AlertmanagerNotifier",
    "EmailNotifier",
    "LogNotifier",
    "Notifier",
    "SlackNotifier",
    "WebhookNotifier",
    "create_alert_manager",
]
