"""Alert rules, the alert state machine driven by a fake clock, isolation of failing rules, and the guide's API."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from victor_observability import (
    Alert,
    AlertManager,
    AlertRule,
    AlertSeverity,
    AlertStatus,
    EmailNotifier,
    SlackNotifier,
    WebhookNotifier,
    create_alert_manager,
)
from victor_observability.alerting import DeliveryPolicy, Notification


class FakeClock:
    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class Recorder:
    """A channel that keeps what it is sent (a real Notifier, in process)."""

    def __init__(self) -> None:
        self.notes: list[Notification] = []

    async def send(self, notification: Notification) -> None:
        self.notes.append(notification)

    @property
    def kinds(self) -> list[tuple[str, str, bool]]:
        return [(n.alert.rule_name, n.kind, n.repeat) for n in self.notes]


class Switch:
    """A condition whose answer the test flips."""

    def __init__(self, value: Any = False) -> None:
        self.value = value
        self.calls = 0

    def __call__(self) -> Any:
        self.calls += 1
        return self.value


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
def manager(clock: FakeClock, recorder: Recorder) -> AlertManager:
    m = create_alert_manager(clock=clock)
    m.add_notifier("rec", recorder)
    return m


def rule(name: str, condition: Any, **options: Any) -> AlertRule:
    builder = AlertRule.builder().name(name).condition(condition).notification_channels(["rec"])
    for key, value in options.items():
        builder = getattr(builder, key)(value)
    return builder.build()


async def round_(manager: AlertManager) -> list[str]:
    fired = await manager.check_and_alert()
    assert await manager.flush(5.0)
    return [a.rule_name for a in fired]


# -- rules ---------------------------------------------------------------------------------------------------------


def test_builder_sets_every_option() -> None:
    r = (
        AlertRule.builder()
        .name("high_error_rate")
        .description("Error rate exceeds 5%")
        .condition(lambda: 7.0)
        .severity(AlertSeverity.CRITICAL)
        .notification_channels(["slack", "email"])
        .cooldown(300)
        .threshold(5.0)
        .labels({"service": "api"})
        .annotations({"runbook": "https://runbooks/errors"})
        .for_duration(60)
        .keep_firing_for(30)
        .evaluation_interval(15)
        .repeat_interval(3600)
        .timeout(2)
        .build()
    )
    assert r.severity is AlertSeverity.CRITICAL
    assert r.notification_channels == ["slack", "email"]
    assert (r.cooldown, r.for_duration, r.keep_firing_for, r.evaluation_interval, r.timeout) == (300, 60, 30, 15, 2)
    assert r.effective_repeat_interval == 3600
    assert r.exceeds(7.0) and not r.exceeds(5.0)
    assert r.to_dict()["labels"] == {"service": "api"}
    assert AlertRule.builder().name("x").condition(lambda: 1).threshold(3, "<").build().exceeds(1)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"cooldown": -1}, "cooldown"),
        ({"for_duration": -5}, "for_duration"),
        ({"evaluation_interval": 0}, "evaluation_interval"),
        ({"severity": "apocalyptic"}, "severity"),
        ({"labels": {"bad-name": "x"}}, "bad-name"),
        ({"labels": {"severity": "x"}}, "reserved"),
        ({"labels": {"ok": 3}}, "must be a string"),
        ({"notification_channels": [""]}, "channel"),
    ],
)
def test_definition_mistakes_raise_value_error_naming_the_rule(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message) as info:
        rule("my_rule", lambda: False, **options)
    assert "my_rule" in str(info.value)


def test_builder_needs_name_and_condition(manager: AlertManager) -> None:
    with pytest.raises(ValueError, match="name"):
        AlertRule.builder().condition(lambda: True).build()
    with pytest.raises(ValueError, match="needs a condition"):
        AlertRule.builder().name("no_condition").build()
    with pytest.raises(ValueError, match="callable"):
        AlertRule.builder().name("not_callable").condition(5).build()  # type: ignore[arg-type]
    manager.add_rule(rule("dup", lambda: False))
    replacement = rule("dup", lambda: False)
    manager.add_rule(replacement)  # the same name again replaces the rule, as the pure-Python manager does
    assert manager.get_rules() == [replacement]


def test_alert_to_dict_resolve_acknowledge() -> None:
    alert = Alert(rule_name="r", severity=AlertSeverity.ERROR, message="m", labels={"a": "b"}, started_at=5.0)
    assert alert.to_dict()["status"] == "firing"
    alert.acknowledge(at=6.0)
    assert alert.status is AlertStatus.ACKNOWLEDGED and alert.acknowledged_at == 6.0
    alert.resolve(at=7.0)
    data = alert.to_dict()
    assert data["status"] == "resolved" and data["resolved_at"] == 7.0 and data["labels"] == {"a": "b"}
    assert data["severity"] == "error" and len(data["fingerprint"]) == 16


# -- the state machine, driven by the fake clock --------------------------------------------------------------------


async def test_fires_once_dedupes_repeats_after_cooldown_then_resolves(
    manager: AlertManager, clock: FakeClock, recorder: Recorder
) -> None:
    cond = Switch(True)
    manager.add_rule(rule("high_errors", cond, cooldown=300))
    assert await round_(manager) == ["high_errors"]
    alert = manager.get_active_alerts()[0]
    assert alert.status is AlertStatus.FIRING and alert.fired_at == clock.now
    for _ in range(5):  # deduplicated while active, inside the cooldown
        clock.advance(50)
        assert await round_(manager) == []
    assert recorder.kinds == [("high_errors", "firing", False)]
    clock.advance(50)  # 300 s after the first notification: one repeat
    assert await round_(manager) == []
    assert recorder.kinds[-1] == ("high_errors", "firing", True)
    assert manager.get_active_alerts()[0].id == alert.id
    cond.value = False
    clock.advance(10)
    await round_(manager)
    assert recorder.kinds[-1] == ("high_errors", "resolved", False)
    assert manager.get_active_alerts() == []
    assert [a.id for a in manager.get_alert_history()] == [alert.id]
    assert alert.status is AlertStatus.RESOLVED and alert.resolved_at == clock.now
    assert len({n.idempotency_key for n in recorder.notes}) == 3


async def test_refire_inside_cooldown_is_held_back_until_cooldown(
    manager: AlertManager, clock: FakeClock, recorder: Recorder
) -> None:
    cond = Switch(True)
    manager.add_rule(rule("flappy", cond, cooldown=100))
    await round_(manager)
    cond.value = False
    clock.advance(10)
    await round_(manager)
    cond.value = True
    clock.advance(10)
    assert await round_(manager) == ["flappy"]  # the state is tracked ...
    assert recorder.kinds == [("flappy", "firing", False), ("flappy", "resolved", False)]  # ... no notification yet
    clock.advance(85)
    await round_(manager)
    assert recorder.kinds[-1] == ("flappy", "firing", False)


async def test_for_duration_pending_then_firing(manager: AlertManager, clock: FakeClock, recorder: Recorder) -> None:
    cond = Switch(True)
    manager.add_rule(rule("slow", cond, for_duration=60))
    assert await round_(manager) == []
    [pending] = manager.get_active_alerts(include_pending=True)
    assert pending.status is AlertStatus.PENDING and manager.get_active_alerts() == []
    clock.advance(30)
    cond.value = False  # dropped before for_duration: back to inactive, nothing sent
    await round_(manager)
    assert manager.get_active_alerts(include_pending=True) == [] and recorder.notes == []
    cond.value = True
    await round_(manager)
    clock.advance(59)
    assert await round_(manager) == []
    clock.advance(1)
    assert await round_(manager) == ["slow"]
    assert recorder.kinds == [("slow", "firing", False)]


async def test_keep_firing_for_holds_the_alert_on_the_way_down(
    manager: AlertManager, clock: FakeClock, recorder: Recorder
) -> None:
    cond = Switch(True)
    manager.add_rule(rule("sticky", cond, keep_firing_for=120))
    await round_(manager)
    cond.value = False
    clock.advance(60)
    await round_(manager)
    assert manager.get_active_alerts()[0].status is AlertStatus.FIRING
    cond.value = True  # back within the window: same alert, no new notification
    clock.advance(30)
    await round_(manager)
    cond.value = False
    clock.advance(10)
    await round_(manager)  # cleared again: the window restarts here
    clock.advance(119)
    await round_(manager)
    assert len(manager.get_active_alerts()) == 1
    clock.advance(1)
    await round_(manager)
    assert manager.get_active_alerts() == []
    assert recorder.kinds == [("sticky", "firing", False), ("sticky", "resolved", False)]


async def test_same_rule_different_labels_are_different_alerts(
    manager: AlertManager, clock: FakeClock, recorder: Recorder
) -> None:
    bad = [{"endpoint": "/chat"}, {"endpoint": "/tools"}]
    manager.add_rule(rule("endpoint_errors", lambda: list(bad), labels={"service": "api"}))
    assert await round_(manager) == ["endpoint_errors", "endpoint_errors"]
    labels = sorted(a.labels["endpoint"] for a in manager.get_active_alerts())
    assert labels == ["/chat", "/tools"]
    assert all(a.labels["service"] == "api" for a in manager.get_active_alerts())
    bad.pop(0)
    clock.advance(1)
    await round_(manager)
    assert [a.labels["endpoint"] for a in manager.get_active_alerts()] == ["/tools"]
    assert [(n.kind, n.alert.labels["endpoint"]) for n in recorder.notes][-1] == ("resolved", "/chat")


async def test_numeric_condition_uses_threshold(manager: AlertManager, recorder: Recorder) -> None:
    value = [3.0]
    manager.add_rule(
        AlertRule.builder().name("latency").condition(lambda: value[0]).threshold(5.0).build(),
    )
    assert await round_(manager) == []
    value[0] = 7.5
    fired = await manager.check_and_alert()
    assert fired[0].value == 7.5


async def test_acknowledge_stops_repeats_but_not_resolution(
    manager: AlertManager, clock: FakeClock, recorder: Recorder
) -> None:
    cond = Switch(True)
    manager.add_rule(rule("acked", cond, cooldown=10))
    await round_(manager)
    alert_id = manager.get_active_alerts()[0].id
    assert manager.acknowledge_alert(alert_id)
    assert not manager.acknowledge_alert("nope")
    clock.advance(100)
    await round_(manager)
    assert recorder.kinds == [("acked", "firing", False)]
    assert manager.get_alert(alert_id).status is AlertStatus.ACKNOWLEDGED  # type: ignore[union-attr]
    cond.value = False
    await round_(manager)
    assert recorder.kinds[-1] == ("acked", "resolved", False)


async def test_manual_resolve_and_remove_rule_notify(manager: AlertManager, recorder: Recorder) -> None:
    manager.add_rule(rule("a", lambda: True, cooldown=0))
    manager.add_rule(rule("b", lambda: True))
    await round_(manager)
    a = next(x for x in manager.get_active_alerts() if x.rule_name == "a")
    assert manager.resolve_alert(a.id) and not manager.resolve_alert(a.id)
    assert manager.remove_rule("b") and not manager.remove_rule("b")
    assert await manager.flush(5.0)
    resolved = sorted(k for k in recorder.kinds if k[1] == "resolved")
    assert resolved == [("a", "resolved", False), ("b", "resolved", False)]
    assert await round_(manager) == ["a"]  # still true: a new alert


async def test_evaluation_interval_skips_rules_not_due(manager: AlertManager, clock: FakeClock) -> None:
    cond = Switch(False)
    manager.add_rule(rule("rare", cond, evaluation_interval=60))
    for _ in range(4):
        await round_(manager)
        clock.advance(20)
    assert cond.calls == 2  # at t=0 and t=60


async def test_default_log_notifier_and_unknown_channel(clock: FakeClock, caplog: pytest.LogCaptureFixture) -> None:
    m = AlertManager(clock=clock)
    m.add_rule(AlertRule.builder().name("logged").description("disk full").condition(lambda: True).build())
    m.add_rule(AlertRule.builder().name("lost").condition(lambda: True).notification_channels(["nowhere"]).build())
    with caplog.at_level(logging.INFO, logger="victor_observability.alerting"):
        await m.check_and_alert()
        assert await m.flush(5.0)
    assert "[FIRING] logged (warning): disk full" in caplog.text
    [failure] = m.get_failed_notifications()
    assert failure.channel == "nowhere" and "no notifier named 'nowhere'" in failure.error


async def test_run_loop_starts_and_stops_cleanly() -> None:
    m = AlertManager()
    recorder = Recorder()
    m.add_notifier("rec", recorder)
    m.add_rule(rule("loop", lambda: True))
    task = m.start(interval=0.01)
    assert m.running
    with pytest.raises(RuntimeError):
        m.start(interval=0.01)
    for _ in range(500):
        if recorder.notes:
            break
        await asyncio.sleep(0.01)
    await m.stop(timeout=5.0)
    assert task.done() and not task.cancelled() and not m.running
    assert recorder.kinds == [("loop", "firing", False)]


# -- failing rules are isolated ---------------------------------------------------------------------------------------


@pytest.fixture
def release() -> Iterator[threading.Event]:
    event = threading.Event()
    yield event
    event.set()  # let a hung condition thread finish


async def test_raising_and_hanging_conditions_leave_other_rules_working(
    manager: AlertManager, clock: FakeClock, caplog: pytest.LogCaptureFixture, release: threading.Event
) -> None:
    def boom() -> bool:
        raise RuntimeError("database is gone")

    async def hang_async() -> bool:
        await asyncio.Event().wait()
        return True

    def hang_sync() -> bool:
        release.wait(30)
        return False

    manager.add_rule(rule("raises", boom))
    manager.add_rule(rule("hangs_async", hang_async, timeout=0.2))
    manager.add_rule(rule("hangs_sync", hang_sync, timeout=0.2))
    manager.add_rule(rule("healthy", lambda: True))
    with caplog.at_level(logging.WARNING, logger="victor_observability.alerting"):
        for _ in range(3):
            fired = await round_(manager)
            clock.advance(1)
    assert fired == [] and [a.rule_name for a in manager.get_active_alerts()] == ["healthy"]
    states = manager.get_rule_states()
    assert states["raises"].health == "error" and states["raises"].error_count == 3
    assert states["raises"].last_error == "RuntimeError: database is gone"
    assert states["hangs_async"].health == "error"
    assert states["hangs_async"].last_error == "condition timed out after 0.2s"
    assert states["hangs_sync"].health == "error"
    # the hung thread is not started again while it is stuck
    assert states["hangs_sync"].last_error == "condition still running in its thread after a timeout"
    assert states["healthy"].health == "ok"
    # logged once per rule, not once per round
    assert caplog.text.count("'raises' failed to evaluate") == 1
    assert manager.state()["rules"]["raises"]["health"] == "error"
    release.set()
    for _ in range(500):
        if manager.get_rule_states()["hangs_sync"].health != "error":
            break
        await round_(manager)
        await asyncio.sleep(0.01)
    assert manager.get_rule_states()["hangs_sync"].health == "ok"


async def test_garbage_results_are_rule_errors(manager: AlertManager) -> None:
    manager.add_rule(rule("none", lambda: None))
    manager.add_rule(rule("text", lambda: "yes"))
    manager.add_rule(rule("number_without_threshold", lambda: 3.0))
    manager.add_rule(rule("bad_labels", lambda: [{"bad-name": "x"}]))
    manager.add_rule(rule("ok", lambda: False))
    await round_(manager)
    health = {name: s.health for name, s in manager.get_rule_states().items()}
    assert health == {
        "none": "error",
        "text": "error",
        "number_without_threshold": "error",
        "bad_labels": "error",
        "ok": "ok",
    }


async def test_slow_channel_never_blocks_evaluation(manager: AlertManager, clock: FakeClock) -> None:
    gate = asyncio.Event()

    class Stuck:
        async def send(self, notification: Notification) -> None:
            await gate.wait()

    manager.add_notifier("stuck", Stuck())
    manager.add_rule(AlertRule.builder().name("s").condition(lambda: True).notification_channels(["stuck"]).build())
    assert [a.rule_name for a in await manager.check_and_alert()] == ["s"]
    assert manager.state()["notifications"]["in_flight"] == 1  # evaluation returned while delivery waits
    gate.set()
    assert await manager.flush(5.0)


# -- the guide's examples (SPEC.md section 5 and "Alert Thresholds") ---------------------------------------------------


async def test_guide_examples_run_as_written() -> None:
    def get_error_rate() -> float:
        return 0.5

    def get_p95_latency() -> float:
        return 120.0

    manager = create_alert_manager()
    slack = SlackNotifier(webhook_url="https://hooks.slack.com/...")
    manager.add_notifier("slack", slack)
    email = EmailNotifier(
        smtp_host="smtp.gmail.com",
        smtp_port=587,
        username="alerts@victor.ai",
        password="***",
        to_addresses=["oncall@victor.ai"],
    )
    manager.add_notifier("email", email)
    webhook = WebhookNotifier("https://your-webhook-url.com/alerts")
    manager.add_notifier("webhook", webhook)
    high_error_rate_rule = (
        AlertRule.builder()
        .name("high_error_rate")
        .description("Error rate exceeds 5%")
        .condition(lambda: get_error_rate() > 5.0)
        .severity(AlertSeverity.CRITICAL)
        .notification_channels(["slack", "email"])
        .cooldown(300)  # 5 minutes
        .build()
    )
    manager.add_rule(high_error_rate_rule)
    rule = (
        AlertRule.builder()
        .name("high_latency")
        .condition(lambda: get_p95_latency() > 5000)  # 5 seconds
        .severity(AlertSeverity.WARNING)
        .cooldown(300)  # Don't alert more than once per 5 minutes
        .build()
    )
    manager.add_rule(rule)

    async def monitor_loop() -> None:
        while True:
            await manager.check_and_alert()
            await asyncio.sleep(60)

    task = asyncio.ensure_future(monitor_loop())
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert manager.get_active_alerts() == []
    assert {s.health for s in manager.get_rule_states().values()} == {"ok"}


# -- properties of the state machine over random condition histories --


@settings(max_examples=60, deadline=None)
@given(
    steps=st.lists(st.tuples(st.booleans(), st.integers(0, 400)), min_size=1, max_size=40),
    for_duration=st.sampled_from([0, 30, 120]),
    keep=st.sampled_from([0, 60]),
    cooldown=st.sampled_from([0, 100, 300]),
)
def test_state_machine_invariants(steps: list[tuple[bool, int]], for_duration: int, keep: int, cooldown: int) -> None:
    clock = FakeClock()
    recorder = Recorder()
    manager = AlertManager(clock=clock)
    manager.add_notifier("rec", recorder)
    cond = Switch(False)
    manager.add_rule(rule("prop", cond, for_duration=for_duration, keep_firing_for=keep, cooldown=cooldown))
    true_since: float | None = None

    async def play() -> None:
        nonlocal true_since
        for value, advance in steps:
            clock.advance(advance)
            cond.value = value
            true_since = (true_since if true_since is not None else clock.now) if value else None
            fired = await manager.check_and_alert()
            for alert in fired:  # fired only after the condition held for for_duration
                assert true_since is not None and clock.now - true_since >= for_duration
                assert alert.fired_at is not None and alert.fired_at - alert.started_at >= for_duration
            assert len(manager.get_active_alerts(include_pending=True)) <= 1
        assert await manager.flush(5.0)

    asyncio.run(play())
    open_alert: str | None = None
    last_firing: float | None = None
    for note in recorder.notes:
        if note.kind == "firing":
            assert open_alert in (None, note.alert.id)  # never two alerts of one series at once
            open_alert = note.alert.id
            if last_firing is not None:
                assert note.created_at - last_firing >= cooldown  # cooldown / repeat interval respected
            last_firing = note.created_at
        else:
            assert open_alert == note.alert.id  # a resolution follows its own firing notification
            open_alert = None


# -- delivery policy --


@given(attempt=st.integers(1, 12), rand=st.floats(0.0, 1.0), retry_after=st.none() | st.floats(0.0, 1000.0))
def test_backoff_doubles_is_capped_and_jittered_within_bounds(
    attempt: int, rand: float, retry_after: float | None
) -> None:
    policy = DeliveryPolicy(base_delay=0.5, max_delay=30.0, max_retry_after=300.0, jitter=0.5)
    backoff = min(30.0, 0.5 * 2 ** (attempt - 1))
    delay = policy.delay(attempt, retry_after, rand)
    if retry_after is None:
        assert backoff * 0.5 <= delay <= backoff  # doubled, capped, jittered by at most half
    else:
        honoured = min(retry_after, 300.0)  # Retry-After is a lower bound, up to the cap
        assert honoured <= delay <= max(backoff, honoured)
    with pytest.raises(ValueError, match="max_attempts"):
        DeliveryPolicy(max_attempts=0)


async def test_sync_notifier_runs_in_a_thread_and_overflow_is_dropped(clock: FakeClock) -> None:
    seen: list[str] = []
    gate = asyncio.Event()

    class Blocking:
        def send(self, notification: Notification) -> None:  # a blocking SDK call: must not run on the loop
            seen.append(threading.current_thread().name)

    class Stuck:
        async def send(self, notification: Notification) -> None:
            await gate.wait()

    manager = AlertManager(clock=clock, max_in_flight=1)
    manager.add_notifier("blocking", Blocking())  # type: ignore[arg-type]
    manager.add_rule(AlertRule.builder().name("a").condition(lambda: True).build())
    await manager.check_and_alert()
    assert await manager.flush(5.0)
    assert seen and seen[0] != threading.current_thread().name
    manager.remove_notifier("blocking")
    manager.add_notifier("stuck", Stuck())
    manager.add_rule(AlertRule.builder().name("b").condition(lambda: True).build())
    manager.add_rule(AlertRule.builder().name("c").condition(lambda: True).build())
    await manager.check_and_alert()
    assert manager.state()["notifications"]["dropped"] == 1  # one in flight allowed, the other dropped
    assert [f.error for f in manager.get_failed_notifications()] == ["dropped: too many deliveries in flight"]
    gate.set()
    assert await manager.flush(5.0)
