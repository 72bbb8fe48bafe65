"""Real Prometheus, Alertmanager (single or clustered) and ``watch --metrics`` processes for the
fleet tests and the bench, all on 127.0.0.1 and free ports, each with its own temp data directory.

Under ``CI=true`` a missing binary fails the test (never skips it): :func:`binary`.
Readiness is polled with a bounded loop (:func:`tests.servers.wait_until`).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import ssl
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.servers import free_port, wait_until

REPO = Path(__file__).resolve().parents[1]


def binary(name: str, package: str) -> str:
    for candidate in (f"/usr/bin/{name}", shutil.which(name)):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    message = f"{name} is not installed (apt-get install {package})"
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)


class Process:
    """A child process with its log in ``directory/log.txt``, stopped with SIGTERM by pid."""

    name = "process"

    def start(self, argv: list[str], directory: Path, env: dict[str, str] | None = None) -> None:
        self.dir = directory
        self.dir.mkdir(parents=True, exist_ok=True)
        self.log_path = self.dir / "log.txt"
        self.log = open(self.log_path, "wb")  # noqa: SIM115 - closed in close()
        self.proc = subprocess.Popen(argv, stdout=self.log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     env=env)

    def tail(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-3000:]
        except OSError:
            return ""

    def wait_ready(self, probe, timeout: float = 30.0) -> None:
        def ready() -> bool:
            if self.proc.poll() is not None:
                raise AssertionError(f"{self.name} exited ({self.proc.returncode}): {self.tail()}")
            return probe()

        if not wait_until(ready, timeout=timeout, interval=0.1):
            self.close()
            raise AssertionError(f"{self.name} did not become ready: {self.tail()}")

    def close(self) -> None:
        proc = getattr(self, "proc", None)
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
        with contextlib.suppress(OSError, AttributeError):
            self.log.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def _get_ok(url: str, **kwargs: Any) -> bool:
    try:
        return httpx.get(url, timeout=1, **kwargs).status_code == 200
    except httpx.HTTPError:
        return False


# --- Prometheus ---------------------------------------------------------------------------------

class Prometheus(Process):
    """Debian's ``prometheus`` scraping ``targets`` (``host:port`` strings or full static_configs) every
    ``interval``; ``web_config``: the text of a ``--web.config.file`` (TLS, auth)."""

    name = "prometheus"

    def __init__(self, tmp: Path, targets: list[str] | None = None, *, interval: str = "1s",
                 scrape_configs: str | None = None, web_config: str | None = None, ca: Path | None = None) -> None:
        exe = binary("prometheus", "prometheus")
        directory = tmp / "prometheus"
        (directory / "data").mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        scheme = "https" if web_config and "tls_server_config" in web_config else "http"
        self.url = f"{scheme}://127.0.0.1:{self.port}"
        self.ca = ca
        if scrape_configs is None:
            scrape_configs = ("  - job_name: polylog\n    static_configs:\n      - targets: ["
                              + ", ".join(f'"{t}"' for t in targets or []) + "]\n")
        config = directory / "prometheus.yml"
        config.write_text(f"global:\n  scrape_interval: {interval}\n  evaluation_interval: {interval}\n"
                          f"scrape_configs:\n{scrape_configs}")
        argv = [exe, f"--config.file={config}", f"--storage.tsdb.path={directory / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}", "--log.level=warn",
                "--storage.tsdb.retention.time=1h"]
        if web_config is not None:
            web = directory / "web.yml"
            web.write_text(web_config)
            argv.append(f"--web.config.file={web}")
        self.start(argv, directory)
        self.verify: Any = ssl.create_default_context(cafile=str(ca)) if ca else True
        self.wait_ready(lambda: _get_ok(f"{self.url}/-/ready", verify=self.verify))

    def query(self, expr: str) -> list[dict[str, Any]]:
        response = httpx.get(f"{self.url}/api/v1/query", params={"query": expr}, timeout=5, verify=self.verify)
        response.raise_for_status()
        return response.json()["data"]["result"]

    def wait_for(self, expr: str, count: int, timeout: float = 30.0) -> list[dict[str, Any]]:
        """Poll until ``expr`` returns at least ``count`` series (bounded)."""
        found: list[dict[str, Any]] = []

        def enough() -> bool:
            nonlocal found
            found = self.query(expr)
            return len(found) >= count

        if not wait_until(enough, timeout=timeout, interval=0.25):
            raise AssertionError(f"Prometheus: {expr} gave {len(found)} of {count} series: {found}; {self.tail()}")
        return found


# --- Alertmanager (single or clustered) -----------------------------------------------------------

AM_ROUTE = """\
route:
  receiver: {receiver}
  group_by: ["workspace", "alertname", "dedup_key"]
  group_wait: 1s
  group_interval: 1s
  repeat_interval: 1h
receivers:
  - name: "null"
  - name: hook
    webhook_configs:
      - url: "{hook}"
        send_resolved: false
