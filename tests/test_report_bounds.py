"""``report`` and ``bundle`` are bounded by design (issue 10: memory bounded by the ring and the
batches, never by the feed or the audit log).

* The feed is read in batches of at most ``BATCH_RECORDS`` records (a burst of tiny lines).
* The audit log is streamed: what is kept per incident is bounded, the rest counted; a run of NUL
  bytes or a giant line is skipped by the feed's own ``LineSplitter`` in bounded memory and time.
* The bundle's timeline comes from the incident index when it is consistent, else from the feed's
  last bytes only, saying so.
* Two processes writing a report or a bundle in the same second never overwrite each other.

Real processes are measured with ``os.wait4`` (the child's own peak RSS). The big figures
(3,000,000 lines, 100 MB audit log, 700 MB NUL tails) are in ``tests/bench/bench_report_memory.py``.
"""

from __future__ import annotations

import threading
import time
import tracemalloc
from pathlib import Path

import orjson
import pytest

from polylog_console.core.feed.records import BATCH_RECORDS
from polylog_console.core.infra import atomic
from polylog_console.core.model.config import load_config
from polylog_console.core.model.workspace import Workspace
from polylog_console.core.runbook import report as rp
from polylog_console.core.runbook.bundle import bundle_name
from tests.bench.bench_report_memory import (
    add_tiny_lines,
    audit_path,
    feed_path,
    grow_audit,
    nul_tail,
    run_measured,
    sample_workspace,
)

RSS_LIMIT_MB = 250
NUL_MB = 300  # above the report's PARALLEL_ABOVE (256 MB): the parallel range cuts are exercised too


@pytest.fixture(scope="module")
def watched(tmp_path_factory) -> Path:
    """The sample workspace after one ``watch --once`` (its audit log and incident index)."""
    return sample_workspace(tmp_path_factory.mktemp("bounds") / "ws")


def _copy(src: Path, dest: Path) -> Path:
    import shutil

    shutil.copytree(src, dest, symlinks=True)
    return dest


def _ctx(root: Path):
    ws = Workspace(root)
    return ws, load_config(ws.root, None)


# --- the feed ---------------------------------------------------------------------------------------

def test_a_burst_of_tiny_lines_is_read_in_bounded_batches(watched, tmp_path):
    root = _copy(watched, tmp_path / "ws")
    before = feed_path(root).read_bytes().count(b"\n")
    add_tiny_lines(root, 60_000)  # one 180 KB chunk: one list of 60,000 records before the fix
    sizes = []
    lines = []
    for batch in rp.read_from(feed_path(root)):
        sizes.append(len(batch))
        lines.extend(r.line for r in batch)
    assert max(sizes) <= BATCH_RECORDS
    assert sum(sizes) >= 60_000
    assert lines == sorted(lines) and lines[-1] == before + 60_000  # line numbers continue across batches


def test_report_and_bundle_over_a_burst_of_tiny_lines_stay_small(watched, tmp_path):
    """300,000 ``{}`` lines (the bench runs 3,000,000): both as real processes, peak RSS bounded."""
    root = _copy(watched, tmp_path / "ws")
    add_tiny_lines(root, 300_000)
    for args in (["report", "--json"], ["bundle"]):
        code, _, rss, _ = run_measured([*args, "--workspace", str(root)], timeout=120)
        assert code in (0, 1), (args, code)
        assert rss < RSS_LIMIT_MB, (args, rss)
    doc = orjson.loads(run_measured(["report", "--json", "--workspace", str(root)], timeout=120)[3])
    assert doc["incidents"][-1]["started_label"] == "checkpoint-0171"


def test_range_cuts_never_readline_through_a_nul_run(tmp_path):
    path = tmp_path / "feed"
    path.write_bytes(b'{"a":1}\n' + b"\0" * (3 * 1024 * 1024) + b"\n{}\n")
    size = path.stat().st_size
    with open(path, "rb") as handle:
        assert rp._line_start_after(handle, 10, size, block=4096) == size - 3
        assert rp._line_start_after(handle, size - 2, size) == size
    assert rp._ranges(path, size, 4) == [(0, size - 3), (size - 3, size)]  # every cut lands past the NUL run


# --- the audit log ----------------------------------------------------------------------------------

