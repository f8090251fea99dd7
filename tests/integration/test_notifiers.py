"""Notification channels against real peers on 127.0.0.1: an aiosmtpd server and an HTTP receiver standing in
for Slack and a webhook (scripted to answer 429, 500, or hang)."""

from __future__ import annotations

import asyncio
import email
import email.policy
import hashlib
import hmac
import json
import logging
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from victor_observability import (
    AlertManager,
    AlertRule,
    AlertSeverity,
    EmailNotifier,
    SlackNotifier,
    WebhookNotifier,
    create_alert_manager,
    create_production_collector,
)
from victor_observability.alerting import DeliveryPolicy

pytestmark = pytest.mark.integration

T0 = 1_700_000_000.0
SMTP_PASSWORD = "smtp-pa55word-never-shown"
HMAC_SECRET = "hmac-secret-never-shown"
SLACK_TOKEN = "T000/B000/slacktokennevershown"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def eventually(predicate: Any, timeout: float = 10.0) -> None:
    """Poll a condition with a bounded wait (no timed assertion: the bound only stops a broken test)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.01)


# -- the HTTP receiver ------------------------------------------------------------------------------------------------


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class Receiver:
    """ThreadingHTTPServer recording every POST; per path, a script of replies: (status, headers) or "hang"."""

    def __init__(self) -> None:
        self.requests: list[Received] = []
        self.scripts: dict[str, list[Any]] = {}
        self.hanging = threading.Event()
        self.release = threading.Event()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                receiver.requests.append(Received(self.path, {k.lower(): v for k, v in self.headers.items()}, body))
                script = receiver.scripts.get(self.path.split("?")[0], [])
                action = script.pop(0) if script else (200, {})
                if action == "hang":
                    receiver.hanging.set()
                    receiver.release.wait(30)
                    return
                status, headers = action
                # Echo the path in error bodies: a receiver that does so must not leak a secret URL through us.
                payload = b"ok" if status < 400 else f"error for {self.path}".encode()
                self.send_response(status)
                for key, value in headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def on(self, path: str) -> list[Received]:
        return [r for r in self.requests if r.path == path]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    r.thread.start()
    yield r
    r.release.set()
    r.server.shutdown()
    r.server.server_close()
    r.thread.join(10)


# -- the SMTP server --


class MailHandler:
    def __init__(self) -> None:
        self.messages: list[tuple[str, list[str], EmailMessage]] = []
        self.refuse: str | None = None
        self.attempts = 0

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str, options: Any) -> str:
        self.attempts += 1
        if self.refuse:
            return self.refuse
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        msg = email.message_from_bytes(envelope.content, policy=email.policy.default)
        assert isinstance(msg, EmailMessage)
        self.messages.append((envelope.mail_from, list(envelope.rcpt_tos), msg))
        return "250 Message accepted"


def authenticator(server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any) -> AuthResult:
    ok = isinstance(auth_data, LoginPassword) and auth_data.password == SMTP_PASSWORD.encode()
    return AuthResult(success=ok, handled=False)


@pytest.fixture
def smtp() -> Iterator[tuple[MailHandler, int]]:
    handler = MailHandler()
    port = free_port()
    controller = Controller(
        handler, hostname="127.0.0.1", port=port, authenticator=authenticator, auth_require_tls=False
    )
    controller.start()
    yield handler, port
    controller.stop()


def email_notifier(port: int, password: str = SMTP_PASSWORD) -> EmailNotifier:
    return EmailNotifier(
        smtp_host="127.0.0.1",
        smtp_port=port,
        username="alerts@victor.ai",
        password=password,
        to_addresses=["oncall@victor.ai", "sre@victor.ai"],
        starttls=False,  # the local server speaks plain SMTP
        timeout=5.0,
    )


class FakeClock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


class Sleeps:
    """The backoff sleep, recorded instead of waited (it still yields to the loop)."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)
        await asyncio.sleep(0)


