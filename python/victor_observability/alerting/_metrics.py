"""The alerting metric families, or a no-op when the manager has no registry."""

from __future__ import annotations

from typing import Any


def alert_metrics_for(registry: Any, prefix: str) -> AlertMetrics:
    """The alert metric families on `registry`, created on first use and shared by every manager on it (a
    second manager on the same collector reuses them instead of tripping the registry's duplicate check)."""
    return registry.shared(f"alerting:{prefix}", lambda: AlertMetrics(registry, prefix))  # type: ignore[no-any-return]


class NoAlertMetrics:
    """The "off" sink: every update is a no-op."""

    def fired(self, rule: str, severity: str) -> None:
        pass

    def active(self, rule: str, severity: str, delta: float) -> None:
        pass

    def notification(self, channel: str, outcome: str) -> None:
        pass

    def rule_error(self, rule: str) -> None:
        pass


class AlertMetrics(NoAlertMetrics):
    """`<prefix>_alerts_fired_total{rule,severity}`, `<prefix>_alerts_active{rule,severity}`,
    `<prefix>_alert_notifications_total{channel,outcome}` and `<prefix>_alert_rule_errors_total{rule}`."""

    def __init__(self, registry: Any, prefix: str) -> None:
        from victor_observability.metrics.instruments import Counter, Gauge

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
