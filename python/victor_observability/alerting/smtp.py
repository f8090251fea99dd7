"""Email notification channel: a plain-text + HTML MIME mail sent with smtplib on the channel's own threads."""

from __future__ import annotations

import asyncio
import contextlib
import html
import smtplib
import socket
import ssl
import threading
import time
import unicodedata
from collections.abc import Iterable
from email.message import EmailMessage
from email.utils import formatdate, make_msgid

from victor_observability.alerting._secrets import redact
from victor_observability.alerting._threads import DaemonPool
from victor_observability.alerting.notification import Notification, NotificationError, SendAlert

#: Subjects are cut to this many characters (RFC 5322 recommends lines under 78; mail clients show ~100).
SUBJECT_LIMIT = 160
_BREAKS = frozenset({"Cc", "Zl", "Zp"})  # control characters, line and paragraph separators


def one_line(text: str, limit: int = SUBJECT_LIMIT) -> str:
    """`text` as one header-safe line: every run of whitespace or control characters (CR, LF, NEL, U+2028...)
    becomes one space, and the result is cut to `limit` characters with an ellipsis.

    >>> one_line("disk full\\r\\nBcc: x@evil.example\\n\\tagain")
    'disk full Bcc: x@evil.example again'
    >>> one_line("a" * 10, limit=5)
    'aaaa…'
    """
    cleaned = "".join(" " if unicodedata.category(c) in _BREAKS else c for c in text)
    line = " ".join(cleaned.split())
    return line if len(line) <= limit else line[: limit - 1].rstrip() + "…"


def _tighten(smtp: smtplib.SMTP, timeout: float) -> None:
    if smtp.sock is not None:
        smtp.sock.settimeout(timeout)


