"""Alert rules, severities and alert instances: what to watch and what an active alert looks like."""

from __future__ import annotations

import hashlib
import inspect
import re
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from enum import Enum
from typing import Any

# A condition answers "is something wrong?": True/False, a number compared with the rule's threshold,
# or the label sets that are currently wrong (one alert per label set). It may be async.
ConditionResult = bool | float | int | Iterable[Mapping[str, str]]
Condition = Callable[[], ConditionResult | Awaitable[ConditionResult]]

_LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
# The manager sets these labels itself; a rule may not override them.
RESERVED_LABELS = frozenset({"alertname", "severity"})
_COMPARISONS: dict[str, Callable[[float, float], bool]] = {
    ">": lambda value, limit: value > limit,
    ">=": lambda value, limit: value >= limit,
    "<": lambda value, limit: value < limit,
    "<=": lambda value, limit: value <= limit,
}


class AlertSeverity(str, Enum):
    """How bad an alert is, lowest first.

    >>> AlertSeverity.CRITICAL.value
    'critical'
    """

    INFO = "info"
    WARNING = "warning"
    ERROR = "error"
    CRITICAL = "critical"


class AlertStatus(str, Enum):
    """Where an alert is in its life: pending (waiting for `for_duration`), firing, acknowledged, resolved.

    >>> AlertStatus.FIRING.value
    'firing'
    """

    PENDING = "pending"
    FIRING = "firing"
    ACKNOWLEDGED = "acknowledged"
    RESOLVED = "resolved"


def _check_labels(owner: str, kind: str, labels: Mapping[str, str]) -> dict[str, str]:
    checked: dict[str, str] = {}
    for key, value in labels.items():
        if not isinstance(key, str) or not _LABEL_NAME.match(key):
            raise ValueError(f"alert rule {owner!r}: invalid {kind} name {key!r}")
        if kind == "label" and key in RESERVED_LABELS:
            raise ValueError(f"alert rule {owner!r}: label {key!r} is reserved (set by the manager)")
        if not isinstance(value, str):
            raise ValueError(f"alert rule {owner!r}: {kind} {key!r} must be a string, got {type(value).__name__}")
        checked[key] = value
    return checked