def make_rule(name: str, channels: list[str], value: list[bool], **labels: str) -> AlertRule:
    return (
        AlertRule.builder()
        .name(name)
        .description("Error rate exceeds 5%")
        .condition(lambda: value[0])
        .severity(AlertSeverity.CRITICAL)
        .notification_channels(channels)
        .labels(labels)
        .build()
    )


# -- tests --


async def test_slack_and_webhook_receive_exact_payloads(receiver: Receiver) -> None:
    clock = FakeClock()
    manager = create_alert_manager(clock=clock)
    manager.add_notifier("slack", SlackNotifier(f"{receiver.url}/slack", channel="#alerts"))
    headers = {"Authorization": "Bearer hook-token"}
    manager.add_notifier("hook", WebhookNotifier(f"{receiver.url}/hook", headers=headers, secret=HMAC_SECRET))
    value = [True]
    manager.add_rule(make_rule("high_error_rate", ["slack", "hook"], value, service="api"))
    [alert] = await manager.check_and_alert()
    assert await manager.flush(10)
    [slack] = receiver.on("/slack")
    assert slack.headers["content-type"] == "application/json"
    assert slack.json() == {
        "channel": "#alerts",
        "username": "Victor Alerts",
        "icon_emoji": ":rotating_light:",
        "text": "[FIRING] high_error_rate (critical): Error rate exceeds 5%",
        "attachments": [
            {
                "color": "#8b0000",
                "title": "high_error_rate is firing",
                "text": "Error rate exceeds 5%",
                "fields": [
                    {"title": "Rule", "value": "high_error_rate", "short": True},
                    {"title": "Severity", "value": "critical", "short": True},
                    {"title": "Status", "value": "firing", "short": True},
                    {"title": "service", "value": "api", "short": True},
                ],
                "footer": f"alert {alert.id}",
                "ts": int(T0),
            }
        ],
    }
    [hook] = receiver.on("/hook")
    body = hook.json()
    assert body == {
        "version": "1",
        "status": "firing",
        "repeat": False,
        "idempotency_key": hook.headers["idempotency-key"],
        "alert": {
            "id": alert.id,
            "fingerprint": alert.fingerprint,
            "rule_name": "high_error_rate",
            "severity": "critical",
            "status": "firing",
            "message": "Error rate exceeds 5%",
            "details": {},
            "labels": {"service": "api"},
            "annotations": {},
            "value": None,
            "started_at": T0,
            "fired_at": T0,
            "resolved_at": None,
            "acknowledged_at": None,
            "last_notified_at": T0,
            "notification_count": 1,
        },
    }
    expected_sig = "sha256=" + hmac.new(HMAC_SECRET.encode(), hook.body, hashlib.sha256).hexdigest()
    assert hook.headers["x-victor-signature-256"] == expected_sig
    assert hook.headers["authorization"] == "Bearer hook-token"
    value[0] = False
    clock.now += 90
    await manager.check_and_alert()
    assert await manager.flush(10)
    resolved_slack = receiver.on("/slack")[1].json()
    assert resolved_slack["text"].startswith("[RESOLVED] high_error_rate")
    assert resolved_slack["attachments"][0]["color"] == "#2eb886"
    assert resolved_slack["attachments"][0]["ts"] == int(T0 + 90)
    resolved_hook = receiver.on("/hook")[1]
    assert resolved_hook.json()["status"] == "resolved"
    assert resolved_hook.json()["alert"]["resolved_at"] == T0 + 90
    assert resolved_hook.headers["idempotency-key"] != hook.headers["idempotency-key"]


