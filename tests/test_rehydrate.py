"""rehydrate: the catalogs it builds, and that it is atomic whatever happens (invalid source, kill -9,
a full disk, read-only catalogs/, a cancel, a concurrent rehydrate), on generated workspaces."""

from __future__ import annotations

import ctypes
import errno
import gc
import hashlib
import json
import os
import random
import resource
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import orjson
import pytest

from polylog_console.core.infra.lock import WorkspaceLock
from polylog_console.core.model.config import load_config
from polylog_console.core.model.errors import PolylogError
from polylog_console.core.model.progress import Cancelled, Progress
from polylog_console.core.model.workspace import Workspace
from polylog_console.core.registry.digest import digest
from polylog_console.core.registry.stored import StoredRegistry, state_from_polyforms
from polylog_console.core.runbook import catalogs
from polylog_console.core.runbook import rehydrate as rh
from polylog_console.core.runbook.catalogs import verify_catalogs
from polylog_console.core.runbook.validate import ValidationFailed
from polylog_console.demo.sample import make_polyforms, polyform_lines, write_workspace

# -- helpers ---------------------------------------------------------------------------------


def open_ws(root: Path):
    ws = Workspace.open(root)
    return ws, load_config(ws.root)


def catalog_files(root: Path) -> dict[str, bytes]:
    """Every file under catalogs/ (relative path -> bytes), to prove nothing changed."""
    base = root / "catalogs"
    return {p.relative_to(base).as_posix(): p.read_bytes() for p in sorted(base.rglob("*")) if p.is_file()}


def leftovers(root: Path) -> list[str]:
    return sorted(n for n in os.listdir(root) if n.startswith(".catalogs-"))


def audit(root: Path, action: str = "rehydrate") -> list[tuple[str, str | None]]:
    path = root / "memory" / "audit" / "events.jsonl"
    if not path.exists():
        return []
    events = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [(e["event"], e.get("outcome")) for e in events if e.get("action") == action]


def run_rehydrate(root: Path, *args: str, **popen: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "polylog_console", "rehydrate", "--workspace", str(root), *args],
                          capture_output=True, text=True, timeout=120, **popen)  # type: ignore[call-overload]


def assert_unchanged(root: Path, before: dict[str, bytes]) -> None:
    assert catalog_files(root) == before
    assert leftovers(root) == []


@pytest.fixture(scope="module")
def sources() -> tuple[bytes, bytes]:
    """Two different valid sources of 10,000 polyforms (a rehydrate takes ~0.5-1 s here)."""
    with_gc = gc.isenabled()
    gc.disable()  # generating millions of small objects is several times faster without the cyclic GC
    try:
        return polyform_lines(make_polyforms(10_000, seed=101)), polyform_lines(make_polyforms(10_000, seed=202))
    finally:
        if with_gc:
            gc.enable()


@pytest.fixture
def big_ws(tmp_path: Path, sources) -> Path:
    """A workspace whose source is source A, with catalogs already rehydrated from it."""
    root = tmp_path / "big"
    write_workspace(root, polyforms=200, checkpoints=20, drift_from=15)
    (root / "stable_polyforms.jsonl").write_bytes(sources[0])
    ws, config = open_ws(root)
    rh.rehydrate(ws, config)
    assert verify_catalogs(root).consistent
    return root


# -- what it builds --------------------------------------------------------------------------


def test_rehydrate_builds_exactly_the_reference_catalogs(sample_ws):
    root = sample_ws.root
    assert not verify_catalogs(root).consistent  # the sample's source changed after its last hydration
    ws, config = open_ws(root)
    result = rh.rehydrate(ws, config)

    source = (root / "stable_polyforms.jsonl").read_bytes()
    check = verify_catalogs(root)
    assert check.consistent, check.problems
    assert result.polyforms == 2000 and result.symbols == 2000 and result.workers == 1
    assert result.source_checksum == hashlib.sha256(source).hexdigest()
    assert result.registry_digest == digest(state_from_polyforms(sample_ws.incident.current), "engine")
    # Byte for byte what the single-pass reference builder produces from the same polyforms.
    reference = catalogs.build_all(sample_ws.incident.current, source, label=f"hydration-{result.generated_at}",
                                   generated_at=result.generated_at)
    assert {f"catalogs/{k}": v for k, v in catalog_files(root).items()} == reference
    doc = result.to_json()
    assert set(doc) >= {"polyforms", "registry_digest", "source_checksum", "artifacts"}
    assert {name: info["path"] for name, info in doc["artifacts"].items()} == {
        "registry": "catalogs/registry.json", "attachment_graph": "catalogs/attachment_graph.json",
        "scaler_tables": "catalogs/scaler_tables.json", "metadata": "catalogs/metadata.json"}
    assert leftovers(root) == []
    assert audit(root) == [("action_started", None), ("action_finished", "ok")]


