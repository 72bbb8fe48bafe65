"""The ``alertmanager`` sink: Prometheus Alertmanager's v2 API, ``POST {url}/api/v2/alerts``.

Each notification becomes ``postableAlerts`` (:func:`~.payload.alertmanager_alerts`): labels
``alertname``, ``code``, ``workspace``, ``severity`` (plus ``dedup_key`` and ``host`` so distinct
drifts and the watchers of a fleet stay distinct), annotations ``summary``, ``description``,
``runbook_url``, ``startsAt`` and ``endsAt``. A firing alert is posted with ``endsAt`` a few
re-send intervals ahead and the dispatcher re-posts it while it lasts, as Alertmanager expects of
its clients; a resolution posts the same labels with ``endsAt`` = now.
"""

from __future__ import annotations

import time

import httpx
import orjson

from polylog_console.core.alerts.payload import Notification, alertmanager_alerts
from polylog_console.core.alerts.webhook import HttpSink, display_url
from polylog_console.core.model.config import AlertmanagerConfig

RESEND_INTERVAL = 60.0  # seconds between re-posts of a firing alert


class AlertmanagerSink(HttpSink):
    name = "alertmanager"

    def __init__(self, url: str, *, timeout: float = 5.0, resend_interval: float = RESEND_INTERVAL,
                 valid_for: float | None = None) -> None:
        self.url = url.rstrip("/")
        self.endpoint = self.url + "/api/v2/alerts"
        self.timeout = timeout
        self.resend_interval = resend_interval
        self.valid_for = valid_for if valid_for is not None else 4 * resend_interval
        self._client: httpx.AsyncClient | None = None

    @classmethod
    def from_config(cls, config: AlertmanagerConfig, **kwargs: float) -> AlertmanagerSink:
        return cls(config.url, timeout=config.timeout, **kwargs)

    def __repr__(self) -> str:
        return f"AlertmanagerSink({display_url(self.url)})"

    def body(self, note: Notification, now: float | None = None) -> bytes:
        return orjson.dumps(alertmanager_alerts(note, time.time() if now is None else now, self.valid_for))

    async def send(self, note: Notification) -> None:
        await self._post(self.endpoint, self.body(note), {"Content-Type": "application/json"})
