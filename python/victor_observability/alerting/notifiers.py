"""Notification channels over HTTP (Slack, generic webhook, Prometheus Alertmanager) and the log default."""

from __future__ import annotations

import datetime
import hashlib
import hmac
import json
import logging
from collections.abc import Mapping
from typing import Any

from victor_observability.alerting._http import post_json
from victor_observability.alerting._secrets import (
    header_credentials,
    public_url,
    register_secrets,
    safe_url,
    url_credentials,
    url_secrets,
)
from victor_observability.alerting.notification import Notification, SendAlert
from victor_observability.alerting.rules import AlertSeverity

logger = logging.getLogger("victor_observability.alerting")

SEVERITY_COLOURS = {
    AlertSeverity.INFO: "#439fe0",
    AlertSeverity.WARNING: "#daa038",
    AlertSeverity.ERROR: "#e01e5a",
    AlertSeverity.CRITICAL: "#8b0000",
}
RESOLVED_COLOUR = "#2eb886"
SIGNATURE_HEADER = "X-Victor-Signature-256"
IDEMPOTENCY_HEADER = "Idempotency-Key"


# Slack's limits (api.slack.com): message text over 40,000 characters is truncated and 4,000 is the
# recommended length; Block Kit text objects take 3,000 characters and section fields 2,000; an attachment's
# footer is limited to 300. We cut below them ourselves, visibly, so nothing is cut (or rejected) silently.
SLACK_TEXT_LIMIT = 3000
SLACK_FIELD_LIMIT = 2000
SLACK_TITLE_LIMIT = 300
SLACK_MAX_FIELDS = 50
TRUNCATED = "… [truncated]"


def slack_text(value: object, limit: int = SLACK_TEXT_LIMIT) -> str:
    """`value` as inert Slack text: `&`, `<` and `>` escaped as Slack's message formatting requires (so
    `<!channel>`, `<@U123>` and `<https://evil|Click>` show as typed instead of pinging or linking), cut to
    `limit` characters with a marker and never inside an escape.

    >>> slack_text("<!channel> & <https://evil|Click>")
    '&lt;!channel&gt; &amp; &lt;https://evil|Click&gt;'
    >>> slack_text("a<b" * 10, limit=20)
    'a&lt;ba… [truncated]'
    """
    text = str(value)
    if len(text) > limit:
        text = text[:limit]  # escaping only lengthens: no need to escape a megabyte to keep `limit` of it
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    if len(text) <= limit and len(str(value)) <= limit:
        return text
    cut = text[: limit - len(TRUNCATED)]
    amp = cut.rfind("&")
    if amp != -1 and ";" not in cut[amp:]:
        cut = cut[:amp]  # do not leave half an escape behind
    return cut + TRUNCATED


def _dumps(payload: Any) -> bytes:
    return json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()


def rfc3339(seconds: float) -> str:
    """UTC timestamp in the form Alertmanager's API expects (millisecond precision, Z suffix)."""
    moment = datetime.datetime.fromtimestamp(seconds, tz=datetime.timezone.utc)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


class LogNotifier(SendAlert):
    """The embedded default channel: one log line per notification on `victor_observability.alerting`.

    >>> LogNotifier()
    LogNotifier(logger='victor_observability.alerting')
    """

    def __init__(self, logger_name: str = "victor_observability.alerting") -> None:
        self._logger = logging.getLogger(logger_name)

    def __repr__(self) -> str:
        return f"LogNotifier(logger={self._logger.name!r})"

    async def send(self, notification: Notification) -> None:
        alert = notification.alert
        level = logging.INFO if notification.resolved or alert.severity is AlertSeverity.INFO else logging.WARNING
        self._logger.log(level, "%s labels=%s id=%s", notification.title, alert.labels, alert.id)


