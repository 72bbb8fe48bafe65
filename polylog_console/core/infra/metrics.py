"""Prometheus metrics for the headless monitor (``watch --metrics ADDR:PORT``).

Each :class:`Metrics` has its own ``CollectorRegistry`` (not the process-global one), so several
can live in one process (tests, a console and a watcher). It is fed from the session's event
stream (:meth:`Metrics.apply`, on the event loop) and served by prometheus-client's HTTP server
in its own thread (:meth:`Metrics.serve`). The monitor's state (match, status, consecutive
mismatches, counters) is read from the latest :class:`~polylog_console.core.monitor.rules.MonitorView`
at scrape time, so a feed read in bulk (no per-checkpoint events) still counts every checkpoint.

Exposed (all prefixed ``polylog_``):

* ``workspace_info{workspace,host,scheme,version}`` 1 (SPEC §12: the fleet's join key; ``workspace`` is
  ``[fleet] name``), ``workspace_path_info{path}`` 1, ``drift_started_timestamp_seconds`` (the open
  incident's ``started_at``, 0 when in sync);
* ``registry_match`` (1 match, 0 drift, NaN unknown), ``status{status}`` (1 for the current status, 0 for the others),
  ``consecutive_mismatches``,
  ``checkpoints_total``, ``ingest_errors_total``, ``feed_entries_total``, ``checkpoint_warnings_total``,
  ``latest_checkpoint_timestamp_seconds``, ``stored_registry_readable``;
* ``detection_latency_seconds`` (histogram): from a checkpoint line's arrival to its comparison;
* ``alerts_raised_total{code,status}``, ``alerts_sent_total{sink}``, ``alerts_failed_total{sink}``,
  ``alert_retries_total{sink}``, ``outbox_pending{sink}``, ``outbox_writable`` (1, or 0 while the
  outbox cannot be written and deliveries wait in memory), ``audit_writable`` (1, or 0 while audit
  records wait in memory);
* ``replica_match{replica}`` (1/0/NaN), ``replica_latency_seconds{replica}``, ``replicas_checked_timestamp_seconds``;
* ``refresh_total{outcome}``.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from polylog_console.core.alerts.delivery import DELIVERED, FAILED, RETRY, DeliveryEvent
from polylog_console.core.model.errors import ConfigError
from polylog_console.core.model.events import ActionEvent, AlertEvent, CheckpointEvent, Status
from polylog_console.core.monitor.rules import MonitorView

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
STATUSES = tuple(str(s) for s in Status)


def parse_address(value: str) -> tuple[str, int]:
    """``ADDR:PORT`` (``127.0.0.1:9464``, ``[::1]:9464``, ``:9464`` for every address)."""
    text = value.strip()
    host, sep, port_text = text.rpartition(":")
    if not sep or not port_text.isdigit():
        raise ConfigError(f"--metrics {value!r}: expected ADDR:PORT, e.g. 127.0.0.1:9464")
    port = int(port_text)
    if not 0 <= port <= 65535:
        raise ConfigError(f"--metrics {value!r}: port must be 0..65535")
    host = host.strip("[]") or "0.0.0.0"
    return host, port


class _MonitorCollector(Collector):
    """The monitor's state, read at scrape time from the last published view."""

    def __init__(self, owner: Metrics) -> None:
        self.owner = owner

    def collect(self) -> Iterable[Any]:
        view = self.owner.view
        match = GaugeMetricFamily("polylog_registry_match",
                                  "1 when the latest checkpoint matches the stored registry, 0 on drift, NaN unknown")
        status = GaugeMetricFamily("polylog_status", "Monitor status: 1 for the current one (IN SYNC, DRIFT, STALE, "
                                   "NO DATA), 0 for the others", labels=["status"])
        drift = GaugeMetricFamily("polylog_drift_started_timestamp_seconds",
                                  "When the open drift incident started (its first mismatching checkpoint's "
                                  "timestamp), 0 when in sync")
        consecutive = GaugeMetricFamily("polylog_consecutive_mismatches", "Consecutive mismatching checkpoints")
        checkpoints = CounterMetricFamily("polylog_checkpoints", "Checkpoints compared")
        errors = CounterMetricFamily("polylog_ingest_errors", "Feed lines that could not be read as records")
        entries = CounterMetricFamily("polylog_feed_entries", "Feed lines that are other coordination entries")
        warnings = CounterMetricFamily("polylog_checkpoint_warnings", "Ill-typed fields in checkpoints")
        latest = GaugeMetricFamily("polylog_latest_checkpoint_timestamp_seconds",
                                   "Timestamp of the latest checkpoint (seconds since the epoch)")
        readable = GaugeMetricFamily("polylog_stored_registry_readable", "1 when the stored registry can be read")
        flapping = GaugeMetricFamily("polylog_flapping", "1 while the open incident is flapping (held open until "
                                     "flap_settle consecutive checkpoints agree), else 0")
        flap_drifts = GaugeMetricFamily("polylog_incident_flap_drifts",
                                        "Drifts counted in the open incident while it flaps (0 otherwise)")
        if view is not None:
            match.add_metric([], math.nan if view.latest_match is None else float(view.latest_match))
            current = str(view.status)
            for name in STATUSES:
                status.add_metric([name], 1.0 if name == current else 0.0)
            drift.add_metric([], drift_started(view))
            consecutive.add_metric([], view.consecutive_mismatches)
            checkpoints.add_metric([], view.checkpoints)
            errors.add_metric([], view.ingest_errors)
            entries.add_metric([], view.entries)
            warnings.add_metric([], view.warnings)
            ts = view.latest.timestamp if view.latest is not None else None
            latest.add_metric([], math.nan if ts is None else ts)
            readable.add_metric([], 0.0 if view.stored_error else 1.0)
            incident = view.incident
            flapping.add_metric([], 1.0 if incident is not None and incident.flapping else 0.0)
            flap_drifts.add_metric([], float(incident.flap_drifts) if incident is not None and incident.flapping
                                   else 0.0)
        yield from (match, status, drift, consecutive, checkpoints, errors, entries, warnings, latest, readable,
                    flapping, flap_drifts)
        info = self.owner.workspace_info
        if info:
            family = GaugeMetricFamily("polylog_workspace_info", "This workspace in fleet views (value 1)",
                                       labels=list(INFO_LABELS))
            family.add_metric([str(info.get(k, "")) for k in INFO_LABELS], 1.0)
            yield family
            if info.get("path"):  # where the workspace lives on its host: the fleet's ssh command
                where = GaugeMetricFamily("polylog_workspace_path_info", "The workspace directory on its host "
                                          "(value 1)", labels=["path"])
                where.add_metric([str(info["path"])], 1.0)
                yield where


