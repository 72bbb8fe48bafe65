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

Every failure says what to do in operator terms (issue 10): a refusal that only a change of
``monitoring.toml`` can cure is a *configuration problem* naming the key (``email.username`` set
but no AUTH offered, ``email.tls`` = ``starttls`` without STARTTLS, a refused login, sender or
recipients: ``email.from`` / ``email.to``, an untrusted certificate), is not retried and carries
``category = "configuration"`` (``problem`` in the audit record); what may pass (refused
connection, timeout, TLS handshake, 4xx) is retried and says which keys to check if it lasts.
"""

from __future__ import annotations

import asyncio
import smtplib
import socket
import ssl
from concurrent.futures import ThreadPoolExecutor

from polylog_console.core.alerts.delivery import CONFIGURATION, DeliveryError
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
        self._default_context: ssl.SSLContext | None = None  # the system trust store, loaded once
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
        if self.ssl_context is not None:
            return self.ssl_context
        if self._default_context is None:  # loading the trust store takes 50-150 ms: once, in prewarm
            self._default_context = ssl.create_default_context()
        return self._default_context

    def prewarm(self) -> None:
        """Load the TLS trust store in the sink's own thread now (the first send does not wait for
        it: sends run in the same thread, after it)."""
        if self.tls != "none":
            self._pool.submit(self._context)

    def _send_blocking(self, note: Notification) -> None:
        """Connect, secure, log in, send; raises :class:`DeliveryError`. Runs in the worker thread."""
        message = email_message(note, self.sender, self.to)
        stage = "connect"
        client: smtplib.SMTP | None = None
        try:
            if self.tls == "ssl":
                client = smtplib.SMTP_SSL(self.host, self.port, timeout=self.timeout, context=self._context())
            else:
                client = smtplib.SMTP(self.host, self.port, timeout=self.timeout)
            with client:
                client.ehlo()
                if self.tls == "starttls":
                    stage = "starttls"
                    client.starttls(context=self._context())
                    client.ehlo()
                if self.username:
                    stage = "login"
                    client.login(self.username, self.password.reveal() if self.password else "")
                stage = "send"
                refused = client.send_message(message)
        except Exception as exc:
            raise self._explain(exc, stage, client) from None
        if refused:
            codes = [code for code, _ in refused.values()]
            detail = "; ".join(f"{safe_text(r, 80)}: {_reply(c, m)}" for r, (c, m) in refused.items())
            if any(400 <= c < 500 for c in codes):
                raise DeliveryError(f"{self.where}: recipients deferred: {detail}", retryable=True)
            # Permanently refused recipients: the message went to the others; say so without retrying.
            raise DeliveryError(f"{self.where}: some recipients refused: {detail} (check email.to)", retryable=False,
                                status=max(codes), category=CONFIGURATION)

    def _config(self, text: str, status: int | None = None) -> DeliveryError:
        """A refusal only a configuration change can cure: not retried, said in operator terms."""
        return DeliveryError(f"{self.where}: configuration problem: {text}", retryable=False, status=status,
                             category=CONFIGURATION)

    def _explain(self, exc: Exception, stage: str, client: smtplib.SMTP | None) -> DeliveryError:
        """``exc`` raised at ``stage`` (connect, starttls, login, send) as a :class:`DeliveryError`
        that says what to do: which key of ``[email]`` to check, or that it is retried."""
        where = self.where
        if isinstance(exc, smtplib.SMTPNotSupportedError):
            if stage == "starttls":
                return self._config('email.tls is "starttls" but the server does not offer STARTTLS: set email.tls '
                                    'to "ssl" (implicit TLS, usually port 465) or check email.port (587 for '
                                    'STARTTLS)')
            if stage == "login":
                over = " on a plain connection" if self.tls == "none" else ""
                return self._config(f"email.username is set but the server offers no AUTH{over}: remove "
                                    "email.username if it needs no login"
                                    + (', or set email.tls to "starttls" or "ssl" (many servers offer AUTH only '
                                       "over TLS)" if self.tls == "none" else ", or check email.host and email.port"))
            return self._config(f"the server does not support what is asked ({safe_text(exc, 120)}): check [email]")
        if isinstance(exc, smtplib.SMTPAuthenticationError):
            return self._config(f"login refused: {_reply(exc.smtp_code, exc.smtp_error)} (user "
                                f"{safe_text(self.username, 80)!r}): check email.username and the password "
                                "(POLYLOG_EMAIL_PASSWORD or email.password_file)", exc.smtp_code)
        if stage == "login" and isinstance(exc, smtplib.SMTPException) and not isinstance(
                exc, smtplib.SMTPResponseException | smtplib.SMTPServerDisconnected):
            offered = (client.esmtp_features.get("auth", "") if client is not None else "").strip() or "none"
            return self._config(f"no login method in common with the server (it offers: {safe_text(offered, 80)}): "
                                'check email.tls (some servers offer PLAIN/LOGIN only over TLS)')
        if isinstance(exc, smtplib.SMTPRecipientsRefused):
            codes = [code for code, _ in exc.recipients.values()]
            detail = "; ".join(f"{safe_text(rcpt, 80)}: {_reply(code, msg)}"
                               for rcpt, (code, msg) in exc.recipients.items())
            if any(400 <= c < 500 for c in codes):
                return DeliveryError(f"{where}: every recipient deferred: {detail}", retryable=True, status=max(codes))
            return self._config(f"every recipient refused: {detail}: check email.to", max(codes))
        if isinstance(exc, smtplib.SMTPResponseException):
            code, reply = exc.smtp_code, _reply(exc.smtp_code, exc.smtp_error)
            if 400 <= code < 500:
                return DeliveryError(f"{where}: {reply} (temporary, retried)", retryable=True, status=code)
            if code == 530:
                return self._config(f"the server requires a login ({reply}): set email.username and the password "
                                    "(POLYLOG_EMAIL_PASSWORD or email.password_file)", code)
            if isinstance(exc, smtplib.SMTPSenderRefused):
                return self._config(f"sender {safe_text(self.sender, 80)!r} refused ({reply}): check email.from", code)
            return DeliveryError(f"{where}: refused: {reply}", retryable=False, status=code)
        if isinstance(exc, ssl.SSLCertVerificationError):
            return self._config(f"certificate not trusted ({safe_text(exc.verify_message, 120)}): check email.host "
                                "(the name must match the certificate), or trust the server's CA (SSL_CERT_FILE)")
        if isinstance(exc, ssl.SSLError):
            hint = ('email.tls is "ssl": is the port one of implicit TLS (usually 465)? For port 587 set email.tls '
                    'to "starttls"') if self.tls == "ssl" else "check email.tls and email.port"
            return DeliveryError(f"{where}: TLS handshake failed ({safe_text(exc.reason or exc, 80)}): {hint}; "
                                 "retried", retryable=True)
        if isinstance(exc, ConnectionRefusedError):
            return DeliveryError(f"{where}: connection refused (nothing listens there): retried; if it lasts, check "
                                 "email.host and email.port", retryable=True)
        if isinstance(exc, socket.gaierror):
            return DeliveryError(f"{where}: cannot resolve {safe_text(self.host, 80)!r} "
                                 f"({safe_text(exc.strerror or exc, 80)}): retried; check email.host", retryable=True)
        if isinstance(exc, TimeoutError | socket.timeout):
            hint = (' (a server of implicit TLS on this port? set email.tls to "ssl")'
                    if stage == "connect" and self.tls != "ssl" else "")
            return DeliveryError(f"{where}: no answer within {self.timeout:g}s at {stage}: retried; check email.host "
                                 f"and email.port{hint}", retryable=True)
        if isinstance(exc, smtplib.SMTPServerDisconnected | OSError | smtplib.SMTPException):
            return DeliveryError(f"{where}: {type(exc).__name__} at {stage}: {safe_text(str(exc) or 'failed', 160)} "
                                 "(retried)", retryable=True)
        # anything else is a bug here: retried, and said
        return DeliveryError(f"{where}: {type(exc).__name__}: {safe_text(str(exc), 160)}", retryable=True)

    async def send(self, note: Notification) -> None:
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._pool, self._send_blocking, note)

    async def aclose(self) -> None:
        # A send in progress ends by itself within ``timeout`` (socket timeouts); do not wait for it.
        self._pool.shutdown(wait=False, cancel_futures=True)
