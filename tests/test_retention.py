"""Retention of memory/escalations, memory/reports and memory/outbox/failed (issue 10: nothing
grows without bound): count and age limits from ``[retention]``, never the newest file; real
``bundle``, ``report`` and ``watch --once`` processes, several at once."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from polylog_console.core.infra.retention import prune
from polylog_console.core.model.config import RetentionConfig, load_config
from tests.servers import Receiver

DAY = 86400.0


def aged(path: Path, days: float, text: str = "x") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    when = time.time() - days * DAY
    os.utime(path, (when, when))
    return path


def test_prune_keeps_the_newest_by_count_and_age_and_never_the_last(tmp_path):
    d = tmp_path / "escalations"
    files = [aged(d / f"escalation-{i:02d}.md", days=i) for i in range(10)]  # 00 newest .. 09 oldest
    aged(d / ".escalation-new.md.123.tmp", days=0)  # an atomic write in progress: not counted, kept
    stale = aged(d / ".escalation-old.md.456.tmp", days=2)  # left by a writer killed mid-write: removed
    (d / "subdir").mkdir()
    removed = prune(d, keep=5, max_age=3.5 * DAY)
    assert sorted(p.name for p in removed) == [f.name for f in files[4:]]  # beyond 3.5 days, or beyond 5
    assert sorted(p.name for p in d.iterdir()) == [".escalation-new.md.123.tmp", *[f.name for f in files[:4]],
                                                   "subdir"]
    assert not stale.exists()
    only = tmp_path / "quiet"
    last = aged(only / "escalation-old.md", days=400)
    aged(only / "escalation-older.md", days=500)
    assert prune(only, keep=10, max_age=30 * DAY) == [only / "escalation-older.md"]
    assert last.exists()  # the newest stays, however old
    assert prune(tmp_path / "missing", keep=1) == []


def test_retention_settings_have_documented_defaults_and_ranges(tmp_path):
    config = load_config(tmp_path, env={})
    assert config.retention == RetentionConfig()
    assert (config.retention.escalations_keep, config.retention.failed_keep) == (200, 1000)
    (tmp_path / "monitoring.toml").write_text('[retention]\nfailed_keep = 3\nreports_max_age = "7d"\n')
    config = load_config(tmp_path, env={})
    assert config.retention.failed_keep == 3 and config.retention.reports_max_age == 7 * DAY
    for bad, key in (("failed_keep = 0", "retention.failed_keep"),
                     ('escalations_max_age = "1s"', "retention.escalations_max_age")):
        (tmp_path / "monitoring.toml").write_text(f"[retention]\n{bad}\n")
        try:
            load_config(tmp_path, env={})
        except Exception as exc:
            assert key in str(exc) and "\n" not in str(exc)
        else:
            raise AssertionError(f"{bad} accepted")


def run_many(*commands: list[str], env: dict[str, str] | None = None) -> list[subprocess.CompletedProcess]:
    full = {**os.environ, "NO_COLOR": "1", **(env or {})}
    full.pop("POLYLOG_WORKSPACE", None)
    procs = [subprocess.Popen([sys.executable, "-m", "polylog_console", *cmd], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, env=full) for cmd in commands]
    out = []
    for proc in procs:
        stdout, stderr = proc.communicate(timeout=180)
        out.append(subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr))
    return out


def test_bundles_written_by_several_processes_at_once_stay_within_the_limits(small_ws):
    root = small_ws.root
    escalations = root / "memory" / "escalations"
    old = [aged(escalations / f"escalation-2024010{i}T000000Z.md", days=100 + i) for i in range(8)]
    with open(root / "monitoring.toml", "a") as handle:
        handle.write('\n[retention]\nescalations_keep = 3\nescalations_max_age = "30d"\n')
    results = run_many(*[["bundle", "--json", "--workspace", str(root)] for _ in range(4)])
    written = []
    for result in results:
        assert result.returncode in (0, 1), result.stderr
        path = Path(json.loads(result.stdout)["path"])
        written.append(path if path.is_absolute() else root / path)
    left = sorted(p.name for p in escalations.iterdir())
    assert len(left) <= 3, left
    assert not any(p.exists() for p in old)  # older than 30 days (and beyond the count)
    newest = max(escalations.iterdir(), key=lambda p: p.stat().st_mtime_ns)
    assert newest in written  # the newest bundle is never the one deleted


def test_reports_are_pruned_after_each_write(small_ws):
    root = small_ws.root
    with open(root / "monitoring.toml", "a") as handle:
        handle.write("\n[retention]\nreports_keep = 2\n")
    reports = root / "memory" / "reports"
    for _ in range(2):
        aged(reports / f"report-2024010{_}T000000Z.md", days=10)
    for _ in range(2):  # one after the other: two reports in the same second by two processes share a name
        (result,) = run_many(["report", "--workspace", str(root)])
        assert result.returncode in (0, 1), result.stderr
    left = list(reports.iterdir())
    assert len(left) == 2 and all(p.stat().st_mtime > time.time() - 3600 for p in left), left


def test_refused_deliveries_in_outbox_failed_are_pruned(small_ws):
    """A receiver that refuses every alert for good (HTTP 400): ``failed/`` keeps ``failed_keep``."""
    root = small_ws.root
    failed = root / "memory" / "outbox" / "failed"
    old = [aged(failed / f"webhook-{i:020d}-000000-old{i}.json", days=40 + i, text="{}") for i in range(6)]
    # what a process killed in the middle of an atomic write leaves behind, and one being written now
    stale_tmp = aged(root / "memory" / "outbox" / "webhook" / ".00001-x.json.k3j2.tmp", days=2, text="{")
    fresh_tmp = aged(root / "memory" / "outbox" / ".groups.json.a1b2.tmp", days=0, text="{")
    with Receiver(default=400) as receiver:
        with open(root / "monitoring.toml", "a") as handle:
            handle.write(f'\n[webhook]\nurl = "{receiver.url}"\ntimeout = 2\n[retention]\nfailed_keep = 2\n'
                         'failed_max_age = "30d"\n')
        (result,) = run_many(["watch", "--once", "--json", "--workspace", str(root)])
        assert result.returncode == 1, result.stderr
        assert len(receiver.requests) >= 2  # several alerts, each refused
    left = sorted(failed.iterdir())
    assert len(left) == 2 and not any(p.exists() for p in old), left
    assert not stale_tmp.exists() and fresh_tmp.exists()
    assert all(json.loads(p.read_bytes())["last_error"].startswith("POST ") for p in left)