def test_rehydrate_primes_the_digest_cache(sample_ws):
    ws, config = open_ws(sample_ws.root)
    result = rh.rehydrate(ws, config)
    stored = StoredRegistry.for_workspace(ws, "engine")
    assert stored.get().digest == result.registry_digest
    assert stored.loads == 0  # the digest came from the cache: the registry was not parsed again


def test_parallel_build_is_byte_identical_to_the_in_process_build(small_ws):
    root = small_ws.root
    (root / "stable_polyforms.jsonl").write_bytes(polyform_lines(make_polyforms(3000, seed=5)))
    ws, config = open_ws(root)
    serial = rh.rehydrate(ws, config, workers=1)
    serial_files = catalog_files(root)
    parallel = rh.rehydrate(ws, config, workers=2, chunk_size=16 << 10)  # ~60 chunks over 2 processes
    parallel_files = catalog_files(root)
    assert parallel.workers == 2 and serial.workers == 1
    assert parallel.registry_digest == serial.registry_digest
    for name in ("attachment_graph.json", "scaler_tables.json"):
        assert parallel_files[name] == serial_files[name]
    states = [orjson.loads(files["registry.json"])["state"] for files in (serial_files, parallel_files)]
    assert states[0] == states[1]
    assert verify_catalogs(root).consistent


def test_cli_rehydrate_then_digest_tells_the_sample_story(sample_ws, cli):
    root = str(sample_ws.root)
    before = json.loads(cli("digest", "--workspace", root, "--json").out)
    assert (before["diff"]["missing"], before["diff"]["unexpected"], before["diff"]["mismatched"]) == (3, 40, 9)

    result = cli("rehydrate", "--workspace", root, "--json")
    assert result.code == 0, result.err
    doc = json.loads(result.out)
    assert doc["rehydrated"] is True and doc["polyforms"] == 2000
    assert len(doc["registry_digest"]) == 64 and len(doc["source_checksum"]) == 64

    after = cli("digest", "--workspace", root, "--json")
    assert after.code == 1  # drift remains: the engine dropped 3 symbols and changed 4
    state = json.loads(after.out)
    assert state["stored_digest"] == doc["registry_digest"]
    assert state["registry_match"] is False
    assert (state["diff"]["missing"], state["diff"]["unexpected"], state["diff"]["mismatched"]) == (3, 0, 4)
    assert state["catalogs"]["consistent"] is True

    text = cli("rehydrate", "--workspace", root)
    assert text.code == 0 and "rehydrated      2,000 polyforms" in text.out and "catalogs/registry.json" in text.out


def test_first_rehydrate_creates_catalogs(small_ws):
    shutil.rmtree(small_ws.root / "catalogs")
    ws, config = open_ws(small_ws.root)
    result = rh.rehydrate(ws, config)
    assert result.swap == "rename"
    assert verify_catalogs(small_ws.root).consistent


def test_unrelated_files_in_catalogs_are_carried_over(small_ws):
    cat = small_ws.root / "catalogs"
    (cat / "NOTES.md").write_text("hand-written notes\n")
    (cat / "extra").mkdir()
    (cat / "extra" / "more.json").write_text('{"keep": true}\n')
    os.symlink("NOTES.md", cat / "notes-link")
    ws, config = open_ws(small_ws.root)
    assert rh.rehydrate(ws, config).swap == "exchange"
    assert (cat / "NOTES.md").read_text() == "hand-written notes\n"
    assert (cat / "extra" / "more.json").read_text() == '{"keep": true}\n'
    assert (cat / "notes-link").is_symlink() and os.readlink(cat / "notes-link") == "NOTES.md"
    assert verify_catalogs(small_ws.root).consistent


# -- invalid source ----------------------------------------------------------------------------


