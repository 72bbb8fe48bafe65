"""The fleet's rows (SPEC §12): Prometheus' figures joined per scrape target, Alertmanager's alerts
and silences joined per workspace name, worst first.

Order: DRIFT, STALE, DOWN, NO DATA, IN SYNC; within a status the oldest drift first, then by
name. ``status`` is DOWN when the target's ``up`` is 0 (or gone), whatever its last status was.
An alert is *acknowledged* when a silence silences it: ``acknowledged_by`` is the silence's
``createdBy``, ``until`` its ``endsAt``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from polylog_console.core.fleet.http import ApiError
from polylog_console.core.fleet.prometheus import FleetSeries, Key, Sample
from polylog_console.core.fleet.silences import AmAlert, Silence
from polylog_console.core.model.events import iso

DRIFT, STALE, DOWN, NO_DATA, IN_SYNC = "DRIFT", "STALE", "DOWN", "NO DATA", "IN SYNC"
ORDER = {DRIFT: 0, STALE: 1, DOWN: 2, NO_DATA: 3, IN_SYNC: 4}


def _finite(value: float | None) -> float | None:
    return None if value is None or math.isnan(value) or math.isinf(value) else value


@dataclass
class AlertState:
    alertname: str
    state: str  # active | suppressed | unprocessed
    silenced_by: list[str]
    acknowledged_by: str | None = None
    until: float | None = None
    dedup_key: str | None = None
    severity: str | None = None
    starts_at: float | None = None
    summary: str = ""
    workspace: str = ""

    @property
    def display(self) -> str:
        """firing / silenced / acknowledged by X until T."""
        if self.acknowledged_by:
            until = time.strftime("%H:%MZ", time.gmtime(self.until)) if self.until else "?"
            return f"ack {self.acknowledged_by} until {until}"
        return "silenced" if self.state == "suppressed" else "firing"

    def to_json(self) -> dict[str, Any]:
        return {"alertname": self.alertname, "state": self.state, "silenced_by": list(self.silenced_by),
                "acknowledged_by": self.acknowledged_by, "until": iso(self.until) if self.until else None,
                "workspace": self.workspace, "dedup_key": self.dedup_key, "severity": self.severity,
                "starts_at": iso(self.starts_at) if self.starts_at else None, "summary": self.summary}


@dataclass
class FleetRow:
    workspace: str
    host: str
    instance: str
    job: str
    up: bool
    status: str
    registry_match: bool | None = None
    drift_started_at: float | None = None
    consecutive_mismatches: int | None = None
    latest_checkpoint_at: float | None = None
    replicas_matching: int = 0
    replicas_total: int = 0
    outbox_pending: int | None = None
    last_scrape: float | None = None
    scheme: str = ""
    version: str = ""
    alerts: list[AlertState] = field(default_factory=list)
    evaluated_at: float = 0.0
    workspace_path: str = ""  # polylog_workspace_path_info
    flapping: bool = False  # polylog_flapping: a flapping incident held open (the latest checkpoint may match)

    @property
    def latest_checkpoint_age(self) -> float | None:
        if self.latest_checkpoint_at is None:
            return None
        return max(0.0, self.evaluated_at - self.latest_checkpoint_at)

    @property
    def path(self) -> str:
        """The workspace directory on its host (``polylog_workspace_path_info``; else from a default
        ``<hostname>:<path>`` name)."""
        if self.workspace_path:
            return self.workspace_path
        prefix = f"{self.host}:"
        return self.workspace[len(prefix):] if self.workspace.startswith(prefix) else ""

    def console_command(self) -> str:
        """The command that opens this workspace's own console."""
        import shlex

        path = self.path
        where = f" --workspace {shlex.quote(path)}" if path else ""
        return f"ssh {shlex.quote(self.host)} polylog-console{where}"

    def alert_summary(self) -> str:
        if not self.alerts:
            return ""
        acked = [a for a in self.alerts if a.acknowledged_by]
        if acked:
            return acked[0].display
        if all(a.state == "suppressed" for a in self.alerts):
            return "silenced"
        return f"firing ({len(self.alerts)})" if len(self.alerts) > 1 else "firing"

    def sort_key(self) -> tuple[Any, ...]:
        # a flapping workspace ranks with the drifting ones, whatever its latest checkpoint says
        rank = ORDER.get(self.status, 5)
        return (min(rank, ORDER[DRIFT]) if self.flapping else rank, self.drift_started_at or math.inf,
                self.workspace, self.instance)

    def to_json(self) -> dict[str, Any]:
        return {"workspace": self.workspace or None, "host": self.host or None, "instance": self.instance,
                "job": self.job,
                "up": self.up, "status": self.status, "registry_match": self.registry_match,
                "drift_started_at": self.drift_started_at, "consecutive_mismatches": self.consecutive_mismatches,
                "flapping": self.flapping,
                "latest_checkpoint_age_s": (round(self.latest_checkpoint_age, 3)
                                            if self.latest_checkpoint_age is not None else None),
                "replicas_matching": self.replicas_matching, "replicas_total": self.replicas_total,
                "outbox_pending": self.outbox_pending,
                "last_scrape": iso(self.last_scrape) if self.last_scrape else None,
                "path": self.path or None, "console": self.console_command() if self.host else None,
                "alerts": [a.to_json() for a in self.alerts]}


