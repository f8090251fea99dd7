"""The pure-Python alerting module's public behaviour, case by case (only the import line differs).

Notifiers talk to a real HTTP receiver on 127.0.0.1.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from victor_observability import (
    Alert,
    AlertManager,
    AlertRule,
    AlertSeverity,
    AlertStatus,
    NotificationChannel,
    WebhookNotifier,
    create_alert_manager,
)


class _Handler(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["content-length"]))
        self.server.bodies.append(json.loads(body))  # type: ignore[attr-defined]
        self.send_response(int(self.path.rsplit("/", 1)[-1]))
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def receiver() -> Iterator[tuple[str, list[Any]]]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.bodies = []  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", server.bodies  # type: ignore[attr-defined]
    server.shutdown()
    server.server_close()


def _alert(message: str = "Test alert") -> Alert:
    return Alert(
        id="test-id",
        rule_name="test-rule",
        severity=AlertSeverity.WARNING,
        status=AlertStatus.FIRING,
        message=message,
    )


def _rule(**options: Any) -> AlertRule:
    return AlertRule(name="test-rule", description="Test", condition=lambda: True, **options)


def test_alert_fields_and_lifecycle() -> None:
    alert = _alert()
    assert (alert.id, alert.rule_name, alert.severity, alert.status) == ("test-id", "test-rule", "warning", "firing")
    data = alert.to_dict()
    assert (data["id"], data["rule_name"], data["severity"], data["status"]) == (
        "test-id",
        "test-rule",
        "warning",
        "firing",
    )
    assert data["details"] == {}
    alert.acknowledge()
    assert alert.status == AlertStatus.ACKNOWLEDGED and alert.acknowledged_at is not None
    alert.resolve()
    assert alert.status == AlertStatus.RESOLVED and alert.resolved_at is not None


def test_rule_positional_fields_of_the_reference() -> None:
    def condition() -> bool:
        return True

    rule = AlertRule("r", "desc", condition, AlertSeverity.ERROR, True, ["slack"], 60.0, 5.0, 30.0, {"team": "a"})
    assert (rule.name, rule.description, rule.condition, rule.severity) == ("r", "desc", condition, "error")
    assert (rule.enabled, rule.notification_channels, rule.cooldown_seconds) == (True, ["slack"], 60.0)
    assert (rule.threshold, rule.evaluation_interval_seconds, rule.labels, rule.last_fired) == (
        5.0,
        30.0,
        {"team": "a"},
        None,
    )
    default = _rule()
    assert default.severity is AlertSeverity.WARNING and default.cooldown_seconds == 300.0
    assert default.notification_channels == [] and default.enabled


def test_should_fire_enabled_and_cooldown() -> None:
    assert _rule(severity=AlertSeverity.WARNING).should_fire()
    assert not _rule(enabled=False).should_fire()
    rule = _rule(cooldown_seconds=0.1)
    assert rule.should_fire()
    rule.fire("Test alert")
    assert rule.last_fired is not None and not rule.should_fire()
    time.sleep(0.15)
    assert rule.should_fire()


def test_fire_carries_message_and_details() -> None:
    alert = _rule().fire("Test alert", {"detail": "value"})
    assert (alert.rule_name, alert.message, alert.details, alert.status) == (
        "test-rule",
        "Test alert",
        {"detail": "value"},
        AlertStatus.FIRING,
    )


def test_builder_and_its_required_fields() -> None:
    rule = (
        AlertRule.builder()
        .name("test-rule")
        .description("Test description")
        .condition(lambda: True)
        .severity(AlertSeverity.CRITICAL)
        .notification_channels(["slack"])
        .cooldown(60.0)
        .build()
    )
    assert (rule.name, rule.description, rule.severity) == ("test-rule", "Test description", "critical")
    assert (rule.notification_channels, rule.cooldown_seconds) == (["slack"], 60.0)
    with pytest.raises(ValueError, match="name"):
        AlertRule.builder().description("test").condition(lambda: True).build()
    with pytest.raises(ValueError, match="condition"):
        AlertRule.builder().name("test").description("test").build()


def test_private_views_by_name(receiver: tuple[str, list[Any]]) -> None:
    manager = AlertManager()
    rule = _rule()
    manager.add_rule(rule)
    assert "test-rule" in manager._rules and manager._rules["test-rule"] is rule
    manager.remove_rule("test-rule")
    assert "test-rule" not in manager._rules
    notifier = WebhookNotifier(receiver[0] + "/200")
    manager.add_notifier("webhook", notifier)
    assert manager._notifiers["webhook"] is notifier
    manager.remove_notifier("webhook")
    assert "webhook" not in manager._notifiers
    with pytest.raises(TypeError):
        manager._rules["x"] = rule  # type: ignore[index]


async def test_check_and_alert_notifies_the_rule_channels(receiver: tuple[str, list[Any]]) -> None:
    url, bodies = receiver
    manager = AlertManager()
    manager.add_notifier("webhook", WebhookNotifier(url + "/200"))
    manager.add_rule(_rule(notification_channels=["webhook"]))
    alerts = await manager.check_and_alert()
    assert [a.rule_name for a in alerts] == ["test-rule"]
    assert await manager.flush(5.0)
    assert [b["alert"]["rule_name"] for b in bodies] == ["test-rule"]
    assert manager._rules["test-rule"].last_fired is not None


async def test_check_and_alert_without_notifier_and_disabled_rules() -> None:
    manager = AlertManager()
    manager.add_rule(_rule())
    manager.add_rule(AlertRule("off", "disabled", lambda: True, enabled=False))
    assert [a.rule_name for a in await manager.check_and_alert()] == ["test-rule"]
    await manager.flush(5.0)


def test_active_alerts_assigned_by_id_resolve_and_acknowledge() -> None:
    manager = AlertManager()
    alert = _alert("Test")
    manager._active_alerts["test-id"] = alert
    assert [a.id for a in manager.get_active_alerts()] == ["test-id"]
    assert manager.acknowledge_alert("test-id") is True and alert.status == AlertStatus.ACKNOWLEDGED
    assert manager.resolve_alert("test-id") is True
    assert "test-id" not in manager._active_alerts and alert.status == AlertStatus.RESOLVED
    assert manager.resolve_alert("nonexistent") is False
    assert manager.acknowledge_alert("nonexistent") is False


async def test_every_notifier_has_send_alert(receiver: tuple[str, list[Any]]) -> None:
    url, bodies = receiver
    assert await WebhookNotifier(url + "/200").send_alert(_alert()) is True
    assert bodies[-1]["alert"]["id"] == "test-id"
    assert await WebhookNotifier(url + "/500").send_alert(_alert()) is False  # never raises


async def test_a_reference_style_channel_is_delivered_to() -> None:
    got: list[str] = []

    class Recorder(NotificationChannel):
        async def send_alert(self, alert: Alert) -> bool:
            got.append(alert.rule_name)
            return True

    class DuckTyped:
        async def send_alert(self, alert: Alert) -> bool:
            got.append("duck:" + alert.rule_name)
            return True

    manager = create_alert_manager()
    duck = DuckTyped()
    manager.add_notifier("rec", Recorder())
    manager.add_notifier("duck", duck)
    assert manager._notifiers["duck"] is duck
    manager.add_rule(_rule(notification_channels=["rec", "duck"]))
    await manager.check_and_alert()
    assert await manager.flush(5.0)
    assert sorted(got) == ["duck:test-rule", "test-rule"]


def test_enums_compare_equal_to_strings_and_factory() -> None:
    assert [AlertSeverity.INFO, AlertSeverity.WARNING, AlertSeverity.ERROR, AlertSeverity.CRITICAL] == [
        "info",
        "warning",
        "error",
        "critical",
    ]
    assert [AlertStatus.FIRING, AlertStatus.RESOLVED, AlertStatus.ACKNOWLEDGED] == [
        "firing",
        "resolved",
        "acknowledged",
    ]
    assert isinstance(create_alert_manager(), AlertManager)
