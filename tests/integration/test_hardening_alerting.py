"""Alerting against hostile input and hung peers, with real peers on 127.0.0.1: aiosmtpd, an SMTP server that
accepts and then never answers, and an HTTP receiver standing in for Slack that echoes what it was sent."""

from __future__ import annotations

import asyncio
import base64
import email
import email.policy
import json
import logging
import os
import socket
import threading
import time
from collections.abc import Iterator
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from victor_observability import (
    AlertmanagerNotifier,
    AlertRule,
    AlertSeverity,
    EmailNotifier,
    SlackNotifier,
    WebhookNotifier,
    create_alert_manager,
)
from victor_observability.alerting import DeliveryPolicy

pytestmark = pytest.mark.integration


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def eventually(predicate: Any, timeout: float = 20.0) -> None:
    """Poll a condition with a bounded wait (no timed assertion: the bound only stops a broken test)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.01)


def rule(name: str, description: str, channels: list[str], **labels: str) -> AlertRule:
    return (
        AlertRule.builder()
        .name(name)
        .description(description)
        .condition(lambda: True)
        .severity(AlertSeverity.CRITICAL)
        .notification_channels(channels)
        .labels(labels)
        .build()
    )


# -- peers ------------------------------------------------------------------------------------------------------------


class _Server(ThreadingHTTPServer):
    request_queue_size = 128  # every channel posts at once: the default backlog of 5 would reset connections


class Receiver:
    """An HTTP receiver recording each POST; paths under /echo answer 500 with the request's credentials echoed
    back (Authorization header, query string), as a badly written proxy or error page does."""

    def __init__(self) -> None:
        self.bodies: list[tuple[str, dict[str, str], bytes]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                headers = {k.lower(): v for k, v in self.headers.items()}
                receiver.bodies.append((self.path, headers, body))
                if self.path.startswith("/echo"):
                    auth = headers.get("authorization", "")
                    token = auth.partition(" ")[2]
                    payload = f"denied {self.path}: Authorization: {auth} (token {token})".encode()
                    status = 500
                else:
                    payload, status = b"ok", 200
                self.send_response(status)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = _Server(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(10)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


class Mailbox:
    def __init__(self) -> None:
        self.messages: list[tuple[list[str], EmailMessage]] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        msg = email.message_from_bytes(envelope.content, policy=email.policy.default)
        assert isinstance(msg, EmailMessage)
        self.messages.append((list(envelope.rcpt_tos), msg))
        return "250 Message accepted"


@pytest.fixture
def smtp() -> Iterator[tuple[Mailbox, int]]:
    box = Mailbox()
    port = free_port()
    controller = Controller(box, hostname="127.0.0.1", port=port)
    controller.start()
    yield box, port
    controller.stop()


class HangingSMTP:
    """Accepts connections and never says a word (a firewalled or wedged mail relay)."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(128)
        self.port = self.sock.getsockname()[1]
        self.conns: list[socket.socket] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        self.sock.settimeout(0.05)
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            self.conns.append(conn)

    def closed_by_client(self) -> int:
        """Connections whose client has hung up (reads EOF)."""
        n = 0
        for conn in list(self.conns):
            conn.setblocking(False)
            try:
                if conn.recv(1) == b"":
                    n += 1
            except BlockingIOError:
                pass
            except OSError:
                n += 1
        return n

    def close(self) -> None:
        self.stop.set()
        self.thread.join(5)
        for conn in self.conns:
            conn.close()
        self.sock.close()


@pytest.fixture
def hanging_smtp() -> Iterator[HangingSMTP]:
    server = HangingSMTP()
    yield server
    server.close()


# -- item 5: newlines in a rule's name or description --------------------------------------------------------------