async def test_429_then_500_then_hang_is_retried_then_recorded_while_others_deliver(
    receiver: Receiver, smtp: tuple[MailHandler, int]
) -> None:
    mail, port = smtp
    collector = create_production_collector(prefix="victor", collect_system_metrics=False)
    sleeps = Sleeps()
    manager = create_alert_manager(metrics_collector=collector, clock=FakeClock(), sleep=sleeps, random=lambda: 0.5)
    slack_policy = DeliveryPolicy(timeout=3.0, max_attempts=3, base_delay=0.5, jitter=0.5)
    manager.add_notifier("slack", SlackNotifier(f"{receiver.url}/slack"), policy=slack_policy)
    manager.add_notifier("hook", WebhookNotifier(f"{receiver.url}/hook", secret=HMAC_SECRET))
    manager.add_notifier("email", email_notifier(port))
    receiver.scripts["/slack"] = [(429, {"Retry-After": "7"}), (500, {}), "hang"]
    manager.add_rule(make_rule("high_error_rate", ["slack", "hook", "email"], [True]))
    await manager.check_and_alert()
    await eventually(receiver.hanging.is_set)
    # while Slack hangs on its third attempt, the other channels have been delivered
    await eventually(lambda: len(receiver.on("/hook")) == 1 and len(mail.messages) == 1)
    assert manager.get_failed_notifications() == []
    assert await manager.flush(15)
    [failure] = manager.get_failed_notifications()
    assert (failure.channel, failure.attempts, failure.kind) == ("slack", 3, "firing")
    assert failure.error == "slack: timed out after 3s"
    # Retry-After (7 s) beat the first backoff (0.5 * 0.75); the second is the doubled, jittered backoff
    assert sleeps.delays == [7.0, 0.75]
    bodies = {r.body for r in receiver.on("/slack")}
    assert len(receiver.on("/slack")) == 3 and len(bodies) == 1  # the same notification, retried
    text = collector.export_prometheus()
    assert 'victor_alert_notifications_total{channel="slack",outcome="retry"} 2' in text
    assert 'victor_alert_notifications_total{channel="slack",outcome="failed"} 1' in text
    assert 'victor_alert_notifications_total{channel="hook",outcome="sent"} 1' in text
    assert 'victor_alert_notifications_total{channel="email",outcome="sent"} 1' in text
    assert manager.state()["notifications"]["failed"][0]["error"] == "slack: timed out after 3s"


async def test_webhook_retry_keeps_idempotency_key_and_signature(receiver: Receiver) -> None:
    sleeps = Sleeps()
    manager = create_alert_manager(sleep=sleeps)
    manager.add_notifier("hook", WebhookNotifier(f"{receiver.url}/hook", secret=HMAC_SECRET))
    manager.add_notifier("bad", WebhookNotifier(f"{receiver.url}/bad"))
    receiver.scripts["/hook"] = [(503, {"Retry-After": "2"}), (200, {})]
    receiver.scripts["/bad"] = [(400, {})]
    manager.add_rule(make_rule("r", ["hook", "bad"], [True]))
    await manager.check_and_alert()
    assert await manager.flush(10)
    first, second = receiver.on("/hook")
    assert first.body == second.body
    assert first.headers["idempotency-key"] == second.headers["idempotency-key"]
    assert first.headers["x-victor-signature-256"] == second.headers["x-victor-signature-256"]
    assert sleeps.delays == [2.0]
    # 400 is not worth retrying: one attempt, then the failure record
    [failure] = manager.get_failed_notifications()
    assert failure.channel == "bad" and failure.attempts == 1 and "HTTP 400" in failure.error
    assert len(receiver.on("/bad")) == 1


async def test_email_is_delivered_with_subject_recipients_and_body(smtp: tuple[MailHandler, int]) -> None:
    mail, port = smtp
    manager = create_alert_manager(clock=FakeClock())
    manager.add_notifier("email", email_notifier(port))
    manager.add_rule(make_rule("high_error_rate", ["email"], [True], service="api"))
    [alert] = await manager.check_and_alert()
    assert await manager.flush(10)
    assert manager.get_failed_notifications() == []
    [(sender, recipients, msg)] = mail.messages
    assert sender == "alerts@victor.ai"
    assert recipients == ["oncall@victor.ai", "sre@victor.ai"]
    assert msg["Subject"] == "[victor] [FIRING] high_error_rate (critical): Error rate exceeds 5%"
    assert msg["To"] == "oncall@victor.ai, sre@victor.ai"
    assert msg["X-Victor-Alert-Id"] == alert.id
    plain = msg.get_body(preferencelist=("plain",))
    html = msg.get_body(preferencelist=("html",))
    assert plain is not None and html is not None
    text = plain.get_content()
    assert "Rule: high_error_rate" in text and "Severity: critical" in text and "label service: api" in text
    assert "<th>Message</th><td>Error rate exceeds 5%</td>" in html.get_content()


