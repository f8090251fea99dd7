"""Rule evaluation and the alert state machine: inactive -> pending -> firing -> resolved, plus rule errors."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import re
import threading
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Mapping
from datetime import datetime, timezone
from typing import Any

from victor_observability.alerting._metrics import AlertMetrics
from victor_observability.alerting.rules import RESERVED_LABELS, Alert, AlertRule, AlertStatus, RuleState

logger = logging.getLogger("victor_observability.alerting")

_LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
LabelKey = tuple[tuple[str, str], ...]
# Called for each notification the state machine decides on: (entry, alert, kind, now, repeat).
NotifyHook = Callable[["RuleEntry", Alert, str, float, bool], None]


def _is_async_callable(fn: object) -> bool:
    return inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(getattr(fn, "__call__", None))  # noqa: B004


class RuleEntry:
    """A rule plus its evaluation state; `quiet` (no alerts, healthy) lets a False result skip all bookkeeping."""

    __slots__ = (
        "alerts",
        "base_key",
        "condition",
        "error_count",
        "health",
        "is_async",
        "last_error",
        "last_error_at",
        "last_evaluated_at",
        "last_notice",
        "next_due",
        "quiet",
        "rule",
        "thread_busy",
        "threaded",
    )

    def __init__(self, rule: AlertRule) -> None:
        self.rule = rule
        self.condition = rule.condition
        self.is_async = _is_async_callable(rule.condition)
        # A sync condition with a timeout runs in its own daemon thread: the only way to bound a sync call.
        self.threaded = not self.is_async and rule.timeout is not None
        self.base_key: LabelKey = tuple(sorted(rule.labels.items()))
        self.alerts: dict[LabelKey, Alert] = {}
        self.last_notice: dict[LabelKey, float] = {}  # last firing notification per series: the cooldown
        self.quiet = True
        self.health = "ok"
        self.last_error: str | None = None
        self.last_error_at: float | None = None
        self.error_count = 0
        self.last_evaluated_at: float | None = None
        self.next_due = float("-inf")
        self.thread_busy = False

    @property
    def inline(self) -> bool:
        """Evaluated by a plain call in the hot loop (sync, no timeout, no own interval)."""
        return not self.is_async and not self.threaded and self.rule.evaluation_interval is None and self.rule.enabled

    def state(self, round_at: float | None) -> RuleState:
        pending = sum(1 for a in self.alerts.values() if a.status is AlertStatus.PENDING)
        return RuleState(
            name=self.rule.name,
            health=self.health,
            last_error=self.last_error,
            last_error_at=self.last_error_at,
            error_count=self.error_count,
            last_evaluated_at=round_at if self.inline else self.last_evaluated_at,
            pending_alerts=pending,
            active_alerts=len(self.alerts) - pending,
        )


class Engine:
    """Evaluates rules and moves their alerts through the state machine; notification is delegated to `notify`."""

    def __init__(
        self,
        clock: Callable[[], float],
        condition_timeout: float,
        notify: NotifyHook,
        metrics: AlertMetrics,
        history_size: int = 1000,
    ) -> None:
        self.clock = clock
        self.condition_timeout = condition_timeout
        self.notify = notify
        self.metrics = metrics
        self.entries: dict[str, RuleEntry] = {}
        self.inline: list[tuple[Callable[[], Any], RuleEntry]] = []
        self.scheduled: list[RuleEntry] = []
        self.by_id: dict[str, tuple[RuleEntry, Alert]] = {}
        self.round_at: float | None = None
        self.history: deque[Alert] = deque(maxlen=history_size)

    def add(self, rule: AlertRule) -> None:
        if rule.name in self.entries:
            raise ValueError(f"alert rule {rule.name!r} is already registered")
        entry = RuleEntry(rule)
        self.entries[rule.name] = entry
        if entry.inline:
            self.inline.append((entry.condition, entry))
        else:
            self.scheduled.append(entry)

    def remove(self, name: str) -> RuleEntry | None:
        entry = self.entries.pop(name, None)
        if entry is not None:
            self.inline = [pair for pair in self.inline if pair[1] is not entry]
            self.scheduled = [e for e in self.scheduled if e is not entry]
        return entry

    def adopt(self, old: RuleEntry, new: RuleEntry) -> None:
        """A rule replaced by one of the same name keeps its alerts and cooldowns."""
        new.alerts, new.last_notice, new.quiet = old.alerts, old.last_notice, old.quiet
        for alert in new.alerts.values():
            self.by_id[alert.id] = (new, alert)

    async def evaluate(self) -> list[Alert]:
        """One round over every due rule; returns the alerts that started firing in it."""
        now = self.clock()
        self.round_at = now
        fired: list[Alert] = []
        deferred: list[tuple[RuleEntry, Awaitable[Any], float]] | None = None
        # The hot loop: a False result from a quiet rule costs one call, one identity test and one attribute read.
        for condition, entry in self.inline:
            try:
                result = condition()
            except Exception as exc:
                self.error(entry, describe(exc), now)
                continue
            if result is False and entry.quiet:
                continue
            if inspect.isawaitable(result):
                deferred = deferred or []
                deferred.append((entry, result, entry.rule.timeout or self.condition_timeout))
            else:
                self.apply(entry, result, now, fired)
        for entry in self.scheduled:
            if entry.next_due > now:
                continue
            interval = entry.rule.evaluation_interval
            entry.next_due = now + interval if interval is not None else now
            entry.last_evaluated_at = now
            pending = self._start(entry, now, fired)
            if pending is not None:
                deferred = deferred or []
                deferred.append(pending)
        if deferred:
            await asyncio.gather(*(self._finish(entry, aw, timeout, fired) for entry, aw, timeout in deferred))
        return fired

    def _start(
        self, entry: RuleEntry, now: float, fired: list[Alert]
    ) -> tuple[RuleEntry, Awaitable[Any], float] | None:
        if not entry.rule.enabled:
            self.apply(entry, False, now, fired)  # disabled: as if the condition were false, so its alerts resolve
            return None
        timeout = entry.rule.timeout or self.condition_timeout
        if entry.threaded:
            if entry.thread_busy:
                self.error(entry, "condition still running in its thread after a timeout", now)
                return None
            return entry, self._in_thread(entry), timeout
        try:
            result = entry.condition()
        except Exception as exc:
            self.error(entry, describe(exc), now)
            return None
        if inspect.isawaitable(result):
            return entry, result, timeout
        self.apply(entry, result, now, fired)
        return None

    def _in_thread(self, entry: RuleEntry) -> asyncio.Future[Any]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()

        def settle(result: Any, exc: BaseException | None) -> None:
            if future.done():  # the wait timed out and cancelled it
                return
            if exc is not None:
                future.set_exception(exc)
            else:
                future.set_result(result)

        def target() -> None:
            result: Any = None
            error: BaseException | None = None
            try:
                result = entry.condition()
            except BaseException as exc:
                error = exc
            entry.thread_busy = False
            with contextlib.suppress(RuntimeError):  # the loop closed while the condition hung
                loop.call_soon_threadsafe(settle, result, error)

        entry.thread_busy = True
        # A daemon thread, not an executor: a condition that never returns must not hold interpreter exit.
        threading.Thread(target=target, name=f"victor-alert-{entry.rule.name}", daemon=True).start()
        return future

    async def _finish(self, entry: RuleEntry, awaitable: Awaitable[Any], timeout: float, fired: list[Alert]) -> None:
        try:
            result = await asyncio.wait_for(awaitable, timeout)
        except asyncio.TimeoutError:
            self.error(entry, f"condition timed out after {timeout:g}s", self.clock())
            return
        except Exception as exc:
            self.error(entry, describe(exc), self.clock())
            return
        if self.entries.get(entry.rule.name) is entry:  # removed while it was being evaluated: drop the result
            self.apply(entry, result, self.clock(), fired)

    def error(self, entry: RuleEntry, message: str, now: float) -> None:
        """Put a rule in the error state: its alerts keep their state until it evaluates again."""
        message = message[:500]
        entry.error_count += 1
        entry.last_error = message
        entry.last_error_at = now
        entry.quiet = False
        self.metrics.rule_error(entry.rule.name)
        if entry.health != "error":
            entry.health = "error"
            logger.warning("alert rule %r failed to evaluate: %s", entry.rule.name, message)

    def apply(self, entry: RuleEntry, result: Any, now: float, fired: list[Alert]) -> None:
        """Turn a condition result into the set of series that are currently bad, then transition."""
        rule = entry.rule
        current: dict[LabelKey, tuple[dict[str, str], float | None]] = {}
        if result is True or result is False:
            if result:
                current[entry.base_key] = (dict(rule.labels), _value_of(entry.condition))
        elif isinstance(result, (int, float)):
            if rule.threshold is None:
                self.error(entry, "condition returned a number but the rule has no threshold", now)
                return
            if rule.exceeds(result):
                current[entry.base_key] = (dict(rule.labels), float(result))
        elif result is None or isinstance(result, (str, bytes)):
            self.error(entry, f"condition returned {type(result).__name__}, expected bool, number or label sets", now)
            return
        elif isinstance(result, (Mapping, Iterable)):
            sets = [result] if isinstance(result, Mapping) else list(result)
            for labels in sets:
                merged = _merge_labels(rule.labels, labels)
                if merged is None:
                    self.error(entry, f"condition returned invalid label set {labels!r}", now)
                    return
                current[tuple(sorted(merged.items()))] = (merged, None)
        elif result:  # numpy.bool_ and friends
            current[entry.base_key] = (dict(rule.labels), _value_of(entry.condition))
        if entry.health == "error":
            entry.health = "ok"
            logger.info("alert rule %r evaluates again", rule.name)
        self.transition(entry, current, now, fired)

    def transition(
        self,
        entry: RuleEntry,
        current: dict[LabelKey, tuple[dict[str, str], float | None]],
        now: float,
        fired: list[Alert],
    ) -> None:
        rule = entry.rule
        for key, (labels, value) in current.items():
            alert = entry.alerts.get(key)
            if alert is None or alert.status is AlertStatus.RESOLVED:  # new, or resolved by hand via Alert.resolve()
                if alert is not None:
                    self.resolve(entry, key, alert, now)
                alert = Alert(
                    rule_name=rule.name,
                    severity=rule.severity,
                    message=rule.description or f"alert rule {rule.name} is firing",
                    labels=labels,
                    annotations=dict(rule.annotations),
                    status=AlertStatus.PENDING,
                    value=value,
                    started_at=now,
                )
                entry.alerts[key] = alert
                self.by_id[alert.id] = (entry, alert)
            else:
                alert.value = value
                alert.cleared_at = None
            if alert.status is AlertStatus.PENDING:
                if now - alert.started_at >= rule.for_duration:
                    self._fire(entry, key, alert, now, fired)
            elif alert.status is AlertStatus.FIRING:
                if alert.last_notified_at is None:  # held back by the cooldown when it fired
                    self._notify_firing(entry, key, alert, now, repeat=False)
                elif now - alert.last_notified_at >= rule.effective_repeat_interval:
                    self._notify_firing(entry, key, alert, now, repeat=True)
        for key, alert in list(entry.alerts.items()):
            if key in current:
                continue
            if alert.status is AlertStatus.PENDING:
                del entry.alerts[key]
                self.by_id.pop(alert.id, None)
                continue
            if rule.keep_firing_for > 0 and alert.status is not AlertStatus.RESOLVED:
                if alert.cleared_at is None:
                    alert.cleared_at = now
                if now - alert.cleared_at < rule.keep_firing_for:
                    continue
            self.resolve(entry, key, alert, now)
        entry.quiet = not entry.alerts and entry.health == "ok"

    def _fire(self, entry: RuleEntry, key: LabelKey, alert: Alert, now: float, fired: list[Alert]) -> None:
        alert.status = AlertStatus.FIRING
        alert.fired_at = now
        entry.rule.last_fired = datetime.fromtimestamp(now, timezone.utc)
        fired.append(alert)
        severity = entry.rule.severity.value
        self.metrics.fired(entry.rule.name, severity)
        self.metrics.active(entry.rule.name, severity, 1)
        self._notify_firing(entry, key, alert, now, repeat=False)

    def _notify_firing(self, entry: RuleEntry, key: LabelKey, alert: Alert, now: float, repeat: bool) -> None:
        if not repeat:
            last = entry.last_notice.get(key)
            if last is not None and now - last < entry.rule.cooldown:
                return  # a re-fire inside the cooldown: state is tracked, the notification waits
        entry.last_notice[key] = now
        if len(entry.last_notice) > 1024:  # dynamic label sets: forget series whose cooldown has passed
            cutoff = now - entry.rule.cooldown
            entry.last_notice = {k: t for k, t in entry.last_notice.items() if t >= cutoff or k in entry.alerts}
        self.notify(entry, alert, "firing", now, repeat)

    def resolve(self, entry: RuleEntry, key: LabelKey, alert: Alert, now: float) -> None:
        """End an alert: resolved notification if its firing was notified, out of the active set."""
        was_active = alert.fired_at is not None  # counted in the active gauge since it fired
        if alert.status is not AlertStatus.RESOLVED:
            alert.resolve(at=now)
        if entry.alerts.get(key) is alert:
            del entry.alerts[key]
        self.by_id.pop(alert.id, None)
        if was_active:
            self.metrics.active(entry.rule.name, entry.rule.severity.value, -1)
            self.history.append(alert)
        if alert.notification_count > 0:
            self.notify(entry, alert, "resolved", now, False)
        entry.quiet = not entry.alerts and entry.health == "ok"


def describe(exc: BaseException) -> str:
    """`Type: message` for a rule's error state, even when the exception's own __str__ is broken."""
    try:
        return f"{type(exc).__name__}: {exc}"
    except Exception:
        return type(exc).__name__


def _value_of(condition: object) -> float | None:
    value = getattr(condition, "last_value", None)
    return float(value) if isinstance(value, (int, float)) else None


def _merge_labels(base: Mapping[str, str], extra: object) -> dict[str, str] | None:
    if not isinstance(extra, Mapping):
        return None
    merged = dict(base)
    for key, value in extra.items():
        if not isinstance(key, str) or not _LABEL_NAME.match(key) or key in RESERVED_LABELS:
            return None
        merged[key] = str(value)
    return merged