def _by_key(samples: Iterable[Sample]) -> dict[Key, Sample]:
    return {s.key: s for s in samples}


def build_rows(series: FleetSeries) -> list[FleetRow]:
    """One row per scrape target that exports ``polylog_workspace_info``, and one (DOWN, workspace
    unknown) per target that is down and never exported it (:func:`_never_up_rows`); worst first."""
    r = series.results
    up = _by_key(r.get("up", []))
    scraped = _by_key(r.get("scraped", []))
    status: dict[Key, str] = {s.key: s.labels.get("status", "") for s in r.get("status", []) if s.value == 1}
    match = _by_key(r.get("match", []))
    drift = _by_key(r.get("drift_started", []))
    consecutive = _by_key(r.get("consecutive", []))
    flapping = {s.key for s in r.get("flapping", []) if s.value == 1}
    latest = _by_key(r.get("latest", []))
    outbox = _by_key(r.get("outbox", []))
    paths = {s.key: s.labels.get("path", "") for s in r.get("path", [])}
    replicas: dict[Key, list[float]] = {}
    for s in r.get("replica", []):
        replicas.setdefault(s.key, []).append(s.value)
    rows = []
    seen: set[Key] = set()
    for info in r.get("info", []):
        key = info.key
        if key in seen:  # two info series for one target (its labels changed within the lookback)
            continue
        seen.add(key)
        target_up = up.get(key)
        is_up = target_up is not None and target_up.value == 1
        row = FleetRow(workspace=info.labels.get("workspace", ""), host=info.labels.get("host", ""),
                       instance=key[0], job=key[1], up=is_up, status=NO_DATA,
                       scheme=info.labels.get("scheme", ""), version=info.labels.get("version", ""),
                       evaluated_at=series.at, workspace_path=paths.get(key, ""))
        stamp = scraped.get(key)
        row.last_scrape = _finite(stamp.value) if stamp is not None else None
        if not is_up:
            row.status = DOWN
        else:
            row.status = status.get(key) or NO_DATA
            m = _finite(match[key].value) if key in match else None
            row.registry_match = None if m is None else m == 1
            started = _finite(drift[key].value) if key in drift else None
            row.drift_started_at = started if started else None
            c = _finite(consecutive[key].value) if key in consecutive else None
            row.consecutive_mismatches = int(c) if c is not None else None
            row.flapping = key in flapping
            row.latest_checkpoint_at = _finite(latest[key].value) if key in latest else None
            values = replicas.get(key, [])
            row.replicas_total = len(values)
            row.replicas_matching = sum(1 for v in values if v == 1)
            o = _finite(outbox[key].value) if key in outbox else None
            row.outbox_pending = int(o) if o is not None else None
        rows.append(row)
    rows += _never_up_rows(r.get("up", []), seen, {key[1] for key in seen}, scraped, series.at)
    rows.sort(key=FleetRow.sort_key)
    return rows


def _never_up_rows(up: Iterable[Sample], seen: set[Key], polylog_jobs: set[str], scraped: Mapping[Key, Sample],
                   at: float) -> list[FleetRow]:
    """DOWN rows for the targets that are down and never exported ``polylog_workspace_info`` within
    the lookback (a watcher that never started, a wrong port): known by ``up`` only, so their
    workspace and host are unknown (""; null in JSON). Only targets of a job that has polylog
    workspaces are listed (``up`` covers every job Prometheus scrapes), unless no job has any yet (a
    fleet that never came up: every down target is listed)."""
    rows = []
    for sample in up:
        key = sample.key
        if key in seen or sample.value == 1 or (polylog_jobs and key[1] not in polylog_jobs):
            continue
        seen.add(key)
        stamp = scraped.get(key)
        rows.append(FleetRow(workspace="", host="", instance=key[0], job=key[1], up=False, status=DOWN,
                             evaluated_at=at, last_scrape=_finite(stamp.value) if stamp is not None else None))
    return rows


