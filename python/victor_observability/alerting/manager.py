"""AlertManager: rules and channels, the evaluation round and run loop, and the alert/delivery state."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random as _random
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, MutableMapping, Sequence
from typing import Any, TypeVar

from victor_observability.alerting._engine import Engine, RuleEntry
from victor_observability.alerting._metrics import AlertMetrics, NoAlertMetrics, RegistryAlertMetrics
from victor_observability.alerting.delivery import Channel, DeliveryFailure, DeliveryPolicy, Dispatcher, Sleep
from victor_observability.alerting.notification import Notification, Notifier, SendAlertAdapter
from victor_observability.alerting.notifiers import LogNotifier
from victor_observability.alerting.rules import Alert, AlertRule, AlertStatus, RuleState

logger = logging.getLogger("victor_observability.alerting")


class AlertManager:
    """Evaluates alert rules, deduplicates their alerts and notifies channels without blocking the caller.

    Semantics: a true condition makes a pending alert that fires after `for_duration`; a firing alert notifies once,
    then repeats only every repeat interval (the cooldown by default) and never while acknowledged; when the
    condition clears (and `keep_firing_for` has passed) it resolves and a resolved notification goes out. Alerts are
    keyed by rule + labels. A condition that raises, times out or returns garbage puts its rule in the error state
    (logged once, counted) and leaves its alerts as they were.

    Hang protection: async conditions are always bounded by `asyncio.wait_for` (the rule's `timeout`, else
    `condition_timeout`). Sync conditions are called directly in the evaluation loop (cheap reads are the norm, and
    a thread per call would cost more than the read); give a sync rule `.timeout(s)` to run it in its own daemon
    thread bounded by that timeout. A hung thread cannot be killed: the rule stays in error and is not started again
    until the thread returns.

    >>> import asyncio
    >>> manager = AlertManager(clock=lambda: 100.0)
    >>> manager.add_rule(AlertRule.builder().name("always").condition(lambda: True).build())
    >>> [a.rule_name for a in asyncio.run(manager.check_and_alert())]
    ['always']
    """

    def __init__(
        self,
        *,
        clock: Callable[[], float] = time.time,
        sleep: Sleep = asyncio.sleep,
        random: Callable[[], float] = _random.random,
        delivery_policy: DeliveryPolicy | None = None,
        condition_timeout: float = 10.0,
        registry: Any = None,
        prefix: str | None = None,
        history_size: int = 1000,
        max_in_flight: int = 1000,
        default_notifier: Notifier | None = None,
    ) -> None:
        if condition_timeout <= 0:
            raise ValueError("AlertManager: condition_timeout must be > 0")
        if registry is not None:
            self._metrics: AlertMetrics = RegistryAlertMetrics.on(registry, prefix or None)
        else:
            self._metrics = NoAlertMetrics()
        self._clock = clock
        self._policy = delivery_policy or DeliveryPolicy()
        self._channels: dict[str, Channel] = {}
        self._default = Channel("log", default_notifier or LogNotifier(), self._policy)
        self._dispatcher = Dispatcher(
            clock=clock, sleep=sleep, random=random, on_outcome=self._metrics.notification, max_in_flight=max_in_flight
        )
        self._engine = Engine(clock, condition_timeout, self._notify, self._metrics, history_size)
        self._queued: list[tuple[Sequence[str], Notification]] = []
        # Alerts handed to the manager through `_active_alerts[id] = alert` (the reference's fixtures do).
        self._adopted: dict[str, Alert] = {}
        self._task: asyncio.Task[None] | None = None
        self._stop: asyncio.Event | None = None

    def __repr__(self) -> str:
        return f"AlertManager(rules={len(self._engine.entries)}, channels={sorted(self._channels)})"

    # -- rules and channels ------------------------------------------------------------------------------------

    def add_rule(self, rule: AlertRule) -> None:
        """Register a rule; a rule of the same name is replaced (its alerts carry over), as the reference does."""
        if not isinstance(rule, AlertRule):
            raise ValueError(f"add_rule expects an AlertRule, got {type(rule).__name__}")
        old = self._engine.remove(rule.name)
        self._engine.add(rule)
        if old is not None:
            logger.debug("alert rule %r added again: replacing it", rule.name)
            self._engine.adopt(old, self._engine.entries[rule.name])

    def remove_rule(self, name: str) -> bool:
        """Unregister a rule; its active alerts resolve (and notify). False if there was no such rule."""
        entry = self._engine.remove(name)
        if entry is None:
            return False
        now = self._clock()
        for key, alert in list(entry.alerts.items()):
            self._resolve(entry, key, alert, now)
        return True

    def get_rules(self) -> list[AlertRule]:
        return [entry.rule for entry in self._engine.entries.values()]

    def add_notifier(self, name: str, notifier: Notifier, *, policy: DeliveryPolicy | None = None) -> None:
        """Register a channel under `name` (rules refer to it in `notification_channels`)."""
        if not isinstance(name, str) or not name:
            raise ValueError("add_notifier: name must be a non-empty string")
        if not callable(getattr(notifier, "send", None)):
            if not callable(getattr(notifier, "send_alert", None)):
                raise ValueError(f"notifier {name!r} has no send(notification) or send_alert(alert) method")
            notifier = SendAlertAdapter(notifier)  # a pure-Python-style channel
        if name in self._channels:
            logger.debug("notifier %r added again: replacing it", name)
        self._channels[name] = Channel(name, notifier, policy or self._policy)

    def remove_notifier(self, name: str) -> bool:
        return self._channels.pop(name, None) is not None

    def get_notifiers(self) -> dict[str, Notifier]:
        return {name: _unwrap(channel.notifier) for name, channel in self._channels.items()}

    # The pure-Python manager's private dicts, which code written for it (and its test fixtures) reads: views by
    # name onto our state. `_rules` and `_notifiers` are read-only; `_active_alerts` also takes an Alert by id
    # (adopting it: resolve_alert/acknowledge_alert/get_active_alerts then see it) and `del` by id.

    @property
    def _rules(self) -> Mapping[str, AlertRule]:
        return _View(self._engine.entries, lambda entry: entry.rule)

    @property
    def _notifiers(self) -> Mapping[str, Notifier]:
        return _View(self._channels, lambda channel: _unwrap(channel.notifier))

    @property
    def _active_alerts(self) -> MutableMapping[str, Alert]:
        return _ActiveAlerts(self)

    # -- evaluation ----------------------------------------------------------------------------------------------

    async def check_and_alert(self) -> list[Alert]:
        """Evaluate every due rule once; return the alerts that started firing. Notifications go out in the
        background (see `flush()`)."""
        if self._queued:
            queued, self._queued = self._queued, []
            for channels, note in queued:
                self._dispatch(channels, note)
        return await self._engine.evaluate()

    async def run(self, interval: float = 60.0) -> None:
        """Evaluate every `interval` seconds until `stop()` (or cancellation); a failing round is logged, not fatal."""
        if interval <= 0:
            raise ValueError("AlertManager.run: interval must be > 0")
        self._stop = stop = asyncio.Event()
        while not stop.is_set():
            try:
                await self.check_and_alert()
            except Exception:  # pragma: no cover - evaluate() isolates rules; this is the last line of defence
                logger.exception("alert evaluation round failed")
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(stop.wait(), interval)

    def start(self, interval: float = 60.0) -> asyncio.Task[None]:
        """Run the loop as a background task of the running event loop."""
        if self._task is not None and not self._task.done():
            raise RuntimeError("AlertManager is already running")
        self._task = asyncio.get_running_loop().create_task(self.run(interval), name="victor-alert-manager")
        return self._task

    async def stop(self, timeout: float = 10.0) -> None:
        """Stop the loop, then wait up to `timeout` for deliveries in flight (cancelling what is left)."""
        if self._stop is not None:
            self._stop.set()
        task, self._task = self._task, None
        if task is not None:
            try:
                await asyncio.wait_for(task, timeout)
            except asyncio.TimeoutError:
                logger.warning("alert manager loop did not stop within %gs; cancelled", timeout)
        if not await self.flush(timeout):
            await self._dispatcher.cancel()

    async def flush(self, timeout: float | None = None) -> bool:
        """Wait for the notifications started so far; False if `timeout` ran out first."""
        if self._queued:
            queued, self._queued = self._queued, []
            for channels, note in queued:
                self._dispatch(channels, note)
        return await self._dispatcher.flush(timeout)

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    # -- alerts --------------------------------------------------------------------------------------------------

    def get_active_alerts(self, include_pending: bool = False) -> list[Alert]:
        """Firing and acknowledged alerts (and pending ones when asked)."""
        return [
            alert
            for entry in self._engine.entries.values()
            for alert in entry.alerts.values()
            if include_pending or alert.status is not AlertStatus.PENDING
        ] + [alert for alert in self._adopted.values() if alert.is_active]

    def get_alert(self, alert_id: str) -> Alert | None:
        found = self._engine.by_id.get(alert_id)
        return found[1] if found else None

    def get_alert_history(self, limit: int | None = None) -> list[Alert]:
        """Resolved alerts, oldest first (bounded by `history_size`)."""
        items = list(self._engine.history)
        return items if limit is None else items[-limit:]

    def resolve_alert(self, alert_id: str) -> bool:
        """Resolve an alert by hand (notifies). If its condition still holds it will fire again as a new alert."""
        found = self._engine.by_id.get(alert_id)
        if found is None:
            adopted = self._adopted.pop(alert_id, None)
            if adopted is not None:
                adopted.resolve(at=self._clock())
            return adopted is not None
        entry, alert = found
        self._resolve(entry, tuple(sorted(alert.labels.items())), alert, self._clock())
        return True

    def acknowledge_alert(self, alert_id: str) -> bool:
        """Acknowledge a firing alert: no repeat notifications; its resolution is still notified."""
        found = self._engine.by_id.get(alert_id)
        if found is None and alert_id in self._adopted:
            found = (None, self._adopted[alert_id])  # type: ignore[assignment]
        if found is None or found[1].status is not AlertStatus.FIRING:
            return False
        found[1].acknowledge(at=self._clock())
        return True

    def get_rule_states(self) -> dict[str, RuleState]:
        round_at = self._engine.round_at
        return {name: entry.state(round_at) for name, entry in self._engine.entries.items()}

    def get_failed_notifications(self) -> list[DeliveryFailure]:
        """Notifications that failed after all their attempts (most recent last, bounded)."""
        return list(self._dispatcher.failures)

    def state(self) -> dict[str, Any]:
        """Everything an operator wants at a glance, as plain data (secret-free)."""
        return {
            "running": self.running,
            "rules": {name: state.to_dict() for name, state in self.get_rule_states().items()},
            "alerts": [alert.to_dict() for alert in self.get_active_alerts(include_pending=True)],
            "channels": {name: repr(channel.notifier) for name, channel in self._channels.items()},
            "notifications": {
                "sent": self._dispatcher.sent,
                "dropped": self._dispatcher.dropped,
                "in_flight": self._dispatcher.in_flight,
                "failed": [failure.to_dict() for failure in self._dispatcher.failures],
            },
        }

    # -- internals ------------------------------------------------------------------------------------------------

    def _resolve(self, entry: RuleEntry, key: tuple[tuple[str, str], ...], alert: Alert, now: float) -> None:
        self._engine.resolve(entry, key, alert, now)

    def _notify(self, entry: RuleEntry, alert: Alert, kind: str, now: float, repeat: bool) -> None:
        alert.last_notified_at = now
        alert.notification_count += 1
        note = Notification(alert.snapshot(), kind, uuid.uuid4().hex, now, repeat)
        try:
            asyncio.get_running_loop()
        except RuntimeError:  # resolve_alert() called outside the loop: send on the next round or flush
            self._queued.append((entry.rule.notification_channels, note))
            return
        self._dispatch(entry.rule.notification_channels, note)

    def _dispatch(self, names: Sequence[str], note: Notification) -> None:
        if not names:
            channels = list(self._channels.values()) or [self._default]
            for channel in channels:
                self._dispatcher.dispatch(channel, note)
            return
        for name in names:
            found = self._channels.get(name)
            if found is None:
                self._dispatcher.fail(name, note, f"no notifier named {name!r}")
            else:
                self._dispatcher.dispatch(found, note)


V = TypeVar("V")


def _unwrap(notifier: Notifier) -> Notifier:
    return getattr(notifier, "wrapped", notifier) if isinstance(notifier, SendAlertAdapter) else notifier


class _View(Mapping[str, V]):
    """A read-only mapping by name over one of the manager's dicts, each value passed through `get`."""

    def __init__(self, source: Mapping[str, Any], get: Callable[[Any], V]) -> None:
        self._source = source
        self._get = get

    def __getitem__(self, key: str) -> V:
        return self._get(self._source[key])

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._source))

    def __len__(self) -> int:
        return len(self._source)


