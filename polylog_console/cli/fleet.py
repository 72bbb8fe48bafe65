"""``polylog-console fleet``: every workspace's drift, from Prometheus and Alertmanager (SPEC §12).

``--json`` prints one document and exits 0 when every workspace is in sync, 1 otherwise, 2 when
Prometheus cannot be queried (the document is still printed, with ``prometheus.ok`` false, and one
line says why on stderr; an unreachable Alertmanager is one warning line, the exit code unchanged).
Every URL (``--prometheus``, ``--alertmanager``, ``[fleet]`` keys) must be http/https with a host:
exit 2 with one line otherwise, before any client or screen. Without ``--json`` the fleet console
(a Textual screen) opens; it needs a terminal (exit 2 with one line otherwise). The workspace is
only needed for its ``monitoring.toml`` (``[fleet]``): the monitoring server needs no polylog workspace
at all (``--config FILE`` names the file).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from polylog_console.cli.common import EXIT_OK, EXIT_PROBLEM, fail, print_json, warn
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


def prometheus_url(config: Config, prometheus: str | None) -> str | None:
    """``--prometheus``, else ``[fleet] prometheus_url``, checked (http/https with a host)."""
    from polylog_console.core.fleet.http import check_url

    if prometheus is not None:
        return check_url(prometheus, "--prometheus")
    if config.fleet.prometheus_url:
        return check_url(config.fleet.prometheus_url, "[fleet] prometheus_url")
    return None


def make_source(config: Config, prometheus: str | None, alertmanager: list[str] | None, lookback: str = "1h"):
    from polylog_console.core.fleet.model import FleetSource
    from polylog_console.core.fleet.prometheus import PrometheusClient
    from polylog_console.core.fleet.silences import AlertmanagerClient, alertmanager_http, alertmanager_urls

    prom_url = prometheus_url(config, prometheus)
    urls = alertmanager_urls(config, alertmanager)  # checked before any client exists
    prom = None
    if prom_url:
        prom = PrometheusClient(prom_url, http=config.fleet.http, timeout=config.fleet.timeout, lookback=lookback)
    am = AlertmanagerClient(urls, http=alertmanager_http(config), timeout=config.fleet.timeout) if urls else None
    return FleetSource(prom, am)


def run(args: argparse.Namespace) -> int:
    config = load(args)
    if not prometheus_url(config, args.prometheus):
        return fail("no Prometheus to ask: give --prometheus URL or set [fleet] prometheus_url")
    if not args.json and not (sys.stdin.isatty() and sys.stdout.isatty()):
        # Textual without a terminal cannot be used (and would spin on an input at its end): say it, as
        # the console does, before anything is opened.
        return fail("the fleet console needs a terminal (stdin and stdout); use fleet --json in scripts")
    source = make_source(config, args.prometheus, args.alertmanager, args.lookback)
    if not args.json:
        from polylog_console.ui.fleet.app import run_fleet

        return run_fleet(source, config)
    try:
        snap = source.fetch()
    finally:
        source.close()
    print_json(snap.to_json())
    if snap.alertmanager.url is not None and not snap.alertmanager.ok:
        warn(f"Alertmanager not queried: {snap.alertmanager.error}")
    if not snap.prometheus.ok:
        return fail(snap.prometheus.error or "Prometheus cannot be queried")
    return EXIT_OK if snap.all_in_sync else EXIT_PROBLEM
