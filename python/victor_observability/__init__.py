"""victor-observability: production metrics, tracing, health probes, ASGI middleware and alerting."""

from victor_observability._core import __version__

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

__all__ = ["__version__"]
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