@pytest.mark.parametrize("workers", [1, 2])
def test_invalid_source_writes_nothing_and_lists_the_errors(small_ws, workers):
    root = small_ws.root
    source = root / "stable_polyforms.jsonl"
    lines = source.read_bytes().splitlines()
    lines[150] = lines[2]  # duplicate uuid + symbol, far from the first (another chunk with 2 workers)
    lines[170] = b'{"uuid": "nope", "composition": 5}'
    source.write_bytes(b"\n".join(lines) + b"\n")
    before = catalog_files(root)
    inode = os.stat(root / "catalogs").st_ino
    ws, config = open_ws(root)
    with pytest.raises(ValidationFailed) as info:
        rh.rehydrate(ws, config, workers=workers, chunk_size=8 << 10)
    report = info.value.report
    assert [(e.line, e.field) for e in report.errors] == [(151, "uuid"), (151, "unicode_char"), (171, "uuid"),
                                                          (171, "composition")]
    assert "nothing written" in str(info.value)
    assert_unchanged(root, before)
    assert os.stat(root / "catalogs").st_ino == inode
    assert audit(root)[-1] == ("action_finished", "problem")


def test_cli_invalid_source_exit_1_with_errors(small_ws, cli):
    root = small_ws.root
    with open(root / "stable_polyforms.jsonl", "ab") as handle:
        handle.write(b"[]\n{oops\n")
    before = catalog_files(root)
    result = cli("rehydrate", "--workspace", str(root), "--json")
    assert result.code == 1, result.err
    doc = json.loads(result.out)
    assert doc["rehydrated"] is False and doc["valid"] is False and doc["error_count"] == 2
    assert [(e["line"], e["field"]) for e in doc["errors"]] == [(201, "(line)"), (202, "(line)")]
    text = cli("rehydrate", "--workspace", str(root))
    assert text.code == 1 and "the source is invalid; nothing was written" in text.out and "line 202" in text.out
    assert_unchanged(root, before)


# -- crash recovery and the swap -------------------------------------------------------------


def test_leftovers_of_crashed_runs_are_removed(small_ws):
    root = small_ws.root
    stale = root / ".catalogs-staging-999999"
    (stale / "sub").mkdir(parents=True)
    (stale / "registry.json").write_text("half written")
    (stale / "sub").chmod(0o500)
    (root / ".catalogs-old-12").mkdir()
    ws, config = open_ws(root)
    rh.rehydrate(ws, config)
    assert leftovers(root) == []
    assert verify_catalogs(root).consistent
    assert ("rehydrate_recovered", None) in [(e, o) for e, o in _all_events(root)]


def _all_events(root: Path) -> list[tuple[str, str | None]]:
    path = root / "memory" / "audit" / "events.jsonl"
    return [(e["event"], e.get("outcome")) for e in map(json.loads, path.read_text().splitlines())]


def _fake_renameat2_enosys(*_args: object) -> int:
    ctypes.set_errno(errno.ENOSYS)
    return -1


@pytest.mark.parametrize("fake", [None, _fake_renameat2_enosys], ids=["no-renameat2", "enosys"])
def test_journal_fallback_when_renameat2_is_unavailable(small_ws, monkeypatch, fake):
    monkeypatch.setattr(rh, "_RENAMEAT2", fake)
    (small_ws.root / "catalogs" / "NOTES.md").write_text("kept\n")
    ws, config = open_ws(small_ws.root)
    result = rh.rehydrate(ws, config)
    assert result.swap == "journal"
    assert verify_catalogs(small_ws.root).consistent
    assert (small_ws.root / "catalogs" / "NOTES.md").read_text() == "kept\n"
    assert leftovers(small_ws.root) == []


@pytest.mark.parametrize("crash_point", ["journal-written", "old-moved-away", "new-moved-in"])
def test_interrupted_journaled_swap_rolls_forward(tmp_path, crash_point):
    """The states a crash can leave between the journaled fallback's steps, made for real."""
    root = tmp_path / "ws"
    write_workspace(root, polyforms=300, checkpoints=5, drift_from=3)
    ws, _config = open_ws(root)
    other = tmp_path / "other"
    shutil.copytree(root, other)
    rh.rehydrate(*open_ws(other))  # the new generation, built from the same source elsewhere
    new_generation = catalog_files(other)
    staging, old = root / ".catalogs-staging-777", root / ".catalogs-old-777"
    shutil.copytree(other / "catalogs", staging)
    (root / ".catalogs-journal.json").write_bytes(orjson.dumps({"staging": staging.name, "old": old.name}))
    if crash_point in ("old-moved-away", "new-moved-in"):
        os.rename(root / "catalogs", old)
    if crash_point == "new-moved-in":
        os.rename(staging, root / "catalogs")

    rh.recover(ws)
    assert catalog_files(root) == new_generation
    assert verify_catalogs(root).consistent
    assert leftovers(root) == []


