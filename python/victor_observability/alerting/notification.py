"""What a notifier receives (Notification), how it reports failure (NotificationError) and the Notifier Protocol."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from victor_observability.alerting.rules import Alert


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
