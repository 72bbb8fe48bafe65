"""The ``alertmanager`` sink: Prometheus Alertmanager's v2 API, ``POST {url}/api/v2/alerts``.

Each notification becomes ``postableAlerts`` (:func:`~.payload.alertmanager_alerts`): labels
``alertname``, ``code``, ``workspace``, ``severity`` (plus ``dedup_key`` and ``host`` so distinct
drifts and the watchers of a fleet stay distinct), annotations ``summary``, ``description``,
``runbook_url``, ``startsAt`` and ``endsAt``. A firing alert is posted with ``endsAt`` a few
re-send intervals ahead and the dispatcher re-posts it while it lasts, as Alertmanager expects of
its clients; a resolution posts the same labels with ``endsAt`` = now.

Fleet (SPEC §12):

* ``workspace`` is the workspace's fleet name (``[fleet] name``, default ``<hostname>:<path>``), the
  same as in ``polylog_workspace_info``, so one silence matcher covers the alert and the metrics.
* A **cluster**: ``url`` may list every member, and each alert is posted to every member
  concurrently, as Prometheus does for an HA pair (Alertmanager members gossip silences and the
  notification log, not alerts); the cluster's notification log makes a receiver hear it once. A
  delivery counts as done when at least one member accepted it: a member that was down gets the
  alert with the next re-post (firing alerts are re-posted every ``resend_interval``), rather than
  holding every later notification behind a retry loop for a dead member.
* TLS (a CA file) and basic / bearer auth from ``[alertmanager]`` (:mod:`~polylog_console.core.fleet.http`).
* When a drift resolves (``registry_resolved``, or a drift superseded by another), the
  acknowledgements made for it (silences matching its ``workspace`` + ``dedup_key``) are expired
  (:func:`~polylog_console.core.fleet.silences.expire_for_drift`) and the expiry is audited.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx

from polylog_console.core.alerts.delivery import DeliveryError
from polylog_console.core.alerts.payload import Notification, alertmanager_alerts, encode_body
from polylog_console.core.alerts.webhook import HttpSink, check_response, display_url, http_error
from polylog_console.core.model import events as ev
from polylog_console.core.model.config import AlertmanagerConfig, HttpClientConfig

RESEND_INTERVAL = 60.0  # seconds between re-posts of a firing alert
DRIFT_CODES = (ev.REGISTRY_MISMATCH, ev.DRIFT_PERSISTENT)


class AlertmanagerSink(HttpSink):
    name = "alertmanager"

    def __init__(self, url: str | Sequence[str], *, timeout: float = 5.0, resend_interval: float = RESEND_INTERVAL,
                 valid_for: float | None = None, http: HttpClientConfig | None = None,
                 workspace_name: str | None = None, root: Path | None = None) -> None:
        urls = [url] if isinstance(url, str) else list(url)
        self.urls = tuple(u.rstrip("/") for u in urls)
        self.url = self.urls[0]
        self.endpoint = self.url + "/api/v2/alerts"
        self.timeout = timeout
        self.resend_interval = resend_interval
        self.valid_for = valid_for if valid_for is not None else 4 * resend_interval
        self.http = http
        self.workspace_name = workspace_name
        self.root = Path(root) if root is not None else None
        self._client: httpx.AsyncClient | None = None
        self.expired: list[str] = []  # silences expired because their drift resolved (for tests, the screen)

    @classmethod
    def from_config(cls, config: AlertmanagerConfig, **kwargs: Any) -> AlertmanagerSink:
        return cls(config.urls, timeout=config.timeout, http=config.http, **kwargs)

    def __repr__(self) -> str:
        return f"AlertmanagerSink({', '.join(display_url(u) for u in self.urls)})"

    def _http(self) -> httpx.AsyncClient:
        if self._client is None:
            from polylog_console.core.fleet.http import client_options

            options = client_options(self.http, self.timeout)
            options["headers"]["User-Agent"] = "polylog-console-alerts/1"
            self._client = httpx.AsyncClient(**options)
        return self._client

    def body(self, note: Notification, now: float | None = None) -> bytes:
        alerts = alertmanager_alerts(note, time.time() if now is None else now, self.valid_for)
        if self.workspace_name:
            for alert in alerts:
                alert["labels"]["workspace"] = self.workspace_name
        return encode_body(alerts)  # valid UTF-8, controls escaped (core/infra/text.py)

    async def _post_one(self, url: str, body: bytes) -> None:
        what = f"POST {display_url(url)}/api/v2/alerts"
        try:
            response = await self._http().post(url + "/api/v2/alerts", content=body,
                                               headers={"Content-Type": "application/json"})
        except httpx.HTTPError as exc:
            raise http_error(exc, what) from None
        check_response(response, what)

    async def send(self, note: Notification) -> None:
        await self.ready()  # a warm-up in progress builds the client (webhook.HttpSink.warm)
        body = self.body(note)
        if len(self.urls) == 1:
            await self._post_one(self.url, body)
        else:
            results = await asyncio.gather(*(self._post_one(u, body) for u in self.urls), return_exceptions=True)
            errors = [r for r in results if isinstance(r, BaseException)]
            if len(errors) == len(results):
                for error in errors:
                    if not isinstance(error, DeliveryError):
                        raise error
                failed = [e for e in errors if isinstance(e, DeliveryError)]  # all of them, by now
                retryable = any(e.retryable for e in failed)
                raise DeliveryError("; ".join(e.reason for e in failed), retryable=retryable)
        if note.status == "resolved" and (set(DRIFT_CODES) & {note.code, *note.resolves}):
            await self._expire_acknowledgements(note)

    async def _expire_acknowledgements(self, note: Notification) -> None:
        from polylog_console.core.fleet.silences import expire_for_drift

        workspace = self.workspace_name or note.workspace
        try:
            ids = await expire_for_drift(self._http(), self.urls, self.root, workspace, note.dedup_key)
        except Exception:  # an expiry must never fail a delivery: the silence runs out at its endsAt
            return
        if not ids:
            return
        self.expired.extend(ids)
        if self.root is not None:
            from polylog_console.core.infra.audit import AuditLog

            AuditLog(self.root / "memory/audit/events.jsonl").append(
                "acknowledgement_expired", silence_ids=ids, workspace=workspace, dedup_key=note.dedup_key,
                reason=f"the drift resolved ({note.reason or note.code})")