@dataclass(eq=False)
class AlertRule:
    """A named condition with a severity, channels and timing; build it with `AlertRule.builder()` or construct
    it with the pure-Python toolkit's fields (`name, description, condition, severity, enabled,
    notification_channels, cooldown_seconds, threshold, evaluation_interval_seconds, labels, last_fired`).

    >>> rule = AlertRule.builder().name("high_error_rate").condition(lambda: False).build()
    >>> rule.severity
    <AlertSeverity.WARNING: 'warning'>
    >>> rule = AlertRule("disk_full", "Disk is full", lambda: True, AlertSeverity.ERROR, cooldown_seconds=60)
    >>> rule.should_fire(), rule.fire("disk is full").status, rule.should_fire()
    (True, <AlertStatus.FIRING: 'firing'>, False)
    """

    name: str
    description: str
    condition: Condition
    severity: AlertSeverity = AlertSeverity.WARNING
    #: Read when the rule is added to a manager (and by `should_fire()`); a disabled rule is never evaluated.
    enabled: bool = True
    notification_channels: list[str] = field(default_factory=list)
    cooldown_seconds: float = 300.0
    threshold: float | None = None
    #: None (the default) evaluates the rule on every `check_and_alert()`; the reference stores 60.0 but never
    #: reads it, so a drop-in keeps its every-round evaluation.
    evaluation_interval_seconds: float | None = None
    labels: Mapping[str, str] = field(default_factory=dict)
    #: When `fire()` (or the manager) last fired the rule; `should_fire()` honours the cooldown from it.
    last_fired: datetime | None = None
    repeat_interval: float | None = field(default=None, kw_only=True)
    comparison: str = field(default=">", kw_only=True)
    annotations: Mapping[str, str] = field(default_factory=dict, kw_only=True)
    for_duration: float = field(default=0.0, kw_only=True)
    keep_firing_for: float = field(default=0.0, kw_only=True)
    timeout: float | None = field(default=None, kw_only=True)

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"alert rule name must be a non-empty string, got {self.name!r}")
        if not callable(self.condition):
            raise ValueError(f"alert rule {self.name!r}: condition must be callable")
        try:
            self.severity = AlertSeverity(self.severity)
        except ValueError:
            raise ValueError(f"alert rule {self.name!r}: unknown severity {self.severity!r}") from None
        channels = (
            [self.notification_channels]
            if isinstance(self.notification_channels, str)
            else list(self.notification_channels)
        )
        for channel in channels:
            if not isinstance(channel, str) or not channel:
                raise ValueError(f"alert rule {self.name!r}: channel names must be non-empty strings")
        self.notification_channels = channels
        for attr in ("cooldown_seconds", "for_duration", "keep_firing_for"):
            value = getattr(self, attr)
            if not isinstance(value, (int, float)) or value < 0:
                raise ValueError(f"alert rule {self.name!r}: {attr} must be a number >= 0, got {value!r}")
        for attr in ("repeat_interval", "evaluation_interval_seconds", "timeout"):
            value = getattr(self, attr)
            if value is not None and (not isinstance(value, (int, float)) or value <= 0):
                raise ValueError(f"alert rule {self.name!r}: {attr} must be a number > 0 or None, got {value!r}")
        if self.comparison not in _COMPARISONS:
            raise ValueError(f"alert rule {self.name!r}: comparison must be one of {sorted(_COMPARISONS)}")
        if self.threshold is not None and not isinstance(self.threshold, (int, float)):
            raise ValueError(f"alert rule {self.name!r}: threshold must be a number")
        self.labels = _check_labels(self.name, "label", self.labels)
        self.annotations = _check_labels(self.name, "annotation", self.annotations)

    @staticmethod
    def builder() -> AlertRuleBuilder:
        """Start a fluent rule definition (the guide's style)."""
        return AlertRuleBuilder()

    @property
    def cooldown(self) -> float:
        """Alias of `cooldown_seconds`."""
        return self.cooldown_seconds

    @property
    def evaluation_interval(self) -> float | None:
        """Alias of `evaluation_interval_seconds`."""
        return self.evaluation_interval_seconds

    @property
    def effective_repeat_interval(self) -> float:
        """Seconds between repeat notifications of a still-active alert (the cooldown unless set)."""
        return self.cooldown_seconds if self.repeat_interval is None else self.repeat_interval

    def exceeds(self, value: float) -> bool:
        """Compare a numeric condition result with the threshold (False when the rule has none)."""
        if self.threshold is None:
            return False
        return _COMPARISONS[self.comparison](value, self.threshold)

    def should_fire(self) -> bool:
        """The pure-Python rule's own check: enabled, outside the cooldown since `last_fired`, and the condition
        holds now (True, a number past the threshold, or a non-empty list of label sets). A condition that raises
        or is async answers False here; the manager evaluates those properly."""
        if not self.enabled:
            return False
        if self.last_fired is not None:
            elapsed = (datetime.now(timezone.utc) - self.last_fired).total_seconds()
            if elapsed < self.cooldown_seconds:
                return False
        try:
            result = self.condition()
        except Exception:
            return False
        if inspect.isawaitable(result):
            if inspect.iscoroutine(result):
                result.close()
            return False
        if isinstance(result, bool):
            return result
        if isinstance(result, (int, float)):
            return self.exceeds(result) if self.threshold is not None else bool(result)
        return bool(list(result)) if isinstance(result, Iterable) else bool(result)

    def fire(self, message: str, details: dict[str, Any] | None = None) -> Alert:
        """Record the firing in `last_fired` and return a firing Alert with `message` and `details`."""
        now = datetime.now(timezone.utc)
        self.last_fired = now
        return Alert(
            rule_name=self.name,
            severity=self.severity,
            message=message,
            labels=dict(self.labels),
            annotations=dict(self.annotations),
            status=AlertStatus.FIRING,
            fired_at=now.timestamp(),
            started_at=now.timestamp(),
            details=dict(details or {}),
        )

    def to_dict(self) -> dict[str, Any]:
        """The rule's definition as plain data (the condition is shown by name only)."""
        return {
            "name": self.name,
            "description": self.description,
            "severity": self.severity.value,
            "enabled": self.enabled,
            "notification_channels": list(self.notification_channels),
            "cooldown_seconds": self.cooldown_seconds,
            "repeat_interval": self.effective_repeat_interval,
            "threshold": self.threshold,
            "comparison": self.comparison,
            "labels": dict(self.labels),
            "annotations": dict(self.annotations),
            "for_duration": self.for_duration,
            "keep_firing_for": self.keep_firing_for,
            "evaluation_interval_seconds": self.evaluation_interval_seconds,
            "timeout": self.timeout,
            "last_fired": self.last_fired.isoformat() if self.last_fired else None,
            "condition": getattr(self.condition, "__name__", type(self.condition).__name__),
        }


