"""The audit log rotates by size and is read across rotation by every reader (issue 10: nothing
grows without bound). Real processes write at once; the readers are the ones the product uses:
``read_tail`` (the console's first screen, the escalation bundle), ``iter_records``, the console's
``AuditTail`` follower, and the ``bundle`` command."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

from polylog_console.core.infra import audit as audit_mod
from polylog_console.core.infra.audit import AuditLog, iter_records, read_tail, rotated
from polylog_console.core.monitor.activity import AuditTail

REPO = Path(__file__).resolve().parents[1]


def files_of(path: Path) -> list[Path]:
    return sorted(path.parent.glob(path.name + "*"))


def all_lines(path: Path) -> list[dict]:
    """Every record in every file, oldest file first (test's own reading: raw bytes)."""
    out = []
    index = 1
    while rotated(path, index).exists():
        index += 1
    for i in range(index - 1, -1, -1):
        p = rotated(path, i)
        if p.exists():
            data = p.read_bytes()
            assert data == b"" or data.endswith(b"\n"), f"{p} ends with a torn line"
            out.extend(json.loads(line) for line in data.splitlines())
    return out


def test_rotates_by_size_keeping_n_files_and_readers_span_them(tmp_path):
    path = tmp_path / "memory" / "audit" / "events.jsonl"
    log = AuditLog(path, "t@h", max_bytes=4096, keep=3)
    for n in range(400):
        log.append("tick", n=n, pad="x" * 40)
    names = sorted(p.name for p in files_of(path))
    assert names == ["events.jsonl", "events.jsonl.1", "events.jsonl.2", "events.jsonl.3"]
    for p in files_of(path):
        assert p.stat().st_size <= 4096
    kept = all_lines(path)
    numbers = [r["n"] for r in kept]
    assert numbers == list(range(numbers[0], 400))  # the newest records, in order, none missing
    assert numbers[0] > 0  # the oldest went
    # read_tail: the newest N records spanning files, oldest first
    live = len(path.read_text().splitlines())
    want = live + 10
    tail = list(read_tail(path, want))
    assert [r["n"] for r in tail] == list(range(400 - want, 400))
    assert [r["n"] for r in read_tail(path, 10_000)] == numbers
    assert [r["n"] for r in iter_records(path)] == numbers
    assert [r["n"] for r in log.tail(5)] == [395, 396, 397, 398, 399]


def test_lowering_keep_drops_the_excess_at_the_next_rotation(tmp_path):
    path = tmp_path / "events.jsonl"
    log = AuditLog(path, "t@h", max_bytes=2048, keep=6)
    for n in range(300):
        log.append("tick", n=n, pad="y" * 30)
    assert rotated(path, 6).exists()
    small = AuditLog(path, "t@h", max_bytes=2048, keep=2)
    for n in range(300, 340):
        small.append("tick", n=n, pad="y" * 30)
    assert sorted(p.name for p in files_of(path)) == ["events.jsonl", "events.jsonl.1", "events.jsonl.2"]


WRITER = textwrap.dedent("""
    import sys
    from pathlib import Path
    from polylog_console.core.infra.audit import AuditLog
    path, who, count, max_bytes, keep = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
    log = AuditLog(Path(path), who, max_bytes=max_bytes, keep=keep)
    for n in range(count):
        record = log.append("tick", writer=who, n=n, pad="z" * (n % 50))
        assert "audit_error" not in record, record
""")


def run_writers(path: Path, writers: int, count: int, max_bytes: int, keep: int) -> None:
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, str(path), f"w{i}", str(count), str(max_bytes),
                               str(keep)], cwd=REPO, stderr=subprocess.PIPE) for i in range(writers)]
    for proc in procs:
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err.decode()


def test_four_processes_writing_and_rotating_at_once_lose_and_tear_nothing(tmp_path):
    path = tmp_path / "events.jsonl"
    run_writers(path, writers=4, count=400, max_bytes=8192, keep=1000)  # keep everything: count it all
    records = all_lines(path)
    assert len(records) == 1600
    for who in ("w0", "w1", "w2", "w3"):
        assert [r["n"] for r in records if r["writer"] == who] == list(range(400))  # each in its order
    sizes = [p.stat().st_size for p in files_of(path)]
    assert len(sizes) > 20 and max(sizes) <= 8192
    assert len(list(iter_records(path))) == 1600


def test_processes_rotating_with_a_small_keep_stay_within_the_bound(tmp_path):
    path = tmp_path / "events.jsonl"
    run_writers(path, writers=3, count=500, max_bytes=4096, keep=2)
    files = files_of(path)
    assert sorted(p.name for p in files) == ["events.jsonl", "events.jsonl.1", "events.jsonl.2"]
    assert all(p.stat().st_size <= 4096 for p in files)
    newest = list(read_tail(path, 30))
    assert len(newest) == 30
    assert {r["n"] for r in newest if r["writer"] == "w0"} <= set(range(500))


