"""Alerting: rules with severities, an AlertManager that deduplicates alerts, and notification channels."""

from victor_observability.alerting.conditions import (
    MetricCondition,
    cache_hit_rate_below,
    cpu_above,
    error_rate_above,
    memory_above,
    p95_latency_above,
    task_failure_rate_above,
    token_usage_rate_above,
    tool_error_rate_above,
)
from victor_observability.alerting.delivery import DeliveryFailure, DeliveryPolicy
from victor_observability.alerting.manager import AlertManager, create_alert_manager
from victor_observability.alerting.notification import (
    Notification,
    NotificationChannel,
    NotificationError,
    Notifier,
    SendAlert,
)
from victor_observability.alerting.notifiers import AlertmanagerNotifier, LogNotifier, SlackNotifier, WebhookNotifier
from victor_observability.alerting.rules import (
    Alert,
    AlertRule,
    AlertRuleBuilder,
    AlertSeverity,
    AlertStatus,
    RuleState,
)
from victor_observability.alerting.smtp import EmailNotifier

__all__ = [
    "Alert",
    "AlertManager",
    "AlertRule",
    "AlertRuleBuilder",
    "AlertSeverity",
    "AlertStatus",
    "AlertmanagerNotifier",
    "DeliveryFailure",
    "DeliveryPolicy",
    "EmailNotifier",
    "LogNotifier",
    "MetricCondition",
    "Notification",
    "NotificationChannel",
    "NotificationError",
    "Notifier",
    "RuleState",
    "SendAlert",
    "SlackNotifier",
    "WebhookNotifier",
    "cache_hit_rate_below",
    "cpu_above",
    "create_alert_manager",
    "error_rate_above",
    "memory_above",
    "p95_latency_above",
    "task_failure_rate_above",
    "token_usage_rate_above",
    "tool_error_rate_above",
]