# -- refusing, failing and cancelling change nothing -----------------------------------------


@pytest.mark.parametrize("target", ["catalogs", "catalogs/registry.json"])
def test_read_only_catalogs_are_refused_and_unchanged(small_ws, cli, target):
    root = small_ws.root
    before = catalog_files(root)
    path = root / target
    mode = path.stat().st_mode
    path.chmod(0o555 if path.is_dir() else 0o444)
    try:
        ws, config = open_ws(root)
        with pytest.raises(PolylogError, match="read-only"):
            rh.rehydrate(ws, config)
        result = cli("rehydrate", "--workspace", str(root))
        assert result.code == 2
        assert "read-only" in result.err and "nothing was changed" in result.err and result.err.count("\n") == 1
    finally:
        path.chmod(mode)
    assert_unchanged(root, before)
    assert audit(root)[-1] == ("action_failed", "error")


@pytest.mark.parametrize("limit", [64 << 10, 600 << 10], ids=["registry-fails", "graph-fails"])
def test_full_disk_leaves_the_previous_catalogs(sample_ws, limit):
    root = sample_ws.root
    before = catalog_files(root)

    def small_disk() -> None:  # every write past `limit` bytes of a file fails with EFBIG
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)

    result = run_rehydrate(root, preexec_fn=small_disk)
    assert result.returncode == 2, result.stderr
    assert "File too large" in result.stderr and "previous ones are unchanged" in result.stderr
    assert result.stderr.count("\n") == 1
    assert_unchanged(root, before)
    # and the next rehydrate, with room to write, succeeds
    assert run_rehydrate(root).returncode == 0
    assert verify_catalogs(root).consistent


PHASES = ["reading", "validating", "assembling", "writing"]


@pytest.mark.parametrize("workers", [1, 2])
@pytest.mark.parametrize("phase", PHASES)
def test_cancel_in_any_phase_changes_nothing(small_ws, phase, workers):
    root = small_ws.root
    (root / "stable_polyforms.jsonl").write_bytes(polyform_lines(make_polyforms(2000, seed=9)))
    before = catalog_files(root)
    progress = Progress(lambda u: progress.cancel() if u.message.startswith(phase) else None, min_interval=0)
    ws, config = open_ws(root)
    with pytest.raises(Cancelled):
        rh.rehydrate(ws, config, workers=workers, chunk_size=32 << 10, progress=progress)
    assert_unchanged(root, before)
    assert audit(root)[-1] == ("action_cancelled", "cancelled")
    rh.rehydrate(ws, config)  # the workspace lock was released
    assert verify_catalogs(root).consistent


# -- kill -9 ------------------------------------------------------------------------------------


def processes_with(marker: str) -> list[str]:
    """Processes whose environment holds ``marker`` (the rehydrate, its forkserver and workers)."""
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            environ = Path(f"/proc/{pid}/environ").read_bytes()
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
        except OSError:
            continue
        if marker.encode() in environ:
            found.append(f"{pid}: {cmdline.decode(errors='replace')[:120]}")
    return found