def _traced_peak(ws, config) -> tuple[object, int]:
    rp.build_report(ws, config, incident="all", write_index=False)  # caches warm: the audit merge is what differs
    tracemalloc.start()
    try:
        rs = rp.build_report(ws, config, incident="all", write_index=False)
        return rs, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_the_audit_merge_keeps_bounded_records_per_incident(watched, tmp_path, monkeypatch):
    """4 MB of records naming the sample incident (unique re-audited alerts, deliveries,
    acknowledgements): the report keeps at most the bounds, counts the rest, and its peak memory
    hardly grows (keeping every record: +12.6 MB here)."""
    root = _copy(watched, tmp_path / "ws")
    ws, config = _ctx(root)
    _, base = _traced_peak(ws, config)
    written = grow_audit(root, 4)
    monkeypatch.setattr(rp, "MAX_SEEN", 500)
    monkeypatch.setattr(rp, "MAX_DEFERRED", 300)
    rs, peak = _traced_peak(ws, config)
    [rep] = rs.reports  # type: ignore[attr-defined]
    assert rep.view["started_label"] == "checkpoint-0171"
    assert len(rep.alerts) <= rp.MAX_ALERTS and len(rep.seen) <= 500
    assert len(rep.acknowledgements) <= rp.MAX_RECORDS and len(rep.timeline) <= rp.MAX_TIMELINE
    assert all(len(a.delivered) <= rp.MAX_DELIVERIES for a in rep.alerts)
    assert rep.beyond >= written // 4 - 300  # the acknowledgements beyond the deferred bound, at least
    assert rep.to_json()["audit_records_beyond_bounds"] == rep.beyond
    assert "more audit records of this incident" in "\n".join(rp.incident_markdown(rep))
    # the real records of the watch --once run are still the ones listed first
    assert rep.alerts[0].checkpoint == "checkpoint-0171" and rep.observed_by == "watch"
    assert peak - base < 4 * 1024 * 1024, f"+{(peak - base) / 1048576:.1f} MB traced for a 4 MB audit log"


def test_epoch_points_are_compacted_exactly_enough():
    points = [(float(t), "A") for t in range(10)] + [(10.0, "B"), (11.0, "B"), (12.0, "A")]
    compact = rp._compact(list(points))
    assert compact == [(0.0, "A"), (9.0, "A"), (10.0, "B"), (11.0, "B"), (12.0, "A")]
    assert rp.stored_epochs(compact, None, None).changes == rp.stored_epochs(points, None, None).changes

    class R:
        def __init__(self, ts, digest):
            self.ts, self.event, self.data = ts, "alert_raised", {"code": "registry_mismatch",
                                                                  "stored_digest": digest}

    many = [R(float(t), "A" if t < 50_000 else "B") for t in range(100_000)]
    out = rp._audit_points(iter(many))
    assert len(out) < rp.POINTS_COMPACT * 2
    assert rp.stored_epochs(out, None, None).changes == [(50_000.0, "B")]


def test_a_giant_audit_line_is_skipped_in_bounded_memory(tmp_path):
    root = tmp_path / "ws"
    (root / "memory" / "audit").mkdir(parents=True)
    ws = Workspace(root)
    first = b'{"ts":"2026-01-01T00:00:00.000Z","event":"alert_raised","dedup_key":"k1"}'
    last = b'{"ts":"2026-01-01T00:00:01.000Z","event":"alert_raised","dedup_key":"k2"}'
    ws.audit.write_bytes(first + b"\n" + b"\0" * (9 * 1024 * 1024) + b"\n" + last + b"\n" + b"\0" * (3 * 1024 * 1024))
    chunks = list(rp._audit_chunks(ws))
    assert max(map(len, chunks)) < 1024  # the NUL runs are never held, only counted
    assert [r.data["dedup_key"] for r in rp.iter_audit_with(ws, (b'"dedup_key"',))] == ["k1", "k2"]


def test_report_and_bundle_over_an_audit_log_with_a_nul_tail_finish_bounded(watched, tmp_path):
    """``truncate -s +300M events.jsonl`` (the reviewer's 700 MB ran > 120 s at > 1 GB):
    both finish within a generous timeout in bounded memory, with the incident's records."""
    root = _copy(watched, tmp_path / "ws")
    nul_tail(audit_path(root), NUL_MB)
    for args in (["report", "--json"], ["bundle", "--json"]):
        started = time.monotonic()
        code, _, rss, out = run_measured([*args, "--workspace", str(root)], timeout=120)
        assert code in (0, 1), (args, code, "killed after 120 s" if code == -9 else "")
        assert rss < RSS_LIMIT_MB, (args, rss)
        assert time.monotonic() - started < 120
        if args[0] == "report":
            doc = orjson.loads(out)
            assert [a["checkpoint"] for a in doc["incidents"][-1]["alerts"]][:1] == ["checkpoint-0171"]


