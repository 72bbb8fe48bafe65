"""Synthetic fleet data for the fleet screen's tests and the bench: Prometheus-shaped samples for N
workspaces (as :class:`~polylog_console.core.fleet.prometheus.PrometheusClient.fleet` returns them) and
stub clients for :class:`~polylog_console.core.fleet.model.FleetSource`."""

from __future__ import annotations

import threading
import time
from typing import Any

from polylog_console.core.fleet.http import ApiError
from polylog_console.core.fleet.prometheus import FleetSeries, Sample
from polylog_console.core.fleet.silences import AmAlert, Silence

NOW = 1_796_000_000.0  # a fixed "now" for pictures


def workspace_spec(index: int) -> dict[str, Any]:
    """A deterministic mix: every 7th drifting, every 11th stale, every 13th down, every 17th no data."""
    status = "IN SYNC"
    if index % 7 == 0:
        status = "DRIFT"
    elif index % 11 == 0:
        status = "STALE"
    elif index % 13 == 0:
        status = "DOWN"
    elif index % 17 == 0:
        status = "NO DATA"
    return {"name": f"storage-{index:04d}:/srv/polylog/ws{index}", "host": f"storage-{index:04d}",
            "instance": f"storage-{index:04d}:9464", "status": status,
            "drift_started": NOW - 600 - 60 * index if status == "DRIFT" else 0.0}


def series(specs: list[dict[str, Any]], at: float = NOW) -> FleetSeries:
    out: dict[str, list[Sample]] = {k: [] for k in ("info", "up", "scraped", "status", "match", "drift_started",
                                                     "consecutive", "latest", "replica", "outbox")}
    for spec in specs:
        base = {"instance": spec["instance"], "job": "polylog"}
        out["info"].append(Sample({**base, "workspace": spec["name"], "host": spec["host"], "scheme": "engine",
                                   "version": "1.0"}, 1.0, at))
        out.setdefault("path", []).append(Sample({**base, "path": f"/srv/polylog/{spec['host']}"}, 1.0, at))
        down = spec["status"] == "DOWN"
        out["up"].append(Sample(base, 0.0 if down else 1.0, at))
        out["scraped"].append(Sample(base, at - 4, at))
        if down:
            continue
        if spec["status"] != "NO DATA":
            out["status"].append(Sample({**base, "status": spec["status"]}, 1.0, at))
        drifting = spec["status"] == "DRIFT"
        out["match"].append(Sample(base, 0.0 if drifting else 1.0, at))
        out["drift_started"].append(Sample(base, spec["drift_started"], at))
        out["consecutive"].append(Sample(base, 12.0 if drifting else 0.0, at))
        out["latest"].append(Sample(base, at - (7200 if spec["status"] == "STALE" else 20), at))
        for name, value in (("replica-eu", 1.0), ("replica-us", 0.0 if drifting else 1.0)):
            out["replica"].append(Sample({**base, "replica": name}, value, at))
        out["outbox"].append(Sample(base, 1.0 if drifting else 0.0, at))
    return FleetSeries(out, at, 0.001)


class StubPrometheus:
    display = "http://prometheus.example:9090"

    def __init__(self, specs: list[dict[str, Any]], *, delay: float = 0.0) -> None:
        self.specs = specs
        self.delay = delay
        self.fail: str | None = None
        self.calls = 0
        self.lock = threading.Lock()

    def fleet(self) -> FleetSeries:
        with self.lock:
            self.calls += 1
        if self.delay:
            time.sleep(self.delay)
        if self.fail:
            raise ApiError(self.fail)
        return series(self.specs)

    def close(self) -> None:
        pass


class StubAlertmanager:
    display = "http://alertmanager.example:9093"

    def __init__(self, alerts: list[AmAlert] | None = None, silences: list[Silence] | None = None) -> None:
        self._alerts = alerts or []
        self._silences = silences or []
        self.fail: str | None = None

    def alerts(self) -> list[AmAlert]:
        if self.fail:
            raise ApiError(self.fail)
        return list(self._alerts)

    def silences(self) -> list[Silence]:
        if self.fail:
            raise ApiError(self.fail)
        return list(self._silences)

    def close(self) -> None:
        pass


def drift_alert(spec: dict[str, Any], *, silenced_by: tuple[str, ...] = ()) -> AmAlert:
    return AmAlert({"alertname": "registry_mismatch", "workspace": spec["name"], "host": spec["host"],
                    "severity": "critical", "dedup_key": f"key{spec['host'][-4:]}"},
                   "suppressed" if silenced_by else "active", silenced_by, spec["drift_started"] or NOW - 600, None,
                   "checkpoint checkpoint-0042 digest a19cc34d7e58 differs from stored 5ddf7c994dd1")


def ack_silence(spec: dict[str, Any], silence_id: str = "5d1e-ack") -> Silence:
    return Silence(silence_id, (("workspace", spec["name"], False, True), ("dedup_key", f"key{spec['host'][-4:]}",
                                                                             False, True)),
                   NOW - 300, NOW + 7200, "alice@laptop", "on it", "active")