INFO_LABELS = ("workspace", "host", "scheme", "version")


def drift_started(view: MonitorView) -> float:
    """The open incident's ``started_at`` (epoch seconds), 0 when there is none."""
    incident = getattr(view, "incident", None)
    if incident is not None:
        return float(incident.started_at) if getattr(incident, "open", True) else 0.0
    since = view.drift_since  # before the incident model is in the view: when the drift was read
    return float(since) if since is not None else 0.0


class _OutboxCollector(Collector):
    def __init__(self, owner: Metrics) -> None:
        self.owner = owner

    def collect(self) -> Iterable[Any]:
        family = GaugeMetricFamily("polylog_outbox_pending", "Alert deliveries waiting in the outbox",
                                   labels=["sink"])
        source = self.owner.outbox_source
        if source is not None:
            try:
                counts = dict(source())
            except Exception:  # a scrape must not fail because the outbox is being rewritten
                counts = {}
            for sink, count in sorted(counts.items()):
                family.add_metric([sink], count)
        yield family
        health = self.owner.outbox_health
        if health is not None:
            try:
                outbox_ok, audit_ok = health()
            except Exception:
                return
            writable = GaugeMetricFamily("polylog_outbox_writable", "1 when the alert outbox can be written, 0 while "
                                         "deliveries are held in memory (full or read-only disk)")
            writable.add_metric([], 1.0 if outbox_ok else 0.0)
            audit = GaugeMetricFamily("polylog_audit_writable", "1 when the audit log can be written, 0 while "
                                      "records are held in memory")
            audit.add_metric([], 1.0 if audit_ok else 0.0)
            yield writable
            yield audit