# --- the feed's NUL tail, the bundle's timeline ------------------------------------------------------

def test_report_and_bundle_over_a_feed_with_a_nul_tail_finish_bounded(watched, tmp_path):
    root = _copy(watched, tmp_path / "ws")
    nul_tail(feed_path(root), NUL_MB)
    code, _, rss, out = run_measured(["report", "--json", "--workspace", str(root)], timeout=150)
    assert code == 1 and rss < RSS_LIMIT_MB, (code, rss)
    assert orjson.loads(out)["incidents"][-1]["started_label"] == "checkpoint-0171"
    code, _, rss, out = run_measured(["bundle", "--json", "--workspace", str(root)], timeout=150)
    assert code == 0 and rss < RSS_LIMIT_MB, (code, rss)
    markdown = Path(orjson.loads(out)["path"]).read_text()
    # the index covers the feed up to the NUL run: the 300 MB after it are not replayed for the timeline
    assert "_Bounded timeline:_" in markdown and "only the last 32 MB of the feed were read" in markdown


def test_the_bundle_timeline_uses_the_index_else_a_bounded_tail_and_says_so(watched, tmp_path):
    root = _copy(watched, tmp_path / "ws")
    ws, config = _ctx(root)
    import shutil

    shutil.rmtree(root / "memory" / "incidents")  # no index: the last 92 KB of the feed only (from checkpoint ~0181)
    tail = rp.timeline_markdown(ws, config, max_scan=92_000)
    assert "_Bounded timeline:_" in tail and "only the last 92,000 bytes of the feed were read" in tail
    assert "line numbers unknown" in tail and "the loaded history began in this drift" in tail
    assert "_Bounded timeline:_" in rp.timeline_markdown(ws, config, max_scan=120_000)
    rp.build_report(ws, config, incident="all")  # writes the index (as watch does)
    # the index covers the feed up to the open incident's start (95 KB before the end): only that is replayed
    full = rp.timeline_markdown(ws, config, max_scan=120_000)
    assert "Bounded timeline" not in full
    assert "`checkpoint-0171` (line 179)" in full
    assert full == rp.timeline_markdown(ws, config)  # the index covers it: the bound changes nothing


# --- names taken exclusively --------------------------------------------------------------------------

def test_reports_written_in_the_same_second_never_overwrite_each_other(watched, tmp_path):
    root = _copy(watched, tmp_path / "ws")
    ws, _ = _ctx(root)
    now = time.time()
    paths: dict[int, Path] = {}
    barrier = threading.Barrier(12)

    def write(i: int) -> None:
        barrier.wait()
        paths[i] = rp.write_report(ws, f"report {i}\n", now, "md")

    threads = [threading.Thread(target=write, args=(i,)) for i in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(paths.values())) == 12
    assert all(paths[i].read_text() == f"report {i}\n" for i in paths)
    stamp = paths[0].name.split("-")[1].split(".")[0]
    assert sorted(p.name for p in paths.values())[0] == f"report-{stamp}-10.md" or \
        f"report-{stamp}.md" in {p.name for p in paths.values()}
    assert not [p for p in paths[0].parent.iterdir() if p.name.startswith(".")]  # no temp file left


def test_bundles_named_in_the_same_second_are_taken_exclusively(tmp_path):
    name = bundle_name(1_700_000_000.0)
    first = atomic.write_new(tmp_path, name, b"one")
    (tmp_path / "escalation-20231114T221320Z-2.md").write_bytes(b"someone else's")
    second = atomic.write_new(tmp_path, name, b"two")
    assert first.name == "escalation-20231114T221320Z.md" and second.name == "escalation-20231114T221320Z-3.md"
    assert first.read_bytes() == b"one" and second.read_bytes() == b"two"
    assert (tmp_path / "escalation-20231114T221320Z-2.md").read_bytes() == b"someone else's"