class _ActiveAlerts(MutableMapping[str, Alert]):
    """Active alerts by id: the engine's (firing, acknowledged) and the ones adopted by assignment."""

    def __init__(self, manager: AlertManager) -> None:
        self._manager = manager

    def _all(self) -> dict[str, Alert]:
        manager = self._manager
        found = {
            alert.id: alert
            for entry in manager._engine.entries.values()
            for alert in entry.alerts.values()
            if alert.status is not AlertStatus.PENDING
        }
        found.update((key, alert) for key, alert in manager._adopted.items() if alert.is_active)
        return found

    def __getitem__(self, alert_id: str) -> Alert:
        return self._all()[alert_id]

    def __setitem__(self, alert_id: str, alert: Alert) -> None:
        if not isinstance(alert, Alert):
            raise ValueError(f"_active_alerts[{alert_id!r}]: expected an Alert, got {type(alert).__name__}")
        self._manager._adopted[alert_id] = alert

    def __delitem__(self, alert_id: str) -> None:
        if self._manager._adopted.pop(alert_id, None) is None:
            if alert_id not in self._all():
                raise KeyError(alert_id)
            self._manager.resolve_alert(alert_id)

    def __iter__(self) -> Iterator[str]:
        return iter(self._all())

    def __len__(self) -> int:
        return len(self._all())


def create_alert_manager(
    metrics_collector: Any = None,
    *,
    registry: Any = None,
    notifiers: Mapping[str, Notifier] | None = None,
    **options: Any,
) -> AlertManager:
    """Build an AlertManager; with a ProductionMetricsCollector (or a `registry=`) its alert metrics join that
    export, without either it records none. Other keyword options go to `AlertManager` (clock, sleep, random,
    delivery_policy, condition_timeout, prefix, history_size, max_in_flight, default_notifier).

    >>> manager = create_alert_manager(notifiers={"log": LogNotifier()})
    >>> sorted(manager.get_notifiers())
    ['log']
    """
    if registry is None and metrics_collector is not None:
        registry = metrics_collector.registry
        options.setdefault("prefix", getattr(metrics_collector, "prefix", None))
    manager = AlertManager(registry=registry, **options)
    for name, notifier in (notifiers or {}).items():
        manager.add_notifier(name, notifier)
    return manager
