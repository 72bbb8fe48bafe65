"""A PromQL client over httpx (``GET /api/v1/query``), and the fleet's figures.

The fleet view asks Prometheus one instant query per figure for the whole fleet (SPEC §12), never
one per workspace: :data:`FLEET_QUERIES` are run concurrently and joined here on the labels
Prometheus adds to every scraped series (``instance``, ``job``), which also tells the watchers of
one fleet apart when two share a workspace name.

``polylog_workspace_info`` is read with ``last_over_time(...[lookback])``: a target that went down
no longer has a fresh sample (Prometheus marks its series stale), yet its row must stay, as DOWN,
with its name; ``up`` (which Prometheus writes for every scrape attempt) says it is down.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import httpx

from polylog_console.core.fleet.http import ApiError, client_options, display_url, read_json, transport_error
from polylog_console.core.model.config import HttpClientConfig, parse_duration
from polylog_console.core.model.errors import ConfigError

DEFAULT_LOOKBACK = "1h"
DEFAULT_INTERVAL = 15.0  # seconds, when Prometheus does not say its scrape interval


def fleet_queries(lookback: str = DEFAULT_LOOKBACK) -> dict[str, str]:
    """figure -> PromQL (each answers for every workspace at once)."""
    return {
        "info": f"last_over_time(polylog_workspace_info[{lookback}])",
        "path": f"last_over_time(polylog_workspace_path_info[{lookback}])",
        "up": "up",
        "scraped": "timestamp(up)",
        "status": "polylog_status == 1",
        "match": "polylog_registry_match",
        "drift_started": "polylog_drift_started_timestamp_seconds",
        "consecutive": "polylog_consecutive_mismatches",
        "flapping": "polylog_flapping == 1",
        "latest": "polylog_latest_checkpoint_timestamp_seconds",
        "replica": "polylog_replica_match",
        "outbox": "sum by (instance, job) (polylog_outbox_pending)",
    }


FLEET_QUERIES = fleet_queries()

Key = tuple[str, str]  # (instance, job)


@dataclass(frozen=True, slots=True)
class Sample:
    labels: Mapping[str, str]
    value: float
    at: float  # evaluation time

    @property
    def key(self) -> Key:
        return (self.labels.get("instance", ""), self.labels.get("job", ""))


@dataclass
class FleetSeries:
    """The answers of :data:`FLEET_QUERIES` (figure -> samples), and when they were asked."""

    results: dict[str, list[Sample]] = field(default_factory=dict)
    at: float = 0.0
    elapsed: float = 0.0


def _value(text: Any) -> float:
    try:
        return float(text)
    except (TypeError, ValueError):
        return math.nan


class PrometheusClient:
    """``url``: Prometheus' base URL (``http://prom:9090``, a path prefix allowed)."""

    def __init__(self, url: str, *, http: HttpClientConfig | None = None, timeout: float = 5.0,
                 workers: int = 4, lookback: str = DEFAULT_LOOKBACK) -> None:
        if not re.fullmatch(r"\d+(ms|s|m|h|d|w|y)", lookback):
            raise ConfigError(f"lookback {lookback!r}: expected a PromQL duration such as 1h or 30m")
        self.queries = fleet_queries(lookback)
        self.url = url.rstrip("/")
        self.display = display_url(self.url)
        self.client = httpx.Client(**client_options(http, timeout))
        self.pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="polylog-promql")

    def close(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)
        self.client.close()

    def __enter__(self) -> PrometheusClient:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def _get(self, path: str, params: dict[str, str] | None = None) -> Any:
        what = f"Prometheus {self.display}"
        try:
            response = self.client.get(self.url + path, params=params)
        except httpx.HTTPError as exc:
            raise transport_error(exc, what) from None
        if response.status_code in (400, 422, 503) and response.headers.get("content-type", "").startswith(
                "application/json"):
            try:
                body = response.json()
            except ValueError:
                body = {}
            if isinstance(body, dict) and body.get("status") == "error":
                raise ApiError(f"{what}: {body.get('errorType', 'error')}: {str(body.get('error', ''))[:200]}")
        data = read_json(response, what)
        if not isinstance(data, dict) or data.get("status") != "success":
            raise ApiError(f"{what}: unexpected answer to {path}")
        return data.get("data")

    def query(self, expr: str, at: float | None = None) -> list[Sample]:
        """An instant query; only vector (and scalar) results are expected."""
        params = {"query": expr}
        if at is not None:
            params["time"] = f"{at:.3f}"
        data = self._get("/api/v1/query", params)
        kind = data.get("resultType") if isinstance(data, dict) else None
        if kind == "scalar":
            ts, value = data["result"]
            return [Sample({}, _value(value), float(ts))]
        if kind != "vector":
            raise ApiError(f"Prometheus {self.display}: {expr!r} gave a {kind}, not a vector")
        out: list[Sample] = []
        append = out.append
        for item in data.get("result") or []:
            ts, value = item.get("value") or (0, "NaN")
            append(Sample(item.get("metric") or {}, _value(value), float(ts)))  # JSON: str -> str already
        return out

    def fleet(self, queries: Mapping[str, str] | None = None) -> FleetSeries:
        """Every figure at one evaluation time, the queries run concurrently."""
        queries = self.queries if queries is None else queries
        started = time.perf_counter()
        at = time.time()
        futures = {name: self.pool.submit(self.query, expr, at) for name, expr in queries.items()}
        results = {name: future.result() for name, future in futures.items()}
        return FleetSeries(results, at, time.perf_counter() - started)

    def scrape_interval(self) -> float | None:
        """The shortest scrape interval of the active targets that export polylog metrics (else
        of all active targets); None when Prometheus does not say."""
        try:
            data = self._get("/api/v1/targets", {"state": "active"})
        except ApiError:
            return None
        intervals = []
        for target in (data or {}).get("activeTargets") or []:
            text = target.get("scrapeInterval")
            if isinstance(text, str):
                try:
                    intervals.append(parse_duration(text))
                except ValueError:
                    continue
        return min(intervals) if intervals else None

    def ready(self) -> bool:
        try:
            return self.client.get(self.url + "/-/ready").status_code == 200
        except httpx.HTTPError:
            return False