def alert_states(alerts: Iterable[AmAlert], silences: Iterable[Silence]) -> list[AlertState]:
    by_id = {s.id: s for s in silences}
    out = []
    for a in alerts:
        if not a.labels.get("alertname", "").startswith(("registry_", "scheme_", "stale_", "drift_")):
            continue  # not a polylog alert
        state = AlertState(a.labels.get("alertname", ""), a.state or "active", list(a.silenced_by),
                           dedup_key=a.labels.get("dedup_key"), severity=a.labels.get("severity"),
                           starts_at=a.starts_at, summary=a.summary, workspace=a.labels.get("workspace", ""))
        for sid in a.silenced_by:
            silence = by_id.get(sid)
            if silence is not None and silence.state == "active":
                state.acknowledged_by = silence.created_by or None
                state.until = silence.ends_at
                break
        out.append(state)
    return out


def attach_alerts(rows: list[FleetRow], alerts: list[AlertState]) -> None:
    """Each alert to the row(s) of its workspace (and host, when the alert names one)."""
    by_name: dict[str, list[FleetRow]] = {}
    for row in rows:
        row.alerts = []
        if row.workspace:  # a target known by ``up`` only has no name an alert could carry
            by_name.setdefault(row.workspace, []).append(row)
    for alert in alerts:
        for row in by_name.get(alert.workspace, []):
            row.alerts.append(alert)


@dataclass
class Endpoint:
    url: str | None
    ok: bool = False
    error: str | None = None
    checked_at: float | None = None  # when it last answered

    def to_json(self) -> dict[str, Any]:
        return {"url": self.url, "ok": self.ok, "error": self.error}


@dataclass
class FleetSnapshot:
    """What the fleet view shows: rows, alerts, and each server's reachability. A failed refresh
    keeps the last good rows (``rows_at`` says from when)."""

    prometheus: Endpoint
    alertmanager: Endpoint
    rows: list[FleetRow] = field(default_factory=list)
    alerts: list[AlertState] = field(default_factory=list)
    silences: list[Silence] = field(default_factory=list)
    rows_at: float | None = None
    alerts_at: float | None = None
    elapsed: float = 0.0
    interval: float | None = None

    @property
    def all_in_sync(self) -> bool:
        return bool(self.rows) and all(r.status == IN_SYNC for r in self.rows)

    def to_json(self) -> dict[str, Any]:
        return {"prometheus": self.prometheus.to_json(), "alertmanager": self.alertmanager.to_json(),
                "instances": [r.to_json() for r in self.rows], "alerts": [a.to_json() for a in self.alerts]}


class FleetSource:
    """Fetches a :class:`FleetSnapshot`; keeps the last good data when a server fails.

    ``prometheus``: a :class:`~.prometheus.PrometheusClient` (None: not configured);
    ``alertmanager``: an :class:`~.silences.AlertmanagerClient` or None."""

    def __init__(self, prometheus: Any, alertmanager: Any = None, *, clock: Callable[[], float] = time.time) -> None:
        self.prometheus = prometheus
        self.alertmanager = alertmanager
        self.clock = clock
        self.last = FleetSnapshot(Endpoint(getattr(prometheus, "display", None)),
                                  Endpoint(getattr(alertmanager, "display", None)))

    def fetch(self) -> FleetSnapshot:
        """A new snapshot (never mutates the one returned before: a screen may be showing it)."""
        started = time.perf_counter()
        last = self.last
        now = self.clock()
        prom = replace(last.prometheus)
        am = replace(last.alertmanager)
        rows, rows_at = last.rows, last.rows_at
        alerts, silences, alerts_at = last.alerts, last.silences, last.alerts_at
        if self.prometheus is not None:
            try:
                rows = build_rows(self.prometheus.fleet())
                rows_at = now
                prom.ok, prom.error, prom.checked_at = True, None, now
            except ApiError as exc:
                prom.ok, prom.error = False, str(exc)
        else:
            prom.ok, prom.error = False, "no Prometheus configured (--prometheus or [fleet] prometheus_url)"
        if self.alertmanager is not None:
            try:
                found = self.alertmanager.alerts()
                every = self.alertmanager.silences()
                silences = [s for s in every if s.state != "expired"]
                alerts = alert_states(found, every)
                alerts_at = now
                am.ok, am.error, am.checked_at = True, None, now
            except ApiError as exc:
                am.ok, am.error = False, str(exc)
        rows = [replace(row) for row in rows]
        attach_alerts(rows, alerts)
        snap = FleetSnapshot(prom, am, rows, alerts, silences, rows_at, alerts_at,
                             time.perf_counter() - started, last.interval)
        self.last = snap
        return snap

    def close(self) -> None:
        for client in (self.prometheus, self.alertmanager):
            if client is not None and hasattr(client, "close"):
                client.close()


def summarize(rows: Iterable[FleetRow]) -> Mapping[str, int]:
    counts: dict[str, int] = {}
    for row in rows:
        counts[row.status] = counts.get(row.status, 0) + 1
    return counts
