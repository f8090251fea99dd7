"""What a notifier receives (Notification), how it reports failure (NotificationError) and the Notifier Protocol."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol, runtime_checkable
from urllib.parse import urlsplit

from victor_observability.alerting.rules import Alert

REDACTED = "***"


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


def redact(text: str, secrets: Iterable[str]) -> str:
    """Replace every occurrence of each secret in `text` (longest first, so a URL goes before its path)."""
    for secret in sorted((s for s in secrets if s), key=len, reverse=True):
        text = text.replace(secret, REDACTED)
    return text


def url_secrets(url: str) -> list[str]:
    """The parts of a URL that may carry a credential: the whole URL, its path+query, its userinfo."""
    parts = urlsplit(url)
    found = [url]
    tail = parts.path + (f"?{parts.query}" if parts.query else "")
    if len(tail) > 1:
        found.append(tail)
    if parts.password:
        found.append(parts.password)
    return found


def safe_url(url: str) -> str:
    """Scheme and host only: what a repr or log line may show of a URL that can hold a token."""
    parts = urlsplit(url)
    host = parts.hostname or "?"
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}/{REDACTED}"


def public_url(url: str) -> str:
    """The URL without userinfo (for URLs that are not credentials themselves)."""
    parts = urlsplit(url)
    netloc = (parts.hostname or "") + (f":{parts.port}" if parts.port else "")
    return parts._replace(netloc=netloc).geturl()


def notifier_secrets(notifier: object) -> list[str]:
    """Secrets a notifier declares through an optional `secrets()` method (used to scrub foreign errors)."""
    getter = getattr(notifier, "secrets", None)
    if getter is None:
        return []
    try:
        return [s for s in getter() if isinstance(s, str)]
    except Exception:
        return []


class _RedactingFilter(logging.Filter):
    """Scrubs registered secrets from records of the HTTP client's loggers (httpx logs every request URL at INFO)."""

    def __init__(self) -> None:
        super().__init__()
        self.secrets: set[str] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        if self.secrets:
            message = record.getMessage()
            scrubbed = redact(message, self.secrets)
            if scrubbed != message:
                record.msg, record.args = scrubbed, None
        return True


_FILTER = _RedactingFilter()
_FILTER_LOCK = threading.Lock()
_SCRUBBED_LOGGERS = ("httpx", "httpcore")


def register_secrets(secrets: Iterable[str]) -> None:
    """Keep these secrets out of the HTTP client libraries' log lines (called by each notifier that holds one)."""
    with _FILTER_LOCK:
        _FILTER.secrets.update(s for s in secrets if s)
        for name in _SCRUBBED_LOGGERS:
            target = logging.getLogger(name)
            if _FILTER not in target.filters:
                target.addFilter(_FILTER)
