"""Email notification channel: a plain-text + HTML MIME mail sent with smtplib in a worker thread."""

from __future__ import annotations

import asyncio
import html
import smtplib
import ssl
from collections.abc import Iterable
from email.message import EmailMessage
from email.utils import formatdate, make_msgid

from victor_observability.alerting._secrets import redact
from victor_observability.alerting.notification import Notification, NotificationError, SendAlert


class EmailNotifier(SendAlert):
    """Send alert mail over SMTP (implicit TLS with `use_tls=True`, else STARTTLS unless `starttls=False`).

    smtplib blocks, so each send runs in a thread with a socket timeout; the password never appears in the repr,
    logs or errors.

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
        msg["Subject"] = f"{prefix}{notification.title}"
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

    def _send_blocking(self, msg: EmailMessage) -> None:
        context = self._ssl_context or ssl.create_default_context()
        smtp: smtplib.SMTP
        if self.use_tls:
            smtp = smtplib.SMTP_SSL(self.smtp_host, self.smtp_port, timeout=self.timeout, context=context)
        else:
            smtp = smtplib.SMTP(self.smtp_host, self.smtp_port, timeout=self.timeout)
        with smtp:
            if self.starttls:
                smtp.starttls(context=context)
            if self.username and self._password:
                smtp.login(self.username, self._password)
            smtp.send_message(msg, from_addr=self.from_address, to_addrs=self.to_addresses)

    async def send(self, notification: Notification) -> None:
        msg = self.build_message(notification)
        try:
            await asyncio.to_thread(self._send_blocking, msg)
        except (smtplib.SMTPException, OSError) as exc:
            detail = redact(str(exc), self.secrets()) or "no detail"
            raise NotificationError(f"email: {type(exc).__name__}: {detail}") from None
