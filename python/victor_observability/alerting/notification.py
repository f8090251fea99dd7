"""What a notifier receives (Notification), how it reports failure (NotificationError) and the Notifier Protocol."""

from __future__ import annotations

import abc
import asyncio
import logging
import time
import uuid
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from victor_observability.alerting.rules import Alert, AlertStatus

logger = logging.getLogger("victor_observability.alerting")


@dataclass(frozen=True)
class Notification:
    """One message about one alert: it fired (or repeats), or it resolved.

    The idempotency key stays the same across retries of this notification, so receivers can drop duplicates.

    >>> from victor_observability.alerting.rules import Alert, AlertSeverity
    >>> note = Notification(Alert("disk_full", AlertSeverity.ERROR, "disk is full"), "firing", "k1", 0.0)
    >>> note.title
    '[FIRING] disk_full (error): disk is full'
    """

    alert: Alert
    kind: str  # "firing" or "resolved"
    idempotency_key: str
    created_at: float
    repeat: bool = False

    @property
    def resolved(self) -> bool:
        return self.kind == "resolved"

    @property
    def title(self) -> str:
        return f"[{self.kind.upper()}] {self.alert.rule_name} ({self.alert.severity.value}): {self.alert.message}"


class NotificationError(Exception):
    """A delivery attempt failed; the message must already be free of secrets.

    `retry_after` (seconds) comes from a 429/503 Retry-After header; `retryable=False` stops retries (e.g. HTTP 400).

    >>> NotificationError("slack: HTTP 429", retry_after=2.0).retry_after
    2.0
    """

    def __init__(self, message: str, *, retry_after: float | None = None, retryable: bool = True) -> None:
        super().__init__(message)
        self.retry_after = retry_after
        self.retryable = retryable


@runtime_checkable
class Notifier(Protocol):
    """A notification channel: deliver one notification or raise (NotificationError preferred).

    Implementations must not block the event loop (run blocking I/O in a thread) and must keep secrets out of
    their repr and error messages. The manager bounds each attempt with a timeout and retries.

    >>> class Printer:
    ...     async def send(self, notification: Notification) -> None:
    ...         print(notification.title)
    >>> isinstance(Printer(), Notifier)
    True
    """

    async def send(self, notification: Notification) -> None: ...


class SendAlert:
    """Mixin giving a notifier the pure-Python channels' ``async send_alert(alert) -> bool``: one attempt of its own
    ``send`` (a firing notification, or a resolved one for a resolved alert), bounded by ``send_alert_timeout``;
    False on any failure (logged without the exception's text, which may hold a URL), never raises."""

    send_alert_timeout: float = 10.0

    async def send(self, notification: Notification) -> None:  # pragma: no cover - provided by the notifier
        raise NotImplementedError

    async def send_alert(self, alert: Alert) -> bool:
        kind = "resolved" if alert.status is AlertStatus.RESOLVED else "firing"
        note = Notification(alert, kind, uuid.uuid4().hex, time.time())
        try:
            await asyncio.wait_for(self.send(note), self.send_alert_timeout)
        except NotificationError as exc:  # secret-free by contract
            logger.warning("%r: send_alert failed: %s", self, exc)
            return False
        except Exception as exc:
            logger.warning("%r: send_alert failed: %s", self, type(exc).__name__)
            return False
        return True


class NotificationChannel(abc.ABC):
    """The pure-Python toolkit's channel base: implement ``async send_alert(alert) -> bool``. The manager delivers
    through ``send``, which calls it and turns False into a retryable NotificationError.

    >>> class Printer(NotificationChannel):
    ...     async def send_alert(self, alert: Alert) -> bool:
    ...         print(alert.rule_name)
    ...         return True
    >>> isinstance(Printer(), Notifier)
    True
    """

    @abc.abstractmethod
    async def send_alert(self, alert: Alert) -> bool: ...

    async def send(self, notification: Notification) -> None:
        if not await self.send_alert(notification.alert):
            raise NotificationError(f"{type(self).__name__}.send_alert returned False")


class SendAlertAdapter:
    """Wraps an object that only has ``send_alert(alert) -> bool`` (a duck-typed pure-Python channel) as a Notifier."""

    def __init__(self, wrapped: object) -> None:
        self.wrapped = wrapped

    def __repr__(self) -> str:
        return f"SendAlertAdapter({type(self.wrapped).__name__})"

    async def send(self, notification: Notification) -> None:
        if not await self.wrapped.send_alert(notification.alert):  # type: ignore[attr-defined]
            raise NotificationError(f"{type(self.wrapped).__name__}.send_alert returned False")
