"""victor-observability: production metrics, tracing, health probes, ASGI middleware and alerting.

Drop-in for the guide's ``victor.observability``: change the import line only.

>>> from victor_observability import create_production_collector
>>> collector = create_production_collector(collect_system_metrics=False)
>>> collector.record_cache_hit("tool_cache")
"""

from victor_observability._core import __version__
from victor_observability.collector import MetricCategory, ProductionMetricsCollector, create_production_collector
from victor_observability.health import (  # health probes (issue 7)
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
from victor_observability.prometheus_bridge import PrometheusClientBridge, register_with_prometheus_client

__all__ = [
    "REGISTRY",
    "Counter",
    "Gauge",
    "Histogram",
    "MetricCategory",
    "ProductionMetricsCollector",
    "PrometheusClientBridge",
    "Registry",
    "__version__",
    "create_production_collector",
    "make_metrics_app",
    "register_with_prometheus_client",
    "start_http_server",
]

# health probes (issue 7)
__all__ += [
    "CheckResult",
    "HealthApp",
    "HealthCheckResponse",
    "HealthCheckType",
    "HealthStatus",
    "ProductionHealthChecker",
    "create_health_app",
    "create_health_router",
    "create_production_health_checker",
]