async def test_newlines_in_name_and_description_still_deliver_one_line_subjects(smtp: tuple[Mailbox, int]) -> None:
    box, port = smtp
    manager = create_alert_manager()
    manager.add_notifier(
        "email",
        EmailNotifier("127.0.0.1", port, to_addresses=["oncall@victor.ai"], starttls=False, timeout=10.0),
    )
    description = "Error rate high\r\nBcc: attacker@evil.example\nX-Injected: yes\n\nsee runbook\u2028line " + "x" * 500
    manager.add_rule(rule("high\nerror\rrate", description, ["email"]))
    await manager.check_and_alert()
    assert await manager.flush(20)
    assert manager.get_failed_notifications() == []
    [(recipients, msg)] = box.messages
    assert recipients == ["oncall@victor.ai"]  # no injected recipient
    assert msg["Bcc"] is None and msg["X-Injected"] is None  # no injected header
    subject = str(msg["Subject"])
    assert "\n" not in subject and "\r" not in subject and "\u2028" not in subject
    assert subject.startswith("[victor] [FIRING] high error rate (critical): Error rate high Bcc: attacker@evil")
    assert len(subject) <= 160 and subject.endswith("…")
    plain = msg.get_body(preferencelist=("plain",))
    assert plain is not None
    body = plain.get_content()
    # The full text is in the body, newlines and all.
    assert "Error rate high\nBcc: attacker@evil.example\nX-Injected: yes\n\nsee runbook" in body.replace("\r\n", "\n")
    assert "x" * 500 in body


# -- item 6: a hanging SMTP server starves nobody --------------------------------------------------------------------


async def test_hanging_smtp_server_starves_neither_slack_nor_the_application(
    hanging_smtp: HangingSMTP, receiver: Receiver
) -> None:
    manager = create_alert_manager(delivery_policy=DeliveryPolicy(timeout=15.0, max_attempts=1))
    # The notifier's own timeout is long: only the attempt timeout (0.5 s) ends each send.
    email_channel = EmailNotifier(
        "127.0.0.1", hanging_smtp.port, to_addresses=["oncall@victor.ai"], starttls=False, timeout=60.0
    )
    manager.add_notifier("email", email_channel, policy=DeliveryPolicy(timeout=0.5, max_attempts=1))
    # A host name, not an IP: httpx (anyio) resolves it on asyncio's default executor.
    manager.add_notifier("slack", SlackNotifier(f"http://localhost:{receiver.port}/services/T0/B0/ok"))
    smtp_threads_before = sum(1 for t in threading.enumerate() if t.name.startswith("victor-smtp"))
    n = min(32, (os.cpu_count() or 1) + 4) + 8  # more sends than asyncio's default executor has threads
    for i in range(n):
        manager.add_rule(rule(f"rule_{i}", "something broke", ["email", "slack"]))
    await manager.check_and_alert()
    # Every email attempt has timed out, the server never having said a word...
    await eventually(lambda: sum(f.channel == "email" for f in manager.get_failed_notifications()) == n)
    await eventually(lambda: len(hanging_smtp.conns) > 0)
    # ...and the application's own blocking work still gets a thread.
    assert await asyncio.wait_for(asyncio.to_thread(lambda: 1), 20) == 1
    await eventually(lambda: len(receiver.bodies) == n)
    assert await manager.flush(30)
    failures = manager.get_failed_notifications()
    assert {f.channel for f in failures} == {"email"} and len(failures) == n
    assert all("timed out" in f.error for f in failures)
    # The sends really ended: we hung up on every connection the server accepted...
    await eventually(lambda: hanging_smtp.closed_by_client() == len(hanging_smtp.conns))
    # ...and they never held more threads than the channel's bound.
    smtp_threads = sum(1 for t in threading.enumerate() if t.name.startswith("victor-smtp"))
    assert smtp_threads - smtp_threads_before <= 4
    assert await asyncio.wait_for(asyncio.to_thread(lambda: 2), 20) == 2


async def test_the_send_ends_at_the_notifier_timeout_even_without_an_attempt_timeout(
    hanging_smtp: HangingSMTP,
) -> None:
    manager = create_alert_manager(delivery_policy=DeliveryPolicy(timeout=120.0, max_attempts=1))
    channel = EmailNotifier("127.0.0.1", hanging_smtp.port, to_addresses=["a@b.c"], starttls=False, timeout=0.5)
    manager.add_notifier("email", channel)
    manager.add_rule(rule("r", "d", ["email"]))
    await manager.check_and_alert()
    assert await manager.flush(30)
    [failure] = manager.get_failed_notifications()
    assert "timed out" in failure.error
    await eventually(lambda: len(hanging_smtp.conns) == 1 and hanging_smtp.closed_by_client() == 1)


