"""The ``email`` sink: a plain-text alert over SMTP (runbook §2: "Summary alert to
ops@polylog.example").

The standard library's :mod:`smtplib` runs in this sink's own worker thread, so a slow or dead
mail server never blocks the event loop (the monitor) nor the other sinks. Transport security is
``starttls`` (upgrade on the submission port, 587), ``ssl`` (implicit TLS, 465) or ``none``; the
server certificate is verified against the system's trust store (``SSL_CERT_FILE`` /
``SSL_CERT_DIR`` are honoured) unless an ``ssl_context`` is given. With a username the sink logs
in; the password is a :class:`~polylog_console.core.model.config.Secret` and appears in no message.

SMTP replies decide retries: 4xx (temporary: greylisting, mailbox busy) and lost connections are
retried, 5xx (refused) and failed logins are not.
"""

from __future__ import annotations

import asyncio
import smtplib
import ssl
from concurrent.futures import ThreadPoolExecutor

from polylog_console.core.alerts.delivery import DeliveryError
from polylog_console.core.alerts.payload import Notification, email_message
from polylog_console.core.infra.text import safe_text
from polylog_console.core.model.config import DEFAULT_EMAIL_TO, EmailConfig, Secret


def _reply(code: int, message: bytes | str) -> str:
    text = message.decode("utf-8", "replace") if isinstance(message, bytes) else str(message)
    return f"{code} {safe_text(text.replace(chr(10), ' '), 160)}"


class EmailSink:
    name = "email"

    def __init__(self, host: str, port: int = 587, *, tls: str = "starttls", username: str | None = None,
                 password: Secret | None = None, sender: str = "polylog-console@localhost",
                 to: tuple[str, ...] = DEFAULT_EMAIL_TO, timeout: float = 10.0,
                 ssl_context: ssl.SSLContext | None = None) -> None:
        if tls not in ("starttls", "ssl", "none"):
            raise ValueError(f"email tls must be starttls, ssl or none, not {tls!r}")
        self.host = host
        self.port = port
        self.tls = tls
        self.username = username
        self.password = password
        self.sender = sender
        self.to = tuple(to) or DEFAULT_EMAIL_TO
        self.timeout = timeout
        self.ssl_context = ssl_context
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="polylog-smtp")

    @classmethod
    def from_config(cls, config: EmailConfig, ssl_context: ssl.SSLContext | None = None) -> EmailSink:
        return cls(config.host, config.port, tls=config.tls, username=config.username, password=config.password,
                   sender=config.sender, to=config.to, timeout=config.timeout, ssl_context=ssl_context)

    def __repr__(self) -> str:
        return f"EmailSink({self.host}:{self.port}, tls={self.tls}, to={', '.join(self.to)})"

    @property
    def where(self) -> str:
        return f"SMTP {self.host}:{self.port}"

    def _context(self) -> ssl.SSLContext:
        return self.ssl_context or ssl.create_default_context()

    def _send_blocking(self, note: Notification) -> None:
        """Connect, secure, log in, send; raises :class:`DeliveryError`. Runs in the worker thread."""
        message = email_message(note, self.sender, self.to)
        try:
            if self.tls == "ssl":
                client: smtplib.SMTP = smtplib.SMTP_SSL(self.host, self.port, timeout=self.timeout,
                                                        context=self._context())
            else:
                client = smtplib.SMTP(self.host, self.port, timeout=self.timeout)
            with client:
                client.ehlo()
                if self.tls == "starttls":
                    client.starttls(context=self._context())
                    client.ehlo()
                if self.username:
                    client.login(self.username, self.password.reveal() if self.password else "")
                refused = client.send_message(message)
        except smtplib.SMTPAuthenticationError as exc:
            raise DeliveryError(f"{self.where}: login refused: {_reply(exc.smtp_code, exc.smtp_error)}",
                                retryable=False, status=exc.smtp_code) from None
        except smtplib.SMTPRecipientsRefused as exc:
            codes = [code for code, _ in exc.recipients.values()]
            detail = "; ".join(f"{safe_text(rcpt, 80)}: {_reply(code, msg)}"
                               for rcpt, (code, msg) in exc.recipients.items())
            raise DeliveryError(f"{self.where}: every recipient refused: {detail}",
                                retryable=any(400 <= c < 500 for c in codes), status=max(codes)) from None
        except smtplib.SMTPResponseException as exc:
            raise DeliveryError(f"{self.where}: {_reply(exc.smtp_code, exc.smtp_error)}",
                                retryable=400 <= exc.smtp_code < 500, status=exc.smtp_code) from None
        except smtplib.SMTPNotSupportedError as exc:
            raise DeliveryError(f"{self.where}: {safe_text(exc, 160)}", retryable=False) from None
        except ssl.SSLCertVerificationError as exc:
            raise DeliveryError(f"{self.where}: certificate not trusted: {safe_text(exc.verify_message, 120)}",
                                retryable=False) from None
        except (smtplib.SMTPException, OSError) as exc:  # disconnects, timeouts, refused connections, TLS errors
            raise DeliveryError(f"{self.where}: {type(exc).__name__}: {safe_text(str(exc) or 'failed', 160)}",
                                retryable=True) from None
        if refused:
            codes = [code for code, _ in refused.values()]
            if any(400 <= c < 500 for c in codes):
                detail = "; ".join(f"{safe_text(r, 80)}: {_reply(c, m)}" for r, (c, m) in refused.items())
                raise DeliveryError(f"{self.where}: recipients deferred: {detail}", retryable=True)
            # Permanently refused recipients: the message went to the others; say so without retrying.
            detail = "; ".join(f"{safe_text(r, 80)}: {_reply(c, m)}" for r, (c, m) in refused.items())
            raise DeliveryError(f"{self.where}: some recipients refused: {detail}", retryable=False,
                                status=max(codes))

    async def send(self, note: Notification) -> None:
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._pool, self._send_blocking, note)

    async def aclose(self) -> None:
        # A send in progress ends by itself within ``timeout`` (socket timeouts); do not wait for it.
        self._pool.shutdown(wait=False, cancel_futures=True)
