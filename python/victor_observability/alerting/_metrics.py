"""The alert manager's own metrics: a Protocol, the no-op "off" object and the families on a registry."""

from __future__ import annotations

from typing import Protocol

from victor_observability.metrics.component import ComponentMetrics
from victor_observability.metrics.instruments import Counter, Gauge, Registry


class AlertMetrics(Protocol):
    """What the alert manager reports; `NoAlertMetrics` is the "off" object."""

    def fired(self, rule: str, severity: str) -> None: ...
    def active(self, rule: str, severity: str, delta: float) -> None: ...
    def notification(self, channel: str, outcome: str) -> None: ...
    def rule_error(self, rule: str) -> None: ...


class NoAlertMetrics:
    """Records nothing."""

    def fired(self, rule: str, severity: str) -> None:
        pass

    def active(self, rule: str, severity: str, delta: float) -> None:
        pass

    def notification(self, channel: str, outcome: str) -> None:
        pass

    def rule_error(self, rule: str) -> None:
        pass


class RegistryAlertMetrics(ComponentMetrics):
    """`<prefix>_alerts_fired_total{rule,severity}`, `<prefix>_alerts_active{rule,severity}`,
    `<prefix>_alert_notifications_total{channel,outcome}` and `<prefix>_alert_rule_errors_total{rule}`."""

    namespace = "alerting"

    def __init__(self, registry: Registry, prefix: str) -> None:
        self._fired = Counter(
            f"{prefix}_alerts_fired_total", "Alerts that started firing.", ["rule", "severity"], registry=registry
        )
        self._active = Gauge(
            f"{prefix}_alerts_active",
            "Alerts currently firing or acknowledged.",
            ["rule", "severity"],
            registry=registry,
        )
        self._notifications = Counter(
            f"{prefix}_alert_notifications_total",
            "Alert notification attempts by outcome (sent, retry, failed, dropped).",
            ["channel", "outcome"],
            registry=registry,
        )
        self._errors = Counter(
            f"{prefix}_alert_rule_errors_total",
            "Alert rule evaluations that raised, timed out or returned garbage.",
            ["rule"],
            registry=registry,
        )

    def fired(self, rule: str, severity: str) -> None:
        self._fired.labels(rule, severity).inc()

    def active(self, rule: str, severity: str, delta: float) -> None:
        self._active.labels(rule, severity).inc(delta)

    def notification(self, channel: str, outcome: str) -> None:
        self._notifications.labels(channel, outcome).inc()

    def rule_error(self, rule: str) -> None:
        self._errors.labels(rule).inc()