def test_the_consoles_follower_misses_nothing_across_rotation(tmp_path):
    path = tmp_path / "events.jsonl"
    log = AuditLog(path, "t@h", max_bytes=2048, keep=5)
    log.append("before", n=-1)
    tail = AuditTail(path)  # from the end, as the console starts
    seen: list[int] = []
    for n in range(200):
        log.append("tick", n=n, pad="q" * 20)
        if n % 7 == 0:  # looks now and then: several rotations happen between some looks
            seen.extend(r["n"] for r in tail.read_new())
    seen.extend(r["n"] for r in tail.read_new())
    assert rotated(path, 3).exists()
    # every record written after the follower started, in order, though files rotated between looks
    assert seen == list(range(200))


def test_bundle_shows_recent_audit_events_from_the_rotated_file(small_ws, cli):
    path = small_ws.root / "memory" / "audit" / "events.jsonl"
    log = AuditLog(path, "t@h", max_bytes=65536, keep=2)
    for n in range(40):
        log.append("marker_before_rotation", n=n)
    path.rename(rotated(path, 1))
    log.append("marker_after_rotation", n=40)
    result = cli("bundle", "--json", "--workspace", str(small_ws.root))
    assert result.code in (0, 1), result.err
    bundle = Path(json.loads(result.out)["path"])
    if not bundle.is_absolute():
        bundle = small_ws.root / bundle
    text = bundle.read_text()
    assert "marker_after_rotation" in text and "marker_before_rotation" in text


def test_watch_once_rotates_by_the_configured_size(small_ws, cli):
    path = small_ws.root / "memory" / "audit" / "events.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"".join(json.dumps({"ts": "2025-01-01T00:00:00.000Z", "event": "old", "n": n,
                                          "pad": "p" * 80}).encode() + b"\n" for n in range(700)))
    assert path.stat().st_size > 65536
    with open(small_ws.root / "monitoring.toml", "a") as handle:
        handle.write("\n[audit]\nmax_bytes = 65536\nkeep = 2\n")
    result = cli("watch", "--once", "--workspace", str(small_ws.root))
    assert result.code == 1, result.err  # the sample ends in drift
    assert rotated(path, 1).exists() and path.stat().st_size < 65536
    assert any(r["event"] == "alert_raised" for r in read_tail(path, 50))
    assert [r["n"] for r in read_tail(path, 1000) if r["event"] == "old"][-1] == 699


def test_bad_audit_settings_are_one_line_errors(small_ws, cli):
    with open(small_ws.root / "monitoring.toml", "a") as handle:
        handle.write("\n[audit]\nmax_bytes = 10\n")
    result = cli("watch", "--once", "--workspace", str(small_ws.root))
    assert result.code == 2 and result.err.count("\n") == 1 and "audit.max_bytes" in result.err


# --- a disk that refuses writes -------------------------------------------------------------------

HELD = textwrap.dedent("""
    import json, resource, sys
    from pathlib import Path
    from polylog_console.core.infra.audit import AuditLog
    path = Path(sys.argv[1])
    log = AuditLog(path, "t@h")
    _, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (path.stat().st_size + 100, hard))
    big = log.append("too_big_for_the_disk", pad="b" * 1000)  # a write that fails half-way
    assert "audit_error" in big and log.backlog == 1, big
    for n in range(3):
        assert "audit_error" in log.append("while_full", n=n)
    assert not log.flush() and log.backlog == 4
    resource.setrlimit(resource.RLIMIT_FSIZE, (hard, hard))  # space returns
    assert log.flush() and log.backlog == 0
    log.append("after", n=9)
    print(json.dumps([r["event"] for r in log.tail(10)]))
""")


def test_records_wait_in_memory_while_the_disk_refuses_them_and_no_line_is_torn(tmp_path):
    path = tmp_path / "events.jsonl"
    AuditLog(path, "t@h").append("first")
    done = subprocess.run([sys.executable, "-c", HELD, str(path)], cwd=REPO, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == ["first", "too_big_for_the_disk", "while_full", "while_full", "while_full",
                                       "after"]
    assert path.read_bytes().endswith(b"\n") and len(all_lines(path)) == 6


def test_a_full_backlog_says_how_many_records_were_lost(tmp_path, monkeypatch):
    monkeypatch.setattr(audit_mod, "BACKLOG", 5)
    blocker = tmp_path / "memory"
    blocker.write_text("a file where the audit directory should be")
    log = AuditLog(blocker / "audit" / "events.jsonl", "t@h")
    for n in range(8):
        assert "audit_error" in log.append("tick", n=n)
    assert log.backlog == 5 and log.lost == 3
    blocker.unlink()
    assert log.flush()
    records = list(read_tail(log.path, 100))
    assert records[0]["event"] == "audit_lost" and records[0]["records"] == 3
    assert [r["n"] for r in records[1:]] == [3, 4, 5, 6, 7]