"""


class AlertmanagerNode(Process):
    """A real Alertmanager; ``peers``: cluster addresses of other members (``--cluster.peer``);
    ``cluster``: join a cluster (listen on a free loopback port) or run alone."""

    name = "alertmanager"

    def __init__(self, tmp: Path, *, hook: str | None = None, cluster: bool = False, peers: list[str] | None = None,
                 label: str = "am", web_config: str | None = None, ca: Path | None = None) -> None:
        exe = binary("prometheus-alertmanager", "prometheus-alertmanager")
        directory = tmp / label
        (directory / "data").mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.cluster_port = free_port() if cluster else None
        self.url = f"http://127.0.0.1:{self.port}"
        config = directory / "alertmanager.yml"
        config.write_text(AM_ROUTE.format(receiver="hook" if hook else '"null"', hook=hook or "http://127.0.0.1:1/"))
        argv = [exe, f"--config.file={config}", f"--storage.path={directory / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}", "--log.level=warn"]
        if cluster:
            argv += [f"--cluster.listen-address=127.0.0.1:{self.cluster_port}",
                     f"--cluster.advertise-address=127.0.0.1:{self.cluster_port}",
                     "--cluster.gossip-interval=50ms", "--cluster.pushpull-interval=1s",
                     "--cluster.peer-timeout=2s", "--cluster.settle-timeout=2s"]
            argv += [f"--cluster.peer={p}" for p in peers or []]
        else:
            argv.append("--cluster.listen-address=")
        if web_config is not None:
            web = directory / "web.yml"
            web.write_text(web_config)
            argv.append(f"--web.config.file={web}")
            self.url = self.url.replace("http://", "https://") if "tls_server_config" in web_config else self.url
        self.start(argv, directory)
        self.verify: Any = ssl.create_default_context(cafile=str(ca)) if ca else True
        self.wait_ready(lambda: _get_ok(f"{self.url}/-/ready", verify=self.verify))

    @property
    def peer(self) -> str:
        return f"127.0.0.1:{self.cluster_port}"

    def get(self, path: str, **params: Any) -> Any:
        response = httpx.get(self.url + path, params=params, timeout=5, verify=self.verify)
        response.raise_for_status()
        return response.json()

    def alerts(self) -> list[dict[str, Any]]:
        return self.get("/api/v2/alerts")

    def silences(self) -> list[dict[str, Any]]:
        return self.get("/api/v2/silences")

    def cluster_peers(self) -> int:
        return len((self.get("/api/v2/status").get("cluster") or {}).get("peers") or [])


# --- watchers -------------------------------------------------------------------------------------

def make_workspace(root: Path, *, drifting: bool, name: str, alertmanager: list[str] | None = None,
                   checkpoints: int = 12, drift_from: int = 5) -> dict[str, Any]:
    """A scratch workspace from the sample generator, its checkpoints ending now. Returns what the
    test expects of it (the drift's first checkpoint timestamp)."""
    from polylog_console.demo.sample import write_workspace

    interval = 30.0
    start = time.time() - checkpoints * interval
    write_workspace(root, polyforms=60, checkpoints=checkpoints, start=start, interval=interval,
                    drift_from=drift_from if drifting else checkpoints + 1)
    config = (root / "monitoring.toml").read_text()
    config += f'\n[fleet]\nname = "{name}"\n'
    if alertmanager:
        config += "\n[alertmanager]\nurl = [" + ", ".join(f'"{u}"' for u in alertmanager) + "]\n"
    (root / "monitoring.toml").write_text(config)
    feed = root / "memory" / "coordination" / "context-brief.jsonl"
    stamps = [(lambda d: d.get("checkpoint_record", d))(json.loads(line))
              for line in feed.read_text().splitlines() if line.strip()]
    stored = json.loads((root / "catalogs" / "registry.json").read_text())["digest"]
    first_mismatch = next((s["timestamp"] for s in stamps
                           if s.get("registry_digest") and s["registry_digest"] != stored), None)
    return {"root": root, "name": name, "drift_started_at": first_mismatch if drifting else None}


class Watcher(Process):
    """``polylog-console watch --metrics 127.0.0.1:PORT`` on a workspace (a real process)."""

    name = "watch"

    def __init__(self, workspace: Path, *, extra_env: dict[str, str] | None = None) -> None:
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        env = {**os.environ, "NO_COLOR": "1", **(extra_env or {})}
        env.pop("POLYLOG_WORKSPACE", None)
        self.start([sys.executable, "-m", "polylog_console", "watch", "--workspace", str(workspace),
                    "--metrics", self.address], workspace.parent / f"watch-{workspace.name}", env)
        self.wait_ready(lambda: _get_ok(f"http://{self.address}/metrics"))

    def metrics(self) -> str:
        return httpx.get(f"http://{self.address}/metrics", timeout=5).text
