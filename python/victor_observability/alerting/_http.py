"""One JSON POST for the HTTP notifiers, mapping every failure to a secret-free NotificationError."""

from __future__ import annotations

import email.utils
import time
from collections.abc import Iterable, Mapping

import httpx

from victor_observability.alerting._secrets import redact
from victor_observability.alerting.notification import NotificationError

# Statuses worth retrying besides 5xx: request timeout and rate limiting.
_RETRYABLE_4XX = frozenset({408, 425, 429})


def parse_retry_after(value: str | None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or an HTTP date); None if absent or garbled."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


async def post_json(
    channel: str,
    url: str,
    body: bytes,
    headers: Mapping[str, str],
    timeout: float,
    secrets: Iterable[str],
) -> None:
    """POST `body` as JSON; return on 2xx, raise NotificationError (redacted, with retry hints) otherwise."""
    secret_list = list(secrets)
    try:
        async with httpx.AsyncClient(timeout=timeout, follow_redirects=False) as client:
            response = await client.post(url, content=body, headers={"Content-Type": "application/json", **headers})
    except httpx.HTTPError as exc:
        detail = redact(str(exc), secret_list) or "no detail"
        # `from None`: the original exception's message may carry the URL.
        raise NotificationError(f"{channel}: {type(exc).__name__}: {detail}") from None
    status = response.status_code
    if 200 <= status < 300:
        return
    # Redact before cutting: a cut through an echoed secret would leave its first half unredacted.
    snippet = redact(response.text[:4096], secret_list)[:200].strip()
    message = f"{channel}: HTTP {status}" + (f": {snippet}" if snippet else "")
    retry_after = parse_retry_after(response.headers.get("retry-after")) if status in (429, 503) else None
    retryable = status >= 500 or status in _RETRYABLE_4XX
    raise NotificationError(message, retry_after=retry_after, retryable=retryable)
