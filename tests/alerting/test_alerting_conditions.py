"""Ready-made conditions read a real ProductionMetricsCollector; the alert metrics join its export."""

from __future__ import annotations

import re

from victor_observability import AlertRule, AlertSeverity, create_alert_manager, create_production_collector
from victor_observability.alerting import (
    Notification,
    cache_hit_rate_below,
    cpu_above,
    error_rate_above,
    memory_above,
    p95_latency_above,
    task_failure_rate_above,
    token_usage_rate_above,
    tool_error_rate_above,
)


class Recorder:
    def __init__(self) -> None:
        self.notes: list[Notification] = []

    async def send(self, notification: Notification) -> None:
        self.notes.append(notification)


class Failing:
    async def send(self, notification: Notification) -> None:
        raise RuntimeError("receiver down")


def sample(text: str, name: str, labels: str) -> float:
    match = re.search(rf"^{re.escape(name)}{{{re.escape(labels)}}} (\S+)$", text, re.MULTILINE)
    assert match, f"{name}{{{labels}}} not in export"
    return float(match.group(1))


def test_request_conditions() -> None:
    collector = create_production_collector(prefix="victor", collect_system_metrics=False)
    errors = error_rate_above(collector, 5.0)
    latency = p95_latency_above(collector, 1000.0)
    assert not errors() and errors.last_value is None  # no traffic: no verdict
    assert not latency()
    for i in range(100):
        collector.record_request("/chat", "anthropic", success=i >= 10, latency_ms=2000.0 if i < 3 else 50.0)
    assert errors() and errors.last_value == 10.0
    assert not error_rate_above(collector, 10.0)()
    assert latency() is False  # 3 % slow requests: p95 is fast
    for _ in range(100):
        collector.record_request("/chat", "anthropic", success=True, latency_ms=3000.0)
    assert latency() and (latency.last_value or 0) > 1000.0


def test_cache_tool_task_conditions() -> None:
    collector = create_production_collector(prefix="victor", collect_system_metrics=False)
    cache = cache_hit_rate_below(collector, 50.0)
    tools = tool_error_rate_above(collector, 20.0)
    tasks = task_failure_rate_above(collector, 10.0)
    assert not cache() and not tools() and not tasks()
    collector.record_cache_hit("tool_cache")
    for _ in range(3):
        collector.record_cache_miss("tool_cache")
    assert cache() and cache.last_value == 25.0
    collector.record_tool_execution("read_file", success=False, duration_ms=3.0)
    collector.record_tool_execution("read_file", success=True, duration_ms=3.0)
    assert tools() and tools.last_value == 50.0
    collector.record_task_completion(success=True)
    assert not tasks()
    collector.record_task_completion(success=False)
    assert tasks() and tasks.last_value == 50.0


def test_system_and_token_rate_conditions() -> None:
    collector = create_production_collector(prefix="victor", collect_system_metrics=True)
    try:
        assert memory_above(collector, 1)()  # a live process uses more than one byte
        assert not memory_above(collector, 1 << 50)()
        cpu = cpu_above(collector, 1e9)
        assert not cpu() and cpu.last_value is not None
    finally:
        collector.close()
    now = [0.0]
    tokens = token_usage_rate_above(collector, 1000.0, clock=lambda: now[0])
    assert not tokens()  # baseline only
    collector.record_token_usage(500)
    now[0] = 60.0
    assert not tokens() and tokens.last_value == 500.0
    collector.record_token_usage(5000)
    now[0] = 120.0
    assert tokens() and tokens.last_value == 5000.0


async def test_alert_metrics_are_exported_with_the_collector() -> None:
    collector = create_production_collector(prefix="victor", collect_system_metrics=False)
    delays: list[float] = []

    async def no_sleep(seconds: float) -> None:
        delays.append(seconds)

    manager = create_alert_manager(metrics_collector=collector, sleep=no_sleep)
    manager.add_notifier("rec", Recorder())
    manager.add_notifier("broken", Failing())
    errors = error_rate_above(collector, 5.0)
    manager.add_rule(
        AlertRule.builder()
        .name("high_error_rate")
        .condition(errors)
        .severity(AlertSeverity.CRITICAL)
        .notification_channels(["rec", "broken"])
        .build()
    )
    for _ in range(10):
        collector.record_request("/chat", "anthropic", success=False, latency_ms=5.0)
    fired = await manager.check_and_alert()
    assert fired[0].value == 100.0  # the condition's reading travels with the alert
    assert await manager.flush(10.0)
    text = collector.export_prometheus()
    assert sample(text, "victor_alerts_fired_total", 'rule="high_error_rate",severity="critical"') == 1
    assert sample(text, "victor_alerts_active", 'rule="high_error_rate",severity="critical"') == 1
    assert sample(text, "victor_alert_notifications_total", 'channel="rec",outcome="sent"') == 1
    # the broken channel: retried (the default policy: 4 attempts), then failed
    assert sample(text, "victor_alert_notifications_total", 'channel="broken",outcome="retry"') == 3
    assert sample(text, "victor_alert_notifications_total", 'channel="broken",outcome="failed"') == 1
    assert len(delays) == 3
    assert "receiver down" in manager.get_failed_notifications()[0].error
    for _ in range(1000):
        collector.record_request("/chat", "anthropic", success=True, latency_ms=5.0)
    await manager.check_and_alert()
    text = collector.export_prometheus()
    assert sample(text, "victor_alerts_active", 'rule="high_error_rate",severity="critical"') == 0
    # a second manager on the same collector shares the families instead of clashing
    create_alert_manager(metrics_collector=collector)