class AlertRuleBuilder:
    """Fluent builder for `AlertRule`; `build()` validates and raises ValueError naming the rule.

    >>> rule = (
    ...     AlertRule.builder()
    ...     .name("high_latency")
    ...     .condition(lambda: 120.0)
    ...     .threshold(100.0)
    ...     .for_duration(60)
    ...     .build()
    ... )
    >>> rule.exceeds(120.0)
    True
    """

    def __init__(self) -> None:
        self._fields: dict[str, Any] = {}

    def _set(self, key: str, value: Any) -> AlertRuleBuilder:
        self._fields[key] = value
        return self

    def name(self, name: str) -> AlertRuleBuilder:
        return self._set("name", name)

    def description(self, description: str) -> AlertRuleBuilder:
        return self._set("description", description)

    def condition(self, condition: Condition) -> AlertRuleBuilder:
        return self._set("condition", condition)

    def severity(self, severity: AlertSeverity | str) -> AlertRuleBuilder:
        return self._set("severity", severity)

    def notification_channels(self, channels: Iterable[str]) -> AlertRuleBuilder:
        return self._set("notification_channels", channels)

    def cooldown(self, seconds: float) -> AlertRuleBuilder:
        """Minimum seconds between firing notifications for the same alert (also the default repeat interval)."""
        return self._set("cooldown_seconds", seconds)

    def repeat_interval(self, seconds: float) -> AlertRuleBuilder:
        """Seconds between repeat notifications while the alert stays active (defaults to the cooldown)."""
        return self._set("repeat_interval", seconds)

    def threshold(self, value: float, comparison: str = ">") -> AlertRuleBuilder:
        """Fire when the condition's numeric result compares true with `value` (">", ">=", "<", "<=")."""
        self._set("comparison", comparison)
        return self._set("threshold", value)

    def labels(self, labels: Mapping[str, str]) -> AlertRuleBuilder:
        return self._set("labels", dict(labels))

    def annotations(self, annotations: Mapping[str, str]) -> AlertRuleBuilder:
        return self._set("annotations", dict(annotations))

    def for_duration(self, seconds: float) -> AlertRuleBuilder:
        """How long the condition must hold (pending) before the alert fires."""
        return self._set("for_duration", seconds)

    def keep_firing_for(self, seconds: float) -> AlertRuleBuilder:
        """How long the alert keeps firing after the condition clears (hysteresis on the way down)."""
        return self._set("keep_firing_for", seconds)

    def evaluation_interval(self, seconds: float) -> AlertRuleBuilder:
        """Evaluate this rule at most once per `seconds` (default: every `check_and_alert()`)."""
        return self._set("evaluation_interval_seconds", seconds)

    def timeout(self, seconds: float) -> AlertRuleBuilder:
        """Bound the condition's run time; a sync condition with a timeout runs in its own thread."""
        return self._set("timeout", seconds)

    def build(self) -> AlertRule:
        if not self._fields.get("name"):
            raise ValueError("alert rule needs a name: call .name(...)")
        if not self._fields.get("condition"):
            raise ValueError(f"alert rule {self._fields['name']!r} needs a condition: call .condition(...)")
        return AlertRule(**{"description": "", **self._fields})