def test_kill_9_at_random_moments_leaves_old_or_new_catalogs(big_ws, sources):
    root = big_ws
    checksums = {hashlib.sha256(s).hexdigest(): s for s in sources}
    marker = f"POLYLOG_TEST_KILL={uuid.uuid4().hex}"
    env = {**os.environ, marker.split("=")[0]: marker.split("=")[1]}
    command = [sys.executable, "-m", "polylog_console", "rehydrate", "--workspace", str(root)]

    source = root / "stable_polyforms.jsonl"
    started = time.monotonic()
    source.write_bytes(sources[1])
    assert subprocess.run(command, env=env, capture_output=True, timeout=120).returncode == 0
    full_run = time.monotonic() - started

    rng = random.Random(4)
    outcomes = []
    for attempt in range(20):
        wanted = sources[attempt % 2]
        tmp = source.with_suffix(".tmp")
        tmp.write_bytes(wanted)
        os.replace(tmp, source)
        proc = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(0.0, full_run * 1.1))
        proc.kill()
        proc.wait(30)

        metadata = orjson.loads((root / "catalogs" / "metadata.json").read_bytes())
        generation = checksums.get(metadata["source_checksum"])
        assert generation is not None, f"attempt {attempt}: metadata names an unknown source"
        source.write_bytes(generation)  # check the catalogs against the source they claim
        check = verify_catalogs(root)
        assert check.consistent, f"attempt {attempt}: {check.problems}"
        registry = orjson.loads((root / "catalogs" / "registry.json").read_bytes())
        assert registry["digest"] == metadata["registry_digest"]
        outcomes.append("new" if generation == wanted else "old")

    # Orphans: the forkserver and the workers die with the killed rehydrate.
    deadline = time.monotonic() + 20
    while processes_with(marker) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert processes_with(marker) == []

    # The next run cleans whatever the killed ones left and completes.
    source.write_bytes(sources[0])
    assert subprocess.run(command, env=env, capture_output=True, timeout=120).returncode == 0
    assert leftovers(root) == [] and verify_catalogs(root).consistent
    print(f"kill -9 outcomes over {len(outcomes)} tries (full run {full_run:.2f}s):",
          {o: outcomes.count(o) for o in set(outcomes)})


# -- concurrency ----------------------------------------------------------------------------


def test_concurrent_rehydrate_fails_naming_the_holder(small_ws, cli):
    root = small_ws.root
    before = catalog_files(root)
    ws, _config = open_ws(root)
    with WorkspaceLock(ws, "console-refresh", actor="carol@ops"):
        result = cli("rehydrate", "--workspace", str(root))
    assert result.code == 2
    assert f"carol@ops (pid {os.getpid()}, console-refresh, since" in result.err
    assert "--wait" in result.err and result.err.count("\n") == 1
    assert_unchanged(root, before)
    assert audit(root)[-1] == ("action_failed", "error")


def test_concurrent_rehydrate_waits_for_the_holder_with_wait(small_ws, cli):
    root = small_ws.root
    ws, _config = open_ws(root)
    lock = WorkspaceLock(ws, "console-refresh")
    lock.acquire()
    timer = threading.Timer(0.5, lock.release)
    timer.start()
    try:
        result = cli("rehydrate", "--workspace", str(root), "--wait", "60", "--json")
    finally:
        timer.join()
        lock.release()
    assert result.code == 0, result.err
    assert verify_catalogs(root).consistent


def test_two_real_rehydrates_at_once(big_ws):
    root = big_ws
    command = [sys.executable, "-m", "polylog_console", "rehydrate", "--workspace", str(root)]
    # Both wait: both succeed, one after the other.
    procs = [subprocess.Popen([*command, "--wait", "60"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    results = [(p.pid, *p.communicate(timeout=120), p.returncode) for p in procs]
    assert [r[3] for r in results] == [0, 0], results
    assert verify_catalogs(root).consistent
    # Neither waits: at least one succeeds; a failure names the other one as the holder.
    procs = [subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    results = [(p.pid, *p.communicate(timeout=120), p.returncode) for p in procs]
    assert 0 in [r[3] for r in results], results
    for i, (_pid, _out, err, code) in enumerate(results):
        if code != 0:
            assert code == 2 and f"pid {results[1 - i][0]}, rehydrate" in err, err
    assert verify_catalogs(root).consistent and leftovers(root) == []


def test_sigterm_while_waiting_cancels_cleanly(small_ws):
    root = small_ws.root
    before = catalog_files(root)
    ws, _config = open_ws(root)
    with WorkspaceLock(ws, "console-refresh"):
        proc = subprocess.Popen([sys.executable, "-m", "polylog_console", "rehydrate", "--workspace", str(root),
                                 "--wait", "120"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 30
        while ("action_started", None) not in audit(root) and time.monotonic() < deadline:
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        _out, err = proc.communicate(timeout=30)
    assert proc.returncode == 2 and "cancelled" in err
    assert_unchanged(root, before)
    assert audit(root)[-1] == ("action_cancelled", "cancelled")