class SlackNotifier(SendAlert):
    """Slack incoming-webhook channel: coloured attachment with rule, message, labels, firing/resolved.

    The webhook URL is a credential: it never appears in the repr, logs or errors. HTTP 429 Retry-After is honoured
    by the manager's retry loop.

    >>> SlackNotifier("https://hooks.slack.com/services/T0/B0/XYZ", channel="#alerts")
    SlackNotifier(webhook='https://hooks.slack.com/***', channel='#alerts')
    """

    def __init__(
        self,
        webhook_url: str,
        channel: str | None = None,
        username: str = "Victor Alerts",
        icon_emoji: str = ":rotating_light:",
        timeout: float = 10.0,
    ) -> None:
        if not webhook_url.startswith(("http://", "https://")):
            raise ValueError("SlackNotifier: webhook_url must be an http(s) URL")
        self._url = webhook_url
        self.channel = channel
        self.username = username
        self.icon_emoji = icon_emoji
        self.timeout = timeout
        register_secrets(self.secrets())

    def __repr__(self) -> str:
        return f"SlackNotifier(webhook={safe_url(self._url)!r}, channel={self.channel!r})"

    def secrets(self) -> list[str]:
        return url_secrets(self._url)

    def payload(self, notification: Notification) -> dict[str, Any]:
        """The JSON body posted to Slack for this notification (every text from the alert escaped and cut to
        Slack's limits by `slack_text`)."""
        alert = notification.alert
        colour = RESOLVED_COLOUR if notification.resolved else SEVERITY_COLOURS[alert.severity]

        def field(title: str, value: str) -> dict[str, Any]:
            return {
                "title": slack_text(title, SLACK_TITLE_LIMIT),
                "value": slack_text(value, SLACK_FIELD_LIMIT),
                "short": True,
            }

        fields = [
            field("Rule", alert.rule_name),
            field("Severity", alert.severity.value),
            field("Status", notification.kind),
        ]
        if alert.value is not None:
            fields.append(field("Value", f"{alert.value:g}"))
        labels = sorted(alert.labels.items())
        room = SLACK_MAX_FIELDS - len(fields)
        fields.extend(field(key, value) for key, value in labels[:room])
        if len(labels) > room:
            fields[-1] = field("…", f"{len(labels) - room + 1} more labels [truncated]")
        payload: dict[str, Any] = {
            "username": self.username,
            "icon_emoji": self.icon_emoji,
            "text": slack_text(notification.title),
            "attachments": [
                {
                    "color": colour,
                    "title": slack_text(f"{alert.rule_name} is {notification.kind}", SLACK_TITLE_LIMIT),
                    "text": slack_text(alert.message),
                    "fields": fields,
                    "footer": slack_text(f"alert {alert.id}", SLACK_TITLE_LIMIT),
                    "ts": int(alert.resolved_at if notification.resolved and alert.resolved_at else alert.started_at),
                }
            ],
        }
        if self.channel:
            payload["channel"] = self.channel
        return payload

    async def send(self, notification: Notification) -> None:
        body = _dumps(self.payload(notification))
        await post_json("slack", self._url, body, {}, self.timeout, self.secrets())