def fingerprint(rule_name: str, labels: Mapping[str, str]) -> str:
    """Stable identity of an alert series: the rule name plus its labels."""
    digest = hashlib.sha256(rule_name.encode())
    for key, value in sorted(labels.items()):
        digest.update(b"\xff" + key.encode() + b"\xfe" + value.encode())
    return digest.hexdigest()[:16]


@dataclass
class Alert:
    """One alert instance: a rule firing for one label set, from pending to resolved.

    >>> alert = Alert(rule_name="disk_full", severity=AlertSeverity.ERROR, message="disk is full")
    >>> alert.acknowledge(at=10.0).status
    <AlertStatus.ACKNOWLEDGED: 'acknowledged'>
    >>> alert.resolve(at=20.0).to_dict()["status"]
    'resolved'
    """

    rule_name: str
    severity: AlertSeverity
    message: str
    labels: dict[str, str] = field(default_factory=dict)
    annotations: dict[str, str] = field(default_factory=dict)
    status: AlertStatus = AlertStatus.FIRING
    value: float | None = None
    started_at: float = field(default_factory=time.time)
    fired_at: float | None = None
    resolved_at: float | None = None
    acknowledged_at: float | None = None
    last_notified_at: float | None = None
    notification_count: int = 0
    id: str = field(default_factory=lambda: uuid.uuid4().hex)
    #: Free-form context, as the pure-Python Alert carries it (`AlertRule.fire(message, details)`).
    details: dict[str, Any] = field(default_factory=dict)
    fingerprint: str = ""
    # When the condition cleared while keep_firing_for holds the alert up.
    cleared_at: float | None = None

    def __post_init__(self) -> None:
        if not self.fingerprint:
            self.fingerprint = fingerprint(self.rule_name, self.labels)

    @property
    def is_active(self) -> bool:
        return self.status in (AlertStatus.FIRING, AlertStatus.ACKNOWLEDGED)

    def resolve(self, at: float | None = None) -> Alert:
        """Mark resolved (the manager's `resolve_alert` also sends the resolved notification)."""
        self.status = AlertStatus.RESOLVED
        self.resolved_at = time.time() if at is None else at
        return self

    def acknowledge(self, at: float | None = None) -> Alert:
        """Mark acknowledged: no repeat notifications, but the resolution is still notified."""
        if self.status is not AlertStatus.RESOLVED:
            self.status = AlertStatus.ACKNOWLEDGED
            self.acknowledged_at = time.time() if at is None else at
        return self

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "fingerprint": self.fingerprint,
            "rule_name": self.rule_name,
            "severity": self.severity.value,
            "status": self.status.value,
            "message": self.message,
            "details": dict(self.details),
            "labels": dict(self.labels),
            "annotations": dict(self.annotations),
            "value": self.value,
            "started_at": self.started_at,
            "fired_at": self.fired_at,
            "resolved_at": self.resolved_at,
            "acknowledged_at": self.acknowledged_at,
            "last_notified_at": self.last_notified_at,
            "notification_count": self.notification_count,
        }

    def snapshot(self) -> Alert:
        """An independent copy to hand to notifiers (they run later, concurrently)."""
        copy = Alert(
            **{
                **self.__dict__,
                "labels": dict(self.labels),
                "annotations": dict(self.annotations),
                "details": dict(self.details),
            }
        )
        return copy


@dataclass(frozen=True)
class RuleState:
    """A rule's evaluation health as seen by `AlertManager.get_rule_states()`."""

    name: str
    health: str  # "ok" or "error"
    last_error: str | None
    last_error_at: float | None
    error_count: int
    last_evaluated_at: float | None
    pending_alerts: int
    active_alerts: int

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)
