"""Secrets hygiene for notifiers: redaction, URLs safe to show, and scrubbing the HTTP client's own log lines."""

from __future__ import annotations

import base64
import logging
import threading
from collections.abc import Iterable
from urllib.parse import unquote, unquote_plus, urlsplit

REDACTED = "***"


def redact(text: str, secrets: Iterable[str]) -> str:
    """Replace every occurrence of each secret in `text` (longest first, so a URL goes before its path)."""
    for secret in sorted((s for s in secrets if s), key=len, reverse=True):
        text = text.replace(secret, REDACTED)
    return text


def _basic(user: str, password: str) -> str:
    return base64.b64encode(f"{user}:{password}".encode()).decode("ascii")


def url_credentials(url: str) -> list[str]:
    """Every form in which a URL's credentials go over the wire or come back in an echo: the userinfo's
    password (as written and percent-decoded), the Basic header value the HTTP client builds from
    `user:password@`, and each query parameter's value (`?token=...`; values under 3 characters are left).

    >>> url_credentials("http://app:pa%40ss@host/x?token=t0k&page=1")
    ['app:pa%40ss', 'pa%40ss', 'pa@ss', 'YXBwOnBhQHNz', 'YXBwOnBhJTQwc3M=', 't0k']
    """
    parts = urlsplit(url)
    found: list[str] = []
    if parts.password is not None or parts.username:
        user, password = parts.username or "", parts.password or ""
        found.append(f"{user}:{password}" if parts.password is not None else user)
        if password:
            found += [password, unquote(password)]
        # httpx (like requests and curl) sends userinfo as `Authorization: Basic base64(user:password)`.
        found += [_basic(unquote(user), unquote(password)), _basic(user, password)]
    for pair in parts.query.split("&"):
        _, _, value = pair.partition("=")
        if len(value) >= 3:
            found += [value, unquote_plus(value)]
    return [s for s in dict.fromkeys(found) if s]


def header_credentials(values: Iterable[str]) -> list[str]:
    """Each header value, and for `Scheme token` values the token alone (a receiver may echo just that); for
    Basic, the decoded `user:password` and the password too.

    >>> header_credentials(["Bearer abc123", "Basic dTpwdw=="])
    ['Bearer abc123', 'abc123', 'Basic dTpwdw==', 'dTpwdw==', 'u:pw', 'pw']
    """
    found: list[str] = []
    for value in values:
        found.append(value)
        scheme, _, token = value.strip().partition(" ")
        token = token.strip()
        if not token:
            continue
        found.append(token)
        if scheme.lower() == "basic":
            try:
                decoded = base64.b64decode(token, validate=True).decode()
            except (ValueError, UnicodeDecodeError):
                continue
            found.append(decoded)
            found.append(decoded.partition(":")[2])
    return [s for s in dict.fromkeys(found) if s]


def url_secrets(url: str) -> list[str]:
    """For a URL that is a credential itself (a Slack webhook): the whole URL, its path+query, and everything
    `url_credentials` finds in it."""
    parts = urlsplit(url)
    found = [url]
    tail = parts.path + (f"?{parts.query}" if parts.query else "")
    if len(tail) > 1:
        found.append(tail)
    return found + url_credentials(url)


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