class WebhookNotifier(SendAlert):
    """Generic JSON webhook: the alert as JSON, an Idempotency-Key per notification and, with a secret, an
    `X-Victor-Signature-256: sha256=<hex HMAC-SHA256 of the body>` header (GitHub's scheme).

    >>> WebhookNotifier("https://example.com/hook?token=abc", headers={"Authorization": "Bearer t"}, secret="s")
    WebhookNotifier(url='https://example.com/***', headers=['Authorization'], signed=True)
    """

    def __init__(
        self,
        url: str,
        headers: Mapping[str, str] | None = None,
        secret: str | None = None,
        timeout: float = 10.0,
    ) -> None:
        if not url.startswith(("http://", "https://")):
            raise ValueError("WebhookNotifier: url must be an http(s) URL")
        self._url = url
        self._headers = dict(headers or {})
        self._secret = secret
        self.timeout = timeout
        register_secrets(self.secrets())

    def __repr__(self) -> str:
        return (
            f"WebhookNotifier(url={safe_url(self._url)!r}, headers={sorted(self._headers)!r}, "
            f"signed={self._secret is not None})"
        )

    def secrets(self) -> list[str]:
        found = url_secrets(self._url) + header_credentials(self._headers.values())
        if self._secret:
            found.append(self._secret)
        return found

    def payload(self, notification: Notification) -> dict[str, Any]:
        """The JSON body (idempotency key included, so a receiver that logs only bodies can dedupe)."""
        return {
            "version": "1",
            "status": notification.kind,
            "repeat": notification.repeat,
            "idempotency_key": notification.idempotency_key,
            "alert": notification.alert.to_dict(),
        }

    def sign(self, body: bytes) -> str | None:
        """The signature header value for `body`, or None without a secret."""
        if self._secret is None:
            return None
        return "sha256=" + hmac.new(self._secret.encode(), body, hashlib.sha256).hexdigest()

    async def send(self, notification: Notification) -> None:
        body = _dumps(self.payload(notification))
        headers = {**self._headers, IDEMPOTENCY_HEADER: notification.idempotency_key}
        signature = self.sign(body)
        if signature is not None:
            headers[SIGNATURE_HEADER] = signature
        await post_json("webhook", self._url, body, headers, self.timeout, self.secrets())


class AlertmanagerNotifier(SendAlert):
    """Forward alerts to a Prometheus Alertmanager (`POST <url>/api/v2/alerts`) for grouping, silences,
    inhibition and HA. A firing alert is sent with `endsAt = now + ttl`; keep the rule's repeat interval below
    `ttl` so Alertmanager does not time it out. The resolution is sent with `endsAt` = the resolution time.

    >>> AlertmanagerNotifier("http://user:pw@127.0.0.1:9093")
    AlertmanagerNotifier(url='http://127.0.0.1:9093/api/v2/alerts')
    """

    def __init__(
        self,
        url: str,
        generator_url: str | None = None,
        ttl: float = 3600.0,
        headers: Mapping[str, str] | None = None,
        timeout: float = 10.0,
    ) -> None:
        if not url.startswith(("http://", "https://")):
            raise ValueError("AlertmanagerNotifier: url must be an http(s) URL")
        if ttl <= 0:
            raise ValueError("AlertmanagerNotifier: ttl must be > 0")
        self._url = url.rstrip("/") + "/api/v2/alerts"
        self.generator_url = generator_url
        self.ttl = ttl
        self._headers = dict(headers or {})
        self.timeout = timeout
        register_secrets(self.secrets())

    def __repr__(self) -> str:
        return f"AlertmanagerNotifier(url={public_url(self._url)!r})"

    def secrets(self) -> list[str]:
        # An Alertmanager URL is not a credential, but basic-auth userinfo, query tokens and auth headers are.
        return url_credentials(self._url) + header_credentials(self._headers.values())

    def payload(self, notification: Notification) -> list[dict[str, Any]]:
        """The API v2 body: a list with one postable alert."""
        alert = notification.alert
        labels = {**alert.labels, "alertname": alert.rule_name, "severity": alert.severity.value}
        annotations = {"summary": alert.message, **alert.annotations}
        if alert.value is not None:
            annotations.setdefault("value", f"{alert.value:g}")
        starts = alert.fired_at if alert.fired_at is not None else alert.started_at
        if notification.resolved:
            ends = alert.resolved_at if alert.resolved_at is not None else notification.created_at
        else:
            ends = notification.created_at + self.ttl
        item: dict[str, Any] = {
            "labels": labels,
            "annotations": annotations,
            "startsAt": rfc3339(starts),
            "endsAt": rfc3339(max(ends, starts)),
        }
        if self.generator_url:
            item["generatorURL"] = self.generator_url
        return [item]

    async def send(self, notification: Notification) -> None:
        body = _dumps(self.payload(notification))
        await post_json("alertmanager", self._url, body, self._headers, self.timeout, self.secrets())
