"""``polylog-console fleet``: every workspace's drift, from Prometheus and Alertmanager (SPEC §12).

``--json`` prints one document and exits 0 when every workspace is in sync, 1 otherwise, 2 when
Prometheus cannot be queried. Without it, the fleet console (a Textual screen) opens. The
workspace is only needed for its ``monitoring.toml`` (``[fleet]``): the monitoring server needs
no polylog workspace at all (``--config FILE`` names the file).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from polylog_console.cli.common import EXIT_ERROR, EXIT_OK, EXIT_PROBLEM, fail, print_json
from polylog_console.core.model.config import Config, load_config
from polylog_console.core.model.errors import ConfigError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--prometheus", metavar="URL", help="Prometheus base URL (default: [fleet] prometheus_url)")
    parser.add_argument("--alertmanager", metavar="URL", action="append",
                        help="Alertmanager URL; repeat for every cluster member (default: [fleet] alertmanager_url)")
    parser.add_argument("--lookback", metavar="DURATION", default="1h",
                        help="how long a workspace whose target is down stays listed (PromQL duration, default 1h)")


def load(args: argparse.Namespace) -> Config:
    import os

    raw = args.workspace or os.environ.get("POLYLOG_WORKSPACE") or "."
    root = Path(raw).expanduser().resolve()
    if not root.is_dir():
        raise ConfigError(f"workspace {raw}: no such directory")
    return load_config(root, Path(args.config) if args.config else None)


def make_source(config: Config, prometheus: str | None, alertmanager: list[str] | None, lookback: str = "1h"):
    from polylog_console.core.fleet.model import FleetSource
    from polylog_console.core.fleet.prometheus import PrometheusClient
    from polylog_console.core.fleet.silences import AlertmanagerClient, alertmanager_http, alertmanager_urls

    prom_url = prometheus or config.fleet.prometheus_url
    prom = None
    if prom_url:
        prom = PrometheusClient(prom_url, http=config.fleet.http, timeout=config.fleet.timeout, lookback=lookback)
    urls = alertmanager_urls(config, alertmanager)
    am = AlertmanagerClient(urls, http=alertmanager_http(config), timeout=config.fleet.timeout) if urls else None
    return FleetSource(prom, am)


def run(args: argparse.Namespace) -> int:
    config = load(args)
    if not (args.prometheus or config.fleet.prometheus_url):
        return fail("no Prometheus to ask: give --prometheus URL or set [fleet] prometheus_url")
    source = make_source(config, args.prometheus, args.alertmanager, args.lookback)
    if not args.json:
        from polylog_console.ui.fleet.app import run_fleet

        return run_fleet(source, config)
    try:
        snap = source.fetch()
    finally:
        source.close()
    print_json(snap.to_json())
    if not snap.prometheus.ok:
        return EXIT_ERROR
    return EXIT_OK if snap.all_in_sync else EXIT_PROBLEM