class _Abort:
    """Lets the event loop end a send blocked in a socket call: shutting its socket down wakes the call."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._smtp: smtplib.SMTP | None = None
        self._raw: socket.socket | None = None
        self.aborted = False

    def attach(self, smtp: smtplib.SMTP, raw: socket.socket | None = None) -> None:
        with self._lock:
            self._smtp = smtp
            if raw is not None:
                self._raw = raw
            aborted = self.aborted
        if aborted:
            if raw is not None:
                raw.close()
            raise TimeoutError("send abandoned")

    def abort(self) -> None:
        with self._lock:
            self.aborted = True
            # smtp.sock is the TLS socket after STARTTLS; the raw one covers the connect phase.
            socks = [getattr(self._smtp, "sock", None), self._raw]
        for sock in socks:
            if sock is not None:
                with contextlib.suppress(OSError):  # already closed: nothing left to wake
                    sock.shutdown(socket.SHUT_RDWR)


def _registered(smtp: smtplib.SMTP, abort: _Abort, host: str, port: int, timeout: float) -> socket.socket:
    # smtplib's own socket hook (stable, but not in typeshed): the socket is registered the moment it exists,
    # so an abort during the greeting (a server that never speaks) ends the send.
    base = smtplib.SMTP_SSL if isinstance(smtp, smtplib.SMTP_SSL) else smtplib.SMTP
    sock: socket.socket = base._get_socket(smtp, host, port, timeout)  # type: ignore[union-attr]
    abort.attach(smtp, sock)
    return sock


class _SMTP(smtplib.SMTP):
    def __init__(self, abort: _Abort, timeout: float) -> None:
        self._abort = abort
        super().__init__(timeout=timeout)
        abort.attach(self)

    def _get_socket(self, host: str, port: int, timeout: float) -> socket.socket:
        return _registered(self, self._abort, host, port, timeout)


class _SMTP_SSL(smtplib.SMTP_SSL):
    def __init__(self, abort: _Abort, timeout: float, context: ssl.SSLContext) -> None:
        self._abort = abort
        super().__init__(timeout=timeout, context=context)
        abort.attach(self)

    def _get_socket(self, host: str, port: int, timeout: float) -> socket.socket:
        return _registered(self, self._abort, host, port, timeout)


class EmailNotifier(SendAlert):
    """Send alert mail over SMTP (implicit TLS with `use_tls=True`, else STARTTLS unless `starttls=False`).

    smtplib blocks, so each send runs on one of this channel's own `max_concurrent_sends` daemon threads, never
    on asyncio's default executor; `timeout` bounds the whole send (connect, TLS, login, DATA): past it the
    socket is shut down and the thread is free again. The subject is one line of at most SUBJECT_LIMIT
    characters; the full text is in the body. The password never appears in the repr, logs or errors.

    >>> EmailNotifier("smtp.example.com", 587, "alerts@example.com", "hunter2", ["oncall@example.com"])
    EmailNotifier(host='smtp.example.com', port=587, username='alerts@example.com', to=['oncall@example.com'])
    """

    def __init__(
        self,
        smtp_host: str,
        smtp_port: int = 587,
        username: str | None = None,
        password: str | None = None,
        to_addresses: Iterable[str] = (),
        from_address: str | None = None,
        use_tls: bool = False,
        starttls: bool = True,
        timeout: float = 10.0,
        ssl_context: ssl.SSLContext | None = None,
        subject_prefix: str = "[victor]",
        max_concurrent_sends: int = 4,
    ) -> None:
        self.smtp_host = smtp_host
        self.smtp_port = int(smtp_port)
        self.username = username
        self._password = password
        self.to_addresses = [str(a) for a in to_addresses]
        if not self.to_addresses:
            raise ValueError("EmailNotifier: to_addresses must name at least one recipient")
        if from_address is None:
            from_address = username if username and "@" in username else "victor-alerts@localhost"
        self.from_address = from_address
        self.use_tls = use_tls
        self.starttls = starttls and not use_tls
        self.timeout = timeout
        self._ssl_context = ssl_context
        self.subject_prefix = subject_prefix
        # Its own threads, not asyncio's default executor: a hanging SMTP server must not starve the
        # application's to_thread() or the name lookups of the HTTP channels.
        self._pool = DaemonPool(max_concurrent_sends, "smtp")

    def __repr__(self) -> str:
        return (
            f"EmailNotifier(host={self.smtp_host!r}, port={self.smtp_port}, username={self.username!r}, "
            f"to={self.to_addresses!r})"
        )

    def secrets(self) -> list[str]:
        return [self._password] if self._password else []

    def build_message(self, notification: Notification) -> EmailMessage:
        """The MIME message (multipart/alternative: text/plain then text/html) for this notification."""
        alert = notification.alert
        msg = EmailMessage()
        prefix = f"{self.subject_prefix} " if self.subject_prefix else ""
        # One line, bounded: a newline in a rule's name or description would make the email module refuse the
        # header (and no header may be injected); the full text is in the body.
        msg["Subject"] = one_line(f"{prefix}{notification.title}")
        msg["From"] = self.from_address
        msg["To"] = ", ".join(self.to_addresses)
        msg["Date"] = formatdate(localtime=False)
        msg["Message-ID"] = make_msgid(domain="victor-observability")
        msg["X-Victor-Alert-Id"] = alert.id
        msg["X-Victor-Idempotency-Key"] = notification.idempotency_key
        rows = [
            ("Rule", alert.rule_name),
            ("Severity", alert.severity.value),
            ("Status", notification.kind),
            ("Message", alert.message),
        ]
        if alert.value is not None:
            rows.append(("Value", f"{alert.value:g}"))
        rows += [(f"label {k}", v) for k, v in sorted(alert.labels.items())]
        rows += [(f"annotation {k}", v) for k, v in sorted(alert.annotations.items())]
        rows.append(("Alert id", alert.id))
        msg.set_content("\n".join(f"{name}: {value}" for name, value in rows) + "\n")
        cells = "".join(f"<tr><th>{html.escape(n)}</th><td>{html.escape(v)}</td></tr>" for n, v in rows)
        msg.add_alternative(
            f"<html><body><h2>{html.escape(notification.title)}</h2><table>{cells}</table></body></html>",
            subtype="html",
        )
        return msg

    def _tls_context(self) -> ssl.SSLContext:
        # Made once, on first use: loading the CA bundle costs tens of milliseconds, too much for every send.
        if self._ssl_context is None:
            self._ssl_context = ssl.create_default_context()
        return self._ssl_context

    def _send_blocking(self, msg: EmailMessage, abort: _Abort) -> None:
        # The whole send has one deadline: each stage gets the time left as its socket timeout, and the event
        # loop shuts the socket down (abort) when the deadline passes while a call is blocked.
        deadline = time.monotonic() + self.timeout

        def left() -> float:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or abort.aborted:
                raise TimeoutError(f"send did not finish within {self.timeout:g}s")
            return remaining

        smtp = _SMTP_SSL(abort, left(), self._tls_context()) if self.use_tls else _SMTP(abort, left())
        try:
            smtp.connect(self.smtp_host, self.smtp_port)
            with smtp:
                _tighten(smtp, left())
                if self.starttls:
                    smtp.starttls(context=self._tls_context())
                    _tighten(smtp, left())
                if self.username and self._password:
                    smtp.login(self.username, self._password)
                    _tighten(smtp, left())
                smtp.send_message(msg, from_addr=self.from_address, to_addrs=self.to_addresses)
        finally:
            smtp.close()

    async def send(self, notification: Notification) -> None:
        msg = self.build_message(notification)
        abort = _Abort()
        try:
            await asyncio.wait_for(self._pool.run(self._send_blocking, msg, abort), self.timeout)
        except asyncio.TimeoutError:
            abort.abort()
            raise NotificationError(f"email: timed out after {self.timeout:g}s") from None
        except asyncio.CancelledError:
            abort.abort()  # the attempt timed out: end the blocked send now, freeing its thread
            raise
        except (smtplib.SMTPException, OSError) as exc:
            detail = redact(str(exc), self.secrets()) or "no detail"
            raise NotificationError(f"email: {type(exc).__name__}: {detail}") from None