# -- item 7: Slack text is escaped and bounded ------------------------------------------------------------------------


def strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from strings(v)


async def test_slack_text_is_escaped_and_truncated(receiver: Receiver) -> None:
    manager = create_alert_manager()
    manager.add_notifier("slack", SlackNotifier(f"{receiver.url}/services/T0/B0/ok", channel="#alerts"))
    hostile = "<!channel> ping <@U123> & <https://evil.example|Click here>"
    manager.add_rule(rule("r<!here>", hostile, ["slack"], service="<!everyone>", region="eu>&<"))
    manager.add_rule(rule("huge", "A" * 1_000_000, ["slack"]))
    await manager.check_and_alert()
    assert await manager.flush(20)
    assert manager.get_failed_notifications() == []
    posted = {json.loads(body)["attachments"][0]["title"]: (body, json.loads(body)) for _, _, body in receiver.bodies}
    _, payload = posted["r&lt;!here&gt; is firing"]
    for text in strings({k: v for k, v in payload.items() if k not in ("username", "icon_emoji", "channel")}):
        assert "<" not in text and ">" not in text, text
    attachment = payload["attachments"][0]
    assert attachment["text"] == "&lt;!channel&gt; ping &lt;@U123&gt; &amp; &lt;https://evil.example|Click here&gt;"
    assert "&lt;!here&gt;" in payload["text"]
    fields = {f["title"]: f["value"] for f in attachment["fields"]}
    assert fields["service"] == "&lt;!everyone&gt;" and fields["region"] == "eu&gt;&amp;&lt;"
    body, payload = posted["huge is firing"]
    assert len(body) < 20_000  # not the 2 MB it was
    assert payload["attachments"][0]["text"].endswith("… [truncated]")
    assert payload["text"].endswith("… [truncated]")


# -- item 8: credentials echoed back by a receiver --------------------------------------------------------------------

PASSWORD = "am-pa55word-never-shown"
BEARER = "bearer-t0ken-never-shown"
QUERY_TOKEN = "query-t0ken-never-shown"


async def test_echoed_credentials_are_redacted_in_failures_state_and_logs(
    receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    basic = base64.b64encode(f"admin:{PASSWORD}".encode()).decode()
    manager = create_alert_manager(delivery_policy=DeliveryPolicy(max_attempts=1))
    host = f"127.0.0.1:{receiver.port}"
    manager.add_notifier("alertmanager", AlertmanagerNotifier(f"http://admin:{PASSWORD}@{host}/echo"))
    manager.add_notifier(
        "webhook",
        WebhookNotifier(f"{receiver.url}/echo/hook?token={QUERY_TOKEN}", headers={"Authorization": f"Bearer {BEARER}"}),
    )
    manager.add_notifier("slack", SlackNotifier(f"http://hook:{PASSWORD}@{host}/echo/services/T0/B0/x"))
    manager.add_rule(rule("r", "d", ["alertmanager", "webhook", "slack"]))
    with caplog.at_level(logging.DEBUG):
        await manager.check_and_alert()
        assert await manager.flush(20)
    # The receiver did get (and echo) each credential.
    sent = {path.split("?")[0]: headers.get("authorization", "") for path, headers, _ in receiver.bodies}
    assert sent["/echo/api/v2/alerts"] == f"Basic {basic}"
    assert sent["/echo/hook"] == f"Bearer {BEARER}"
    failures = manager.get_failed_notifications()
    assert {f.channel for f in failures} == {"alertmanager", "webhook", "slack"}
    assert all("HTTP 500: denied" in f.error for f in failures)
    exposed = "\n".join(
        [
            caplog.text,
            json.dumps(manager.state()),
            *(json.dumps(f.to_dict()) for f in failures),
            *(repr(f) for f in failures),
        ]
    )
    for secret in (PASSWORD, basic, BEARER, QUERY_TOKEN, basic[:12]):
        assert secret not in exposed, secret
    assert "Authorization: Basic ***" in exposed  # the report is there, only the credentials are not
