"""Hostile files named by data or configuration (issue 10, items 2, 5, 8, 9): FIFOs, symlinks to
/dev/zero, a poisoned digest cache, a stored registry of the wrong shape. Every test runs the real
command line as a process, with real FIFOs and symlinks, and bounds it with a timeout: on the
code before the bounded reader each of them hung, spun, or gave a false answer."""

from __future__ import annotations

import hashlib
import json
import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest

from tests.conftest import run_cli

REPO = Path(__file__).resolve().parents[1]
PY = str(REPO / ".venv" / "bin" / "python") if (REPO / ".venv" / "bin" / "python").exists() else sys.executable


def feed_lines(ws) -> list[dict]:
    return [json.loads(line) for line in ws.feed.read_text().splitlines() if line.strip()]


def checkpoints(ws) -> list[dict]:
    return [r for r in feed_lines(ws) if isinstance(r.get("registry_digest"), str)]


def stored_digest(ws) -> str:
    return json.loads(ws.registry.read_text())["digest"]


def append(ws, record: dict) -> None:
    with open(ws.feed, "ab") as handle:
        handle.write(orjson.dumps(record) + b"\n")


def fifo_checkpoint(ws, label: str = "checkpoint-fifo") -> Path:
    fifo = ws.root / "memory" / "fifo"
    os.mkfifo(fifo)
    append(ws, {"label": label, "registry_digest": "a" * 64, "registry_snapshot": "memory/fifo",
                "timestamp": time.time()})
    return fifo