class Metrics:
    def __init__(self, workspace_info: Mapping[str, str] | None = None) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.view: MonitorView | None = None
        self.workspace_info = dict(workspace_info or {})
        self.outbox_source: Callable[[], Mapping[str, int]] | None = None
        self.outbox_health: Callable[[], tuple[bool, bool]] | None = None  # (outbox writable, audit writable)
        r = self.registry
        self.registry.register(_MonitorCollector(self))
        self.registry.register(_OutboxCollector(self))
        self.latency = Histogram("polylog_detection_latency_seconds",
                                 "From a checkpoint line's arrival to its comparison with the stored registry",
                                 buckets=LATENCY_BUCKETS, registry=r)
        self.alerts = Counter("polylog_alerts_raised", "Alert events raised by the monitor", ["code", "status"],
                              registry=r)
        self.sent = Counter("polylog_alerts_sent", "Alert notifications accepted by a sink", ["sink"], registry=r)
        self.failed = Counter("polylog_alerts_failed", "Alert notifications refused for good by a sink", ["sink"],
                              registry=r)
        self.retries = Counter("polylog_alert_retries", "Failed delivery attempts that will be retried", ["sink"],
                               registry=r)
        self.replica_match = Gauge("polylog_replica_match", "1 when the replica matches the stored registry, "
                                   "0 when it differs, NaN when unknown", ["replica"], registry=r)
        self.replica_latency = Gauge("polylog_replica_latency_seconds", "Latency of the last parity check",
                                     ["replica"], registry=r)
        self.replicas_checked = Gauge("polylog_replicas_checked_timestamp_seconds",
                                      "When replica parity was last checked", registry=r)
        self.refresh = Counter("polylog_refresh", "Automatic refresh attempts by outcome", ["outcome"], registry=r)
        self._server: Any = None
        self._thread: threading.Thread | None = None
        self.address: tuple[str, int] | None = None

    # -- input -------------------------------------------------------------------------------

    def apply(self, events: Iterable[Any], view: MonitorView | None = None) -> None:
        """Account a batch of session events; ``view`` is the monitor's state after them."""
        if view is not None:
            self.view = view
        observe = self.latency.observe
        for event in events:
            cls = event.__class__
            if cls is CheckpointEvent:
                if event.latency_ms is not None:
                    observe(event.latency_ms / 1000.0)
            elif cls is AlertEvent:
                self.alerts.labels(event.alert.code, event.alert.status).inc()
            elif cls is DeliveryEvent:
                if event.outcome == DELIVERED:
                    self.sent.labels(event.sink).inc()
                elif event.outcome == FAILED:
                    self.failed.labels(event.sink).inc()
                elif event.outcome == RETRY:
                    self.retries.labels(event.sink).inc()
            elif cls is ActionEvent and event.action == "replicas" and event.phase == "finished" and event.result:
                self.observe_parity(event.result)
            elif getattr(event, "event", None) == "refresh":
                self.refresh.labels(event.outcome).inc()

    def observe_parity(self, report: Any, now: float | None = None) -> None:
        """Replica parity from a ``ParityReport`` (or its JSON form)."""
        import time

        replicas = report.get("replicas", []) if isinstance(report, Mapping) else getattr(report, "replicas", [])
        for item in replicas:
            get = item.get if isinstance(item, Mapping) else (lambda k, _i=item: getattr(_i, k, None))
            name = get("name")
            if not isinstance(name, str):
                continue
            match = get("match")
            self.replica_match.labels(name).set(math.nan if match is None else float(bool(match)))
            latency = get("latency_ms")
            self.replica_latency.labels(name).set(math.nan if latency is None else latency / 1000.0)
        self.replicas_checked.set(time.time() if now is None else now)

    # -- output ------------------------------------------------------------------------------

    def render(self) -> bytes:
        """The exposition text (what a scrape returns)."""
        from prometheus_client import generate_latest

        return generate_latest(self.registry)

    def serve(self, host: str, port: int) -> tuple[str, int]:
        """Serve ``/metrics`` on ``host:port`` (port 0: any free port) in a background thread.
        Returns the bound address. Raises ``OSError`` when the address cannot be bound."""
        server, thread = start_http_server(port, addr=host, registry=self.registry)
        self._server, self._thread = server, thread
        bound = server.server_address
        self.address = (str(bound[0]), int(bound[1]))
        return self.address

    def close(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
