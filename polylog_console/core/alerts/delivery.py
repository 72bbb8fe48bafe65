"""Delivery outcomes shared by every sink: the error a send raises, the event it leaves, and the
retry policy (exponential backoff with jitter).

A sink's ``send`` returns when the channel accepted the notification (HTTP 2xx, SMTP accepted)
and otherwise raises :class:`DeliveryError`, saying whether trying again can help:

* retryable: HTTP 5xx, 408, 429, timeouts, refused or dropped connections, SMTP 4xx replies;
* permanent: any other HTTP 4xx (the receiver rejects this request; sending it again gives the
  same answer), redirects (a wrong URL), SMTP 5xx replies, authentication failures.

Every attempt's result becomes a :class:`DeliveryEvent` (``watch --json``, the screen, metrics)
and an audit entry (``alert_delivered`` / ``alert_retry`` / ``alert_failed``).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any, Protocol

from polylog_console.core.alerts.payload import Notification
from polylog_console.core.model.events import iso

DELIVERED = "delivered"
RETRY = "retry"
FAILED = "failed"


CONFIGURATION = "configuration"  # DeliveryError.category: only a change of monitoring.toml helps


class DeliveryError(Exception):
    """A send that did not get the notification accepted. ``str()`` is one line, no secrets.
    ``category`` is ``"configuration"`` when the reason names configuration keys to change."""

    def __init__(self, reason: str, *, retryable: bool, retry_after: float | None = None,
                 status: int | None = None, category: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retryable = retryable
        self.retry_after = retry_after
        self.status = status
        self.category = category


class Sink(Protocol):
    """A channel that notifications are delivered to (webhook, email, Alertmanager)."""

    name: str

    async def send(self, note: Notification) -> None:
        """Deliver ``note``; return on acceptance, raise :class:`DeliveryError` otherwise."""

    async def aclose(self) -> None:
        """Release connections and threads."""


@dataclass(frozen=True)
class Backoff:
    """Exponential backoff with full jitter: attempt n waits a random time in
    ``[base * factor**(n-1) / 2, base * factor**(n-1)]``, capped at ``cap``.

    Defaults suit real sinks (1 s doubling to 5 min); tests pass a small ``base``.
    """

    base: float = 1.0
    factor: float = 2.0
    cap: float = 300.0

    def delay(self, attempt: int, retry_after: float | None = None, rng: random.Random | None = None) -> float:
        ceiling = min(self.cap, self.base * self.factor ** max(0, attempt - 1))
        delay = (rng or random).uniform(ceiling / 2, ceiling)
        if retry_after is not None:
            delay = max(delay, min(retry_after, self.cap))  # honour the receiver's Retry-After
        return delay


def parse_retry_after(value: str | None, now: float) -> float | None:
    """Seconds from a ``Retry-After`` header (delta seconds or an HTTP date), or None."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - now)
    except (TypeError, ValueError, IndexError):
        return None


def http_retryable(status: int) -> bool:
    """Retry 5xx, 408 (request timeout), 425 (too early) and 429 (too many requests)."""
    return status >= 500 or status in (408, 425, 429)


@dataclass(frozen=True)
class DeliveryEvent:
    """The result of one delivery attempt of one notification to one sink."""

    sink: str
    outcome: str  # queued | delivered | retry | failed
    notification_id: str
    code: str
    alert_status: str
    dedup_key: str
    attempt: int = 0
    error: str | None = None
    retry_in: float | None = None
    latency_ms: float | None = None
    at: float | None = None
    problem: str | None = None  # "configuration" when the error names keys to change

    event = "delivery"

    @property
    def audit_name(self) -> str | None:
        return {DELIVERED: "alert_delivered", RETRY: "alert_retry", FAILED: "alert_failed"}.get(self.outcome)

    def details(self) -> dict[str, Any]:
        out: dict[str, Any] = {"sink": self.sink, "outcome": self.outcome, "notification_id": self.notification_id,
                               "code": self.code, "status": self.alert_status, "dedup_key": self.dedup_key,
                               "attempt": self.attempt}
        if self.error:
            out["error"] = self.error
        if self.problem:
            out["problem"] = self.problem
        if self.retry_in is not None:
            out["retry_in"] = round(self.retry_in, 3)
        if self.latency_ms is not None:
            out["latency_ms"] = round(self.latency_ms, 3)
        return out

    def to_json(self) -> dict[str, Any]:
        out = {"event": "delivery", **self.details()}
        if self.at is not None:
            out["at"] = iso(self.at)
        return out


# States of the outbox a dispatcher reports (OutboxStateEvent.state)
UNWRITABLE = "unwritable"  # the outbox cannot be written: deliveries are sent from memory
WRITABLE = "writable"  # it can be written again: what was pending in memory is saved
STANDBY = "standby"  # another live process holds the outbox lock and delivers
ACTIVE = "active"  # this process delivers (after a standby)


@dataclass(frozen=True)
class OutboxStateEvent:
    """A change of what the dispatcher can do with its outbox, said once per change (``watch``
    prints :attr:`message` on stderr; the metrics' ``polylog_outbox_writable`` follows it)."""

    state: str
    path: str  # the outbox directory, as shown to the operator
    error: str | None = None
    holder_pid: str | None = None
    saved: int = 0  # deliveries written to the outbox when it became writable again
    unsaved: int = 0  # deliveries only in memory
    at: float | None = None

    event = "outbox"

    @property
    def writable(self) -> bool:
        return self.state != UNWRITABLE

    @property
    def level(self) -> str:
        return "error" if self.state == UNWRITABLE else "warning" if self.state == STANDBY else "info"

    @property
    def message(self) -> str:
        if self.state == UNWRITABLE:
            return (f"alert outbox {self.path} cannot be written ({self.error}): alerts are delivered from memory "
                    "and saved to the outbox as soon as the disk allows")
        if self.state == WRITABLE:
            return f"alert outbox {self.path} can be written again: {self.saved} pending deliveries saved"
        if self.state == STANDBY:
            who = f"pid {self.holder_pid}" if self.holder_pid else "pid unknown"
            return (f"alert outbox {self.path} is held by another running process ({who}): it delivers this "
                    "workspace's alerts; this process takes over when it stops")
        return f"alert outbox {self.path}: this process now delivers the workspace's alerts"

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"event": "outbox", "state": self.state, "path": self.path, "writable": self.writable,
                               "message": self.message}
        if self.error:
            out["error"] = self.error
        if self.holder_pid:
            out["holder_pid"] = self.holder_pid
        if self.saved:
            out["saved"] = self.saved
        if self.unsaved:
            out["unsaved"] = self.unsaved
        if self.at is not None:
            out["at"] = iso(self.at)
        return out