async def test_refusing_and_down_smtp_servers_are_retried_then_recorded(
    smtp: tuple[MailHandler, int], caplog: pytest.LogCaptureFixture
) -> None:
    mail, port = smtp
    mail.refuse = "550 5.1.1 mailbox unavailable"
    sleeps = Sleeps()
    manager = create_alert_manager(sleep=sleeps, delivery_policy=DeliveryPolicy(max_attempts=3, timeout=10))
    manager.add_notifier("refusing", email_notifier(port))
    manager.add_notifier("down", email_notifier(free_port()))
    manager.add_notifier("wrong_password", email_notifier(port, password="not-the-" + SMTP_PASSWORD))
    manager.add_rule(make_rule("r", ["refusing", "down", "wrong_password"], [True]))
    with caplog.at_level(logging.DEBUG, logger="victor_observability.alerting"):
        await manager.check_and_alert()
        assert await manager.flush(30)
    failures = {f.channel: f for f in manager.get_failed_notifications()}
    assert set(failures) == {"refusing", "down", "wrong_password"}
    assert all(f.attempts == 3 for f in failures.values())
    assert "SMTPRecipientsRefused" in failures["refusing"].error
    assert "ConnectionRefusedError" in failures["down"].error
    assert "SMTPAuthenticationError" in failures["wrong_password"].error
    assert mail.attempts == 2 * 3 and mail.messages == []  # two recipients, three attempts
    assert len(sleeps.delays) == 6
    assert SMTP_PASSWORD not in caplog.text and SMTP_PASSWORD not in json.dumps(manager.state())


async def test_secrets_stay_out_of_reprs_logs_state_and_errors(
    receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    closed = free_port()
    manager = AlertManager(sleep=Sleeps(), delivery_policy=DeliveryPolicy(max_attempts=2))
    notifiers = {
        "slack_500": SlackNotifier(f"{receiver.url}/services/{SLACK_TOKEN}"),
        "slack_down": SlackNotifier(f"http://127.0.0.1:{closed}/services/{SLACK_TOKEN}"),
        "hook_500": WebhookNotifier(
            f"{receiver.url}/hook?token={SLACK_TOKEN}", headers={"Authorization": HMAC_SECRET}, secret=HMAC_SECRET
        ),
        "email": email_notifier(closed),
    }
    for name, notifier in notifiers.items():
        manager.add_notifier(name, notifier)
    receiver.scripts[f"/services/{SLACK_TOKEN}"] = [(500, {}), (500, {})]
    receiver.scripts["/hook"] = [(500, {}), (500, {})]
    manager.add_rule(make_rule("r", list(notifiers), [True]))
    with caplog.at_level(logging.DEBUG):
        [alert] = await manager.check_and_alert()
        assert await manager.flush(30)
    failures = manager.get_failed_notifications()
    assert {f.channel for f in failures} == set(notifiers)
    assert any(f.error == "slack: HTTP 500: error for ***" for f in failures)  # the echoed secret path, redacted
    exposed = "\n".join(
        [
            caplog.text,
            repr(manager),
            json.dumps(manager.state()),
            json.dumps(alert.to_dict()),
            *(repr(n) for n in notifiers.values()),
            *(json.dumps(f.to_dict()) for f in failures),
        ]
    )
    for secret in (SLACK_TOKEN, HMAC_SECRET, SMTP_PASSWORD, "slacktokennevershown"):
        assert secret not in exposed
    assert "slack_500" in exposed  # the report is there, only the secrets are not
