"""Secrets hygiene for notifiers: redaction, URLs safe to show, and scrubbing the HTTP client's own log lines."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable
from urllib.parse import urlsplit

REDACTED = "***"


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
