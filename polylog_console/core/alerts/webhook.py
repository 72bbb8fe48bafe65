"""The ``webhook`` sink (SPEC §7): a JSON POST of :func:`~.payload.webhook_body`, signed when a
secret is configured.

The body is rendered at send time (``sent_at`` is the attempt's time) and signed over its exact
bytes: ``X-Polylog-Signature: sha256=<hex HMAC-SHA256>``. The secret stays in this object (a
:class:`~polylog_console.core.model.config.Secret`), never in the outbox, events or audit entries.
``X-Polylog-Delivery`` carries the notification id, the same on every retry, so a receiver can
drop the duplicates that at-least-once delivery may cause.

Warm-up (issue 10: the first alert after a start is the one that matters): :meth:`HttpSink.prewarm`,
called when the dispatcher is made (long before the feed's history is read), builds the HTTP client
(its TLS context: the costly part, 100-200 ms on a busy host) and imports what httpx loads on its
first request (anyio's asyncio backend) in a thread of its own, so no event loop waits for it;
:meth:`HttpSink.warm` (at the dispatcher's start) also resolves the receiver's host. A send that
comes while the warm-up runs waits for it rather than building a second client.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import threading
import time
from typing import Any
from urllib.parse import urlsplit

import httpx

from polylog_console.core.alerts.delivery import DeliveryError, http_retryable, parse_retry_after
from polylog_console.core.alerts.payload import (
    DELIVERY_HEADER,
    SIGNATURE_HEADER,
    Notification,
    encode_body,
    signature,
    webhook_body,
)
from polylog_console.core.infra.text import safe_text
from polylog_console.core.infra.urls import url_location
from polylog_console.core.model.config import Secret, WebhookConfig

USER_AGENT = "polylog-console-alerts/1"


class HttpSink:
    """What the HTTP sinks share: one client (no redirects, no proxy settings from the
    environment), a POST whose failures become :class:`DeliveryError`, and closing."""

    timeout: float
    _client: httpx.AsyncClient | None = None
    _warming: concurrent.futures.Future[None] | None = None
    _client_lock = threading.Lock()  # one client, whether the warm-up thread or a send makes it

    def _http(self) -> httpx.AsyncClient:
        if self._client is None:
            # an http:// receiver never needs TLS (redirects are not followed): no CA bundle to load
            plain = urlsplit(getattr(self, "url", "")).scheme == "http"
            tls: dict[str, Any] = {"verify": False} if plain else {}
            self._client = httpx.AsyncClient(timeout=httpx.Timeout(self.timeout), follow_redirects=False,
                                             headers={"User-Agent": USER_AGENT}, trust_env=False, **tls)
        return self._client

    def _warm_blocking(self) -> None:
        """In a worker thread: what the first request would otherwise do on the event loop."""
        with contextlib.suppress(ImportError):  # httpx's default transport runs on anyio
            import anyio._backends._asyncio
            import anyio.streams.tls  # noqa: F401
        with self._client_lock:
            self._http()

    def prewarm(self) -> None:
        """Start building the client and loading httpx's lazy modules in a thread (once)."""
        if self._warming is not None:
            return
        future: concurrent.futures.Future[None] = concurrent.futures.Future()

        def run() -> None:
            try:
                self._warm_blocking()
            except BaseException as exc:  # the first send builds it then, and says what fails
                future.set_exception(exc)
            else:
                future.set_result(None)

        self._warming = future
        threading.Thread(target=run, name="polylog-warm-http", daemon=True).start()

    async def warm(self) -> None:
        """:meth:`prewarm`, then resolve the receiver's host (see the module)."""
        loop = asyncio.get_running_loop()
        self.prewarm()
        await self.ready()
        for url in getattr(self, "urls", None) or [getattr(self, "url", "")]:
            with contextlib.suppress(OSError, ValueError):
                parts = urlsplit(url)
                if parts.hostname:
                    await loop.getaddrinfo(parts.hostname, parts.port or (443 if parts.scheme == "https" else 80))

    async def ready(self) -> None:
        """Wait for a warm-up in progress (a send never builds a second client beside it)."""
        if self._warming is not None and not self._warming.done():
            with contextlib.suppress(Exception):
                await asyncio.wrap_future(self._warming)

    async def _post(self, url: str, body: bytes, headers: dict[str, str]) -> None:
        what = f"POST {display_url(url)}"
        await self.ready()
        try:
            response = await self._http().post(url, content=body, headers=headers)
        except httpx.HTTPError as exc:
            raise http_error(exc, what) from None
        check_response(response, what)

    async def aclose(self) -> None:
        await self.ready()
        if self._client is not None:
            client, self._client = self._client, None
            await client.aclose()


def display_url(url: str) -> str:
    """``url`` without user info, query or fragment (they may hold tokens): for messages."""
    location = url_location(url)
    if location is None:
        return "<invalid url>"
    parts, host, port = location
    return f"{parts.scheme}://{host}{port}{parts.path}"


def http_error(exc: httpx.HTTPError, what: str) -> DeliveryError:
    """A transport failure (timeout, refused, reset): always worth retrying."""
    if isinstance(exc, httpx.TimeoutException):
        reason = f"{what}: timed out ({type(exc).__name__})"
    else:
        reason = f"{what}: {type(exc).__name__}: {safe_text(str(exc) or 'connection failed', 160)}"
    return DeliveryError(reason, retryable=True)


def check_response(response: httpx.Response, what: str) -> None:
    """Return on 2xx; raise :class:`DeliveryError` (retryable or not) otherwise."""
    status = response.status_code
    if 200 <= status < 300:
        return
    text = safe_text(response.text.strip().replace("\n", " "), 120) if response.content else ""
    reason = f"{what}: HTTP {status} {response.reason_phrase}" + (f": {text}" if text else "")
    if 300 <= status < 400:
        reason += " (redirects are not followed: configure the final URL)"
    retryable = http_retryable(status)
    retry_after = parse_retry_after(response.headers.get("retry-after"), time.time()) if retryable else None
    raise DeliveryError(reason, retryable=retryable, retry_after=retry_after, status=status)


class WebhookSink(HttpSink):
    name = "webhook"

    def __init__(self, url: str, *, secret: Secret | None = None, timeout: float = 5.0) -> None:
        self.url = url
        self.secret = secret
        self.timeout = timeout
        self._client: httpx.AsyncClient | None = None

    @classmethod
    def from_config(cls, config: WebhookConfig) -> WebhookSink:
        return cls(config.url, secret=config.secret, timeout=config.timeout)

    def __repr__(self) -> str:
        return f"WebhookSink({display_url(self.url)}, signed={self.secret is not None})"

    def request(self, note: Notification, now: float | None = None) -> tuple[bytes, dict[str, str]]:
        """The exact body bytes and headers an attempt sends."""
        body = encode_body(webhook_body(note, time.time() if now is None else now))
        headers = {"Content-Type": "application/json", DELIVERY_HEADER: note.id}
        if self.secret is not None:
            headers[SIGNATURE_HEADER] = signature(body, self.secret.reveal())
        return body, headers

    async def send(self, note: Notification) -> None:
        body, headers = self.request(note)
        await self._post(self.url, body, headers)