class Watch:
    """``watch --json`` as a real process; reads its JSON lines with a deadline."""

    def __init__(self, ws, *extra: str) -> None:
        env = {**os.environ, "NO_COLOR": "1"}
        env.pop("POLYLOG_WORKSPACE", None)
        self.proc = subprocess.Popen([PY, "-m", "polylog_console", "watch", "--json", "-w", str(ws.root), *extra],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
        self.events: list[dict] = []
        self._buffer = b""

    def until(self, predicate, timeout: float = 20.0) -> dict:
        deadline = time.monotonic() + timeout
        for event in self.events:
            if predicate(event):
                return event
        while time.monotonic() < deadline:
            ready, _, _ = select.select([self.proc.stdout], [], [], max(0.0, deadline - time.monotonic()))
            if not ready:
                break
            chunk = os.read(self.proc.stdout.fileno(), 65536)
            if not chunk:
                break
            self._buffer += chunk
            *lines, self._buffer = self._buffer.split(b"\n")
            fresh = [json.loads(line) for line in lines]
            self.events.extend(fresh)
            for event in fresh:
                if predicate(event):
                    return event
        raise AssertionError(f"no such event within {timeout} s; got {[e.get('event') for e in self.events][-20:]}")

    def rss_mb(self) -> float:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return 0.0

    def terminate(self, timeout: float = 10.0) -> tuple[int, str]:
        self.proc.send_signal(signal.SIGTERM)
        try:
            _, err = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.communicate()
            raise AssertionError("watch did not stop within 10 s of SIGTERM") from None
        return self.proc.returncode, err.decode()

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.communicate()


@pytest.fixture
def watch():
    started: list[Watch] = []

    def start(ws, *extra: str) -> Watch:
        w = Watch(ws, *extra)
        started.append(w)
        return w

    yield start
    for w in started:
        w.close()


# --- item 2: a FIFO named as a checkpoint's registry_snapshot --------------------------------------

def test_watch_json_with_a_fifo_snapshot_prints_and_stops_on_sigterm(small_ws, watch):
    fifo_checkpoint(small_ws)
    w = watch(small_ws)
    event = w.until(lambda e: e.get("event") == "checkpoint" and e.get("label") == "checkpoint-fifo")
    assert event["registry_match"] is False
    started = time.monotonic()
    code, err = w.terminate()
    assert code == 0, err
    assert time.monotonic() - started < 5
    assert "Traceback" not in err


@pytest.mark.parametrize("command", [["watch", "--once"], ["watch", "--once", "--json"], ["digest"], ["bundle"]])
def test_commands_do_not_hang_on_a_fifo_snapshot(small_ws, command):
    fifo_checkpoint(small_ws)
    result = run_cli(*command, "-w", str(small_ws.root), timeout=60)
    assert result.code in (0, 1), result.err
    assert "Traceback" not in result.err
    if command == ["digest"]:
        # The diff is unavailable and says why, naming the file and what it is.
        assert "memory/fifo: not a regular file (FIFO)" in result.out


def test_digest_of_a_fifo_is_one_line_exit_2(tmp_path):
    fifo = tmp_path / "state.fifo"
    os.mkfifo(fifo)
    result = run_cli("digest", "--of", str(fifo), cwd=tmp_path, timeout=30)
    assert result.code == 2
    assert result.err.strip().splitlines() == [f"polylog-console: error: {fifo}: not a regular file (FIFO)"]


@pytest.mark.parametrize("target", ["/dev/zero", "/dev/null"])
def test_digest_of_a_device_or_directory_is_refused(tmp_path, target):
    link = tmp_path / "state.json"
    link.symlink_to(target)
    for path in (link, tmp_path):
        result = run_cli("digest", "--of", str(path), cwd=tmp_path, timeout=30)
        assert result.code == 2
        assert "not a regular file" in result.err and len(result.err.strip().splitlines()) == 1


def test_digest_of_a_file_over_the_limit_is_refused_unread(tmp_path):
    big = tmp_path / "big.json"
    with open(big, "wb") as handle:
        handle.truncate(600 * 1024 * 1024)  # sparse: costs no disk, would cost 600 MB to read
    result = run_cli("digest", "--of", str(big), cwd=tmp_path, timeout=30)
    assert result.code == 2
    assert result.err.strip() == f"polylog-console: error: {big}: registry snapshot larger than 512 MB, refused"


def test_digest_with_a_fifo_feed_exits_2(small_ws):
    small_ws.feed.unlink()
    os.mkfifo(small_ws.feed)
    result = run_cli("digest", "-w", str(small_ws.root), timeout=30)
    assert result.code == 2
    assert "not a regular file (FIFO)" in result.err


def test_bundle_with_a_fifo_feed_is_written_and_says_why(small_ws):
    small_ws.feed.unlink()
    os.mkfifo(small_ws.feed)
    result = run_cli("bundle", "--json", "-w", str(small_ws.root), timeout=60)
    assert result.code == 0, result.err
    text = Path(json.loads(result.out)["path"]).read_text()
    assert "context-brief.jsonl: not a regular file (FIFO)" in text


def test_watch_follow_with_a_fifo_feed_reports_it_and_stops_on_sigterm(small_ws, watch):
    small_ws.feed.unlink()
    os.mkfifo(small_ws.feed)
    w = watch(small_ws)
    event = w.until(lambda e: e.get("event") == "feed" and e.get("kind") == "error")
    assert "not a regular file" in event["detail"]
    w.until(lambda e: e.get("event") == "feed" and e.get("kind") == "started")
    code, err = w.terminate()
    assert code == 0, err


@pytest.mark.parametrize("command", ["validate", "rehydrate"])
def test_a_fifo_source_is_refused_not_waited_on(small_ws, command):
    """rehydrate used to block in open() on it and ignore SIGTERM (its handler made Python retry)."""
    source = small_ws.root / "stable_polyforms.jsonl"
    source.unlink()
    os.mkfifo(source)
    result = run_cli(command, "-w", str(small_ws.root), timeout=30)
    assert result.code == 2
    assert result.err.strip().endswith("stable_polyforms.jsonl: not a regular file (FIFO)")


# --- item 5: /dev/zero as the feed or as the stored registry ---------------------------------------

@pytest.mark.parametrize("json_flag", [[], ["--json"]])
def test_watch_once_on_a_feed_linked_to_dev_zero_exits_2(small_ws, json_flag):
    small_ws.feed.unlink()
    small_ws.feed.symlink_to("/dev/zero")
    result = run_cli("watch", "--once", *json_flag, "-w", str(small_ws.root), timeout=30)
    assert result.code == 2
    lines = result.err.strip().splitlines()
    assert len(lines) == 1 and "not a regular file (character device)" in lines[0]


def test_watch_once_on_a_fifo_feed_exits_2(small_ws):
    small_ws.feed.unlink()
    os.mkfifo(small_ws.feed)
    result = run_cli("watch", "--once", "-w", str(small_ws.root), timeout=30)
    assert result.code == 2
    assert "not a regular file (FIFO)" in result.err


def test_registry_linked_to_dev_zero_while_watching_is_a_provider_error(small_ws, watch):
    w = watch(small_ws)
    w.until(lambda e: e.get("event") == "checkpoint")
    link = small_ws.registry.with_name("zero.tmp")
    link.symlink_to("/dev/zero")
    os.replace(link, small_ws.registry)
    last = checkpoints(small_ws)[-1]
    append(small_ws, {**last, "label": "after-zero", "timestamp": time.time()})
    alert = w.until(lambda e: e.get("event") == "alert" and e.get("code") == "registry_provider_error")
    assert "catalogs/registry.json: not a regular file (character device)" in json.dumps(alert)
    # The monitor keeps running and comparing, with bounded memory.
    append(small_ws, {**last, "label": "still-followed", "timestamp": time.time()})
    w.until(lambda e: e.get("event") == "checkpoint" and e.get("label") == "still-followed")
    assert w.rss_mb() < 400
    code, err = w.terminate()
    assert code == 0, err


@pytest.mark.parametrize("command", [["digest"], ["replicas"], ["watch", "--once"]])
def test_registry_linked_to_dev_zero_or_a_fifo_exits_2(small_ws, command):
    small_ws.registry.unlink()
    small_ws.registry.symlink_to("/dev/zero")
    result = run_cli(*command, "-w", str(small_ws.root), timeout=30)
    assert result.code == 2, result.out
    assert "catalogs/registry.json: not a regular file (character device)" in result.err
    small_ws.registry.unlink()
    os.mkfifo(small_ws.registry)
    result = run_cli(*command, "-w", str(small_ws.root), timeout=30)
    assert result.code == 2
    assert "catalogs/registry.json: not a regular file (FIFO)" in result.err


def test_a_stored_registry_over_its_limit_is_refused_unread(small_ws):
    small_ws.registry.unlink()
    with open(small_ws.registry, "wb") as handle:
        handle.truncate(600 * 1024 * 1024)  # sparse
    result = run_cli("digest", "-w", str(small_ws.root), timeout=30)
    assert result.code == 2
    assert result.err.strip() == ("polylog-console: error: catalogs/registry.json: "
                                  "stored registry larger than 512 MB, refused")


# --- item 8: a poisoned digest cache ----------------------------------------------------------------

def poison_cache(ws, value: str, scheme: str = "engine") -> None:
    content_hash = hashlib.sha256(ws.registry.read_bytes()).hexdigest()
    cache = ws.root / "memory" / "cache" / "registry-digest.json"
    cache.parent.mkdir(parents=True, exist_ok=True)
    cache.write_bytes(orjson.dumps({f"{scheme}:{content_hash}": value}))


def test_a_poisoned_cache_cannot_make_digest_say_match(small_ws):
    drifted = checkpoints(small_ws)[-1]
    assert drifted["registry_digest"] != stored_digest(small_ws)
    poison_cache(small_ws, drifted["registry_digest"])
    result = run_cli("digest", "--checkpoint", drifted["label"], "--json", "-w", str(small_ws.root), timeout=60)
    report = json.loads(result.out)
    assert report["registry_match"] is False
    assert report["stored_digest"] == stored_digest(small_ws)
    assert result.code == 1


def test_a_poisoned_cache_cannot_make_watch_resolve(small_ws):
    drifted = checkpoints(small_ws)[-1]
    poison_cache(small_ws, drifted["registry_digest"])
    result = run_cli("watch", "--once", "--json", "-w", str(small_ws.root), timeout=60)
    events = [json.loads(line) for line in result.out.splitlines()]
    codes = [e["code"] for e in events if e.get("event") == "alert"]
    assert "registry_resolved" not in codes
    assert "registry_mismatch" in codes
    last = [e for e in events if e.get("event") == "checkpoint"][-1]
    assert last["registry_match"] is False and last["stored_digest"] == stored_digest(small_ws)


def test_digest_recomputes_even_when_the_digest_field_and_the_cache_agree_on_a_lie(small_ws):
    """registry.json's digest field forged, and a cache entry forged to agree with it: ``digest``
    recomputes from the state, reports the true digest and that the file's field is wrong."""
    from polylog_console.core.registry.digest import digest

    document = json.loads(small_ws.registry.read_text())
    truth = digest(document["state"], "engine")
    document["digest"] = "e" * 64
    small_ws.registry.write_bytes(orjson.dumps(document, option=orjson.OPT_SORT_KEYS))
    poison_cache(small_ws, "e" * 64)
    result = run_cli("digest", "--json", "-w", str(small_ws.root), timeout=60)
    report = json.loads(result.out)
    assert report["stored_digest"] == truth
    assert report["registry_file_digest_ok"] is False
    assert result.code == 1


def test_a_good_cache_entry_is_still_used(small_ws):
    """The cache still speeds things up when it agrees with the file (the digest is not recomputed)."""
    from polylog_console.core.model.workspace import Workspace
    from polylog_console.core.registry.stored import StoredRegistry

    ws = Workspace.open(small_ws.root)
    first = StoredRegistry.for_workspace(ws)
    assert first.get().digest == stored_digest(small_ws) and first.loads == 1
    second = StoredRegistry.for_workspace(ws)
    assert second.get().digest == stored_digest(small_ws)
    assert second.loads == 0 and second.cache_refused == 0
    poison_cache(small_ws, "b" * 64)
    third = StoredRegistry.for_workspace(ws)
    assert third.get().digest == stored_digest(small_ws)
    assert third.loads == 1 and third.cache_refused == 1


def test_a_cache_entry_for_the_other_scheme_is_not_trusted(small_ws):
    """A canonical-scheme lookup never trusts the engine digest written in registry.json."""
    from polylog_console.core.model.workspace import Workspace
    from polylog_console.core.registry.digest import digest
    from polylog_console.core.registry.stored import StoredRegistry

    state = json.loads(small_ws.registry.read_text())["state"]
    poison_cache(small_ws, stored_digest(small_ws), scheme="canonical")  # the engine digest, filed as canonical
    stored = StoredRegistry.for_workspace(Workspace.open(small_ws.root), "canonical")
    assert stored.get().digest == digest(state, "canonical")


# --- item 9 (second half): a stored registry of the wrong shape -------------------------------------

BAD_STATES = {
    "number": {"clusters": {"a" * 32: 1}},
    "null": {"clusters": {"a" * 32: None}},
    "nested": {"clusters": {"a" * 32: {"b": "c"}}},
    "array": {"clusters": {"a" * 32: ["x"]}},
    "namespace-string": {"clusters": "x"},
}


def write_bad_registry(ws, state) -> None:
    ws.registry.write_bytes(orjson.dumps({"digest": "c" * 64, "label": "bad", "scheme": "engine", "state": state},
                                         option=orjson.OPT_SORT_KEYS))


@pytest.mark.parametrize("kind", sorted(BAD_STATES))
@pytest.mark.parametrize("command", [["digest"], ["replicas"]])
def test_a_registry_of_the_wrong_shape_is_refused(small_ws, kind, command):
    write_bad_registry(small_ws, BAD_STATES[kind])
    result = run_cli(*command, "-w", str(small_ws.root), timeout=60)
    assert result.code == 2, result.out
    lines = result.err.strip().splitlines()
    assert len(lines) == 1 and "catalogs/registry.json" in lines[0] and "must be" in lines[0]


def test_a_registry_of_the_wrong_shape_while_watching_is_a_provider_error(small_ws, watch):
    w = watch(small_ws)
    w.until(lambda e: e.get("event") == "checkpoint")
    write_bad_registry(small_ws, BAD_STATES["number"])
    last = checkpoints(small_ws)[-1]
    append(small_ws, {**last, "label": "after-bad", "timestamp": time.time()})
    alert = w.until(lambda e: e.get("event") == "alert" and e.get("code") == "registry_provider_error")
    assert "must be a string, got integer" in json.dumps(alert)
    append(small_ws, {**last, "label": "still-followed", "timestamp": time.time()})
    w.until(lambda e: e.get("event") == "checkpoint" and e.get("label") == "still-followed")
    code, err = w.terminate()
    assert code == 0, err


# --- the outbox's own files (a FIFO put there must not hang delivery) -------------------------------

def test_fifos_in_the_outbox_do_not_hang_watch_once(small_ws):
    with open(small_ws.root / "monitoring.toml", "a") as handle:
        handle.write('\n[webhook]\nurl = "http://127.0.0.1:9/hook"\ntimeout = 1\n')
    first = run_cli("watch", "--once", "-w", str(small_ws.root), timeout=60)  # leaves undelivered alerts
    assert first.code in (0, 1), first.err
    outbox = small_ws.root / "memory" / "outbox"
    entries = sorted((outbox / "webhook").glob("*.json"))
    assert entries
    entries[0].unlink()
    os.mkfifo(entries[0])
    groups = outbox / "groups.json"
    groups.unlink(missing_ok=True)
    os.mkfifo(groups)
    result = run_cli("watch", "--once", "-w", str(small_ws.root), timeout=60)
    assert result.code in (0, 1), result.err
    assert "Traceback" not in result.err
    assert entries[0].with_suffix(".bad").exists()  # set aside like a damaged entry
