"""Health probes: liveness, readiness and startup checks, the probe HTTP app and FastAPI router."""

from victor_observability.health.checker import ProductionHealthChecker, create_production_health_checker
from victor_observability.health.http import HealthApp, create_health_app, create_health_router
from victor_observability.health.model import (
    CheckResult,
    Detail,
    HealthCheckResponse,
    HealthCheckType,
    HealthStatus,
    ProbeStatus,
)

__all__ = [
    "CheckResult",
    "Detail",
    "HealthApp",
    "HealthCheckResponse",
    "HealthCheckType",
    "HealthStatus",
    "ProbeStatus",
    "ProductionHealthChecker",
    "create_health_app",
    "create_health_router",
    "create_production_health_checker",
]
