"""Incidents reconstructed, and the post-incident report (SPEC §6, §13).

**One copy of the rules.** Incidents are what the monitor (:mod:`polylog_console.core.monitor.rules`)
decides: the feed is read with :func:`~polylog_console.core.feed.records.parse_lines` (the one
parser) and run through a real :class:`~polylog_console.core.monitor.rules.Monitor`, whose
``IncidentEvent`` s (``opened``, ``escalated``, ``restarted``, ``resolved``) are collected. Nothing
here decides what a mismatch, an incident or an escalation is.

**The stored registry of that moment.** A rehydrate changes the stored registry; comparing a
week-old feed with today's registry would turn every earlier checkpoint into drift. The replay
therefore swaps the stored digest the monitor sees at the moments the audit log says it changed
(:func:`stored_epochs`: ``action_finished`` of a rehydrate with its ``registry_digest``, and the
``stored_digest`` every alert record carries), mapped onto checkpoint time; the current
``catalogs/registry.json`` is the last epoch (from its modification time when nothing recorded the
change). The monitor sees the change between two checkpoints as a live ``watch`` does (it compares
the latest checkpoint again), so parity returns the same way. Only the current file's epoch has a
state for symbol diffs; for earlier ones the report uses the counts the alert records carry.

**The audit log** adds what the feed cannot know: when this workspace's monitor observed the drift
(its ``incident_*`` records' ``observed_at``, else its first alert record), each alert raised and
delivered per sink with its latency,
acknowledgements (the console's ``acknowledged``, Alertmanager ``silence_created``), actions with
actor, outcome and duration, refresh attempts, escalations. Rotated files (``events.jsonl.N``, the
highest number oldest) are read too, malformed lines and unknown events are skipped, and records
written before incidents existed (no ``dedup_key`` on actions) are placed by time.

**Attribution.** A drift (stored, live) can recur, so a record's ``dedup_key`` names a drift, not an
incident: every record is attributed among all the incidents by :class:`Attributor` (its checkpoint's
time within an incident's span, else its checkpoint label, else the incident of the writer's latest
``incident_*`` record, else this host's time), and an alert record already listed for the same
incident, code, status and checkpoint (a ``watch --once`` re-run audits what it reads again) is left
out and counted (``alert_records_repeated``).

**Derived times** are measured from ``started_at`` (the first mismatching checkpoint's timestamp,
the engine's clock), one definition each: detect ``observed_at − started_at``, acknowledge
``acknowledged_at − started_at``, resolve ``resolved_at − started_at`` (``resolved_at``: the first
matching checkpoint's timestamp; ``resolution_observed_at``, when this host saw parity, is
information only). An observation *before* the checkpoint's own time means the engine's clock is
ahead: the time is clamped at 0 and the skew reported (``clock_skew_s``). A start checkpoint without a
timestamp is dated when this workspace's monitor read it (the index's picture, the ``incident_opened``
record); when no monitor recorded it, the replay's reading is no measurement: no skew and no times.

**The timeline** holds entries of two clocks, each saying which (``engine``: a checkpoint's time;
``host``: the audit log); engine entries are ordered at their time less the measured skew.

**The index** (:mod:`polylog_console.core.monitor.incidents`) that ``watch`` keeps saves the replay
of everything it covers; see there for when it is trusted.
"""

from __future__ import annotations

import contextlib
import os
import re
import time
from bisect import bisect_right
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import pairwise
from pathlib import Path
from typing import Any

import orjson

from polylog_console.core.feed.records import BATCH_RECORDS, Checkpoint, LineSplitter, parse_lines
from polylog_console.core.infra import atomic, reader
from polylog_console.core.model import events as ev
from polylog_console.core.model.config import Config
from polylog_console.core.model.errors import PolylogError, RegistryError
from polylog_console.core.model.events import iso
from polylog_console.core.model.workspace import Workspace
from polylog_console.core.monitor import incidents as idx
from polylog_console.core.monitor.rules import Monitor, Run, exact_keep
from polylog_console.core.registry.stored import StoredRegistry

REPORTS = "memory/reports"
MAX_TIMELINE = 400  # timeline entries kept per incident (the rest are counted)
MAX_ACTIONS = 100
MAX_ALERTS = 100
MAX_DELIVERIES = 20  # per alert
MAX_RECORDS = 100  # acknowledgements, silences, refreshes, escalations kept per incident (the rest are counted)
MAX_SEEN = 10_000  # alert identities remembered per incident to recognise re-audits
MAX_DEFERRED = 10_000  # audit records held for the second attribution pass (the rest are counted)
RESOLVE_GRACE = 5.0  # seconds after resolution still counted as the incident's (the recheck, the resolved alert)
CHUNK = 4 * 1024 * 1024
READ_CHUNK = 1024 * 1024  # bytes of feed read at a time (as read_records)
DRIFT_CODES = (ev.REGISTRY_MISMATCH, ev.REGISTRY_RESOLVED, ev.DRIFT_PERSISTENT)


# --- time ----------------------------------------------------------------------------------------

def parse_time(value: Any) -> float | None:
    """Epoch seconds from an ISO-8601 string (``Z`` or an offset) or a number; None if unusable."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    if not isinstance(value, str) or not value:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


_RELATIVE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd])\s*$")


def parse_since(value: str, now: float | None = None) -> float:
    """``--since``: an ISO-8601 time, epoch seconds, or a duration back from now (``90s``, ``2h``, ``7d``)."""
    now = time.time() if now is None else now
    match = _RELATIVE.match(value)
    if match:
        return now - float(match.group(1)) * {"s": 1, "m": 60, "h": 3600, "d": 86400}[match.group(2)]
    try:
        return float(value)
    except ValueError:
        pass
    parsed = parse_time(value)
    if parsed is None:
        raise PolylogError(f"--since {value!r}: not an ISO-8601 time, epoch seconds or a duration like 2h")
    return parsed


def _iso(ts: float | None) -> str | None:
    return iso(ts) if ts is not None else None


# --- the feed, from an offset ----------------------------------------------------------------------

def _sliced(lines: list[Any], line: int | None, first: int) -> Iterator[list[Any]]:
    """``parse_lines`` over at most :data:`~polylog_console.core.feed.records.BATCH_RECORDS` lines at
    a time (as the follower and ``watch --once`` read): 3,000,000 ``{}`` lines in one chunk never
    become one list of 3,000,000 records."""
    for i in range(0, len(lines), BATCH_RECORDS):
        part = lines[i:i + BATCH_RECORDS]
        records = parse_lines(part, None if line is None else line + i, first)
        first += sum(x if x.__class__ is int else len(x) for x in part) + len(part)
        if records:
            yield records


def read_from(path: Path, offset: int = 0, line: int | None = 1, *,
              chunk_size: int = READ_CHUNK) -> Iterator[list[Any]]:
    """Batches of records from byte ``offset`` (a line start, line number ``line``) to the end,
    with the feed's own splitter (an over-long line, a run of NUL bytes, is skipped, never held) and
    parser, at most ``BATCH_RECORDS`` records a batch. A last line without its newline is read too."""
    splitter = LineSplitter(offset)
    fd, _ = reader.open_regular(path, what="feed")  # a FIFO or a device is refused, never waited on
    with open(fd, "rb") as handle:
        handle.seek(offset)
        while True:
            chunk = handle.read(chunk_size)
            if not chunk:
                break
            first, lines = splitter.feed(chunk)
            if lines:
                yield from _sliced(lines, line, first)
                if line is not None:
                    line += len(lines)
        if splitter.partial:
            first, lines = splitter.feed(b"\n")
            yield from _sliced(lines, line, first)


# --- the stored registry of each moment --------------------------------------------------------------

class DigestOnlyView:
    """A stored registry known only by its digest (an earlier epoch: its state is gone)."""

    loaded_symbols = None

    def __init__(self, digest: str) -> None:
        self.digest = digest
        self.other_digest = ""  # unknown: never a scheme mismatch

    @property
    def state(self) -> Any:
        raise RegistryError(f"stored registry {self.digest[:12]} of an earlier moment: its state is not kept")


class EpochStored:
    """What the replayed monitor sees as ``catalogs/registry.json``: the real file while its digest
    is in force, a :class:`DigestOnlyView` for earlier digests."""

    def __init__(self, real: StoredRegistry) -> None:
        self.real = real
        self.path = real.path
        self.digest: str | None = None  # None: the current file
        self._views: dict[str, DigestOnlyView] = {}

    def get(self) -> Any:
        if self.digest is None:
            return self.real.get()
        with contextlib.suppress(RegistryError):
            view = self.real.get()
            if view.digest == self.digest:
                return view
        if self.digest not in self._views:
            self._views[self.digest] = DigestOnlyView(self.digest)
        return self._views[self.digest]

    def invalidate(self) -> None:
        self.real.invalidate()


class ReplayMonitor(Monitor):
    """The monitor, unchanged, except that a stored registry of an earlier moment has no state to
    diff against."""

    def diff_for(self, cp: Checkpoint) -> Any:
        if isinstance(self.view, DigestOnlyView):
            return None
        return super().diff_for(cp)


@dataclass
class Epochs:
    """``initial`` is in force before the first change; ``changes`` are ``(time, digest)``, oldest
    first (this host's clock). ``None`` as a digest means the current file."""

    initial: str | None = None
    changes: list[tuple[float, str | None]] = field(default_factory=list)

    def at(self, ts: float | None) -> str | None:
        if ts is None or not self.changes:
            return self.initial if ts is not None or not self.changes else self.changes[-1][1]
        i = bisect_right([c[0] for c in self.changes], ts)
        return self.initial if i == 0 else self.changes[i - 1][1]


def stored_epochs(points: list[tuple[float, str]], current: str | None, current_mtime: float | None) -> Epochs:
    """The stored digest over time from ``points`` (``(time, digest)`` from the audit log: a
    rehydrate's result, the stored digest of each alert) and the current file's digest."""
    points = sorted(points)
    if not points:
        return Epochs(None)
    digests: list[tuple[float, str | None]] = []
    for ts, digest in points:
        if not digests or digests[-1][1] != digest:
            digests.append((ts, digest))
    initial: str | None = digests[0][1]
    changes: list[tuple[float, str | None]] = list(digests[1:])
    last = digests[-1][1]
    if current is not None and last != current:
        when = current_mtime if current_mtime is not None and current_mtime > digests[-1][0] else digests[-1][0]
        changes.append((when, None))
    # the current file's digest reads from the file itself (it has a state for diffs)
    if initial == current:
        initial = None
    changes = [(ts, None if d == current else d) for ts, d in changes]
    return Epochs(initial, changes)


# --- the audit log -------------------------------------------------------------------------------------

def audit_files(ws: Workspace) -> list[Path]:
    """The audit log and its rotated files, oldest first (``events.jsonl.N``: higher N is older)."""
    base = ws.audit
    rotated: list[tuple[int, Path]] = []
    with contextlib.suppress(OSError):
        for entry in base.parent.iterdir():
            suffix = entry.name[len(base.name) + 1:]
            if entry.name.startswith(base.name + ".") and suffix.isdigit():
                rotated.append((int(suffix), entry))
    files = [p for _, p in sorted(rotated, reverse=True)]
    if base.exists():
        files.append(base)
    return files


@dataclass(slots=True)
class AuditRecord:
    ts: float
    event: str
    actor: str | None
    data: dict[str, Any]


AUDIT_MAX_LINE = 1024 * 1024  # an audit record is small: a longer line (a run of NUL bytes) is skipped, never held


def _audit_chunks(ws: Workspace) -> Iterator[bytes]:
    """The audit log and its rotated files as chunks of whole lines (without the last newline),
    oldest first, cut by the feed's :class:`~polylog_console.core.feed.records.LineSplitter`: memory
    is one chunk whatever a file holds (a line over :data:`AUDIT_MAX_LINE` bytes, such as a 700 MB
    run of NUL bytes, is skipped as it is read), time is one pass."""
    for path in audit_files(ws):
        try:
            handle = open(reader.open_regular(path, what="audit log")[0], "rb")  # noqa: SIM115
        except (OSError, reader.UnreadableFile):  # a file that cannot be opened (or a FIFO) is skipped
            continue
        with handle:
            splitter = LineSplitter(0, AUDIT_MAX_LINE)
            while True:
                chunk = handle.read(CHUNK)
                end = not chunk
                if end:
                    if not splitter.partial:
                        break
                    chunk = b"\n"  # a last line without its newline is read too
                _, lines = splitter.feed(chunk)
                kept = [x for x in lines if x.__class__ is bytes]  # an over-long line is only its length
                if kept:
                    yield b"\n".join(kept)  # type: ignore[arg-type]
                if end:
                    break


def _record(raw: bytes) -> AuditRecord | None:
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    if type(obj) is not dict:
        return None
    event = obj.get("event")
    ts = parse_time(obj.get("ts"))
    if not isinstance(event, str) or ts is None:
        return None
    who = obj.get("actor")
    return AuditRecord(ts, event, who if isinstance(who, str) else None, obj)


def iter_audit(ws: Workspace, want: Callable[[bytes], bool] | None = None) -> Iterator[AuditRecord]:
    """Audit records in file order, oldest file first; ``want(raw)`` filters lines before parsing.
    Malformed lines, records without a usable ``ts`` or ``event`` are skipped."""
    for chunk in _audit_chunks(ws):
        for raw in chunk.split(b"\n"):
            if raw and (want is None or want(raw)):
                record = _record(raw)
                if record is not None:
                    yield record


def iter_audit_with(ws: Workspace, needles: tuple[bytes, ...]) -> Iterator[AuditRecord]:
    """The records whose line holds one of ``needles``, found with ``bytes.find`` over whole chunks
    (a 100 MB log of unrelated records costs a scan, not a parse per line)."""
    for chunk in _audit_chunks(ws):
        starts: set[int] = set()
        for needle in needles:
            pos = chunk.find(needle)
            while pos >= 0:
                begin = chunk.rfind(b"\n", 0, pos) + 1
                starts.add(begin)
                stop = chunk.find(b"\n", pos)
                if stop < 0:
                    break
                pos = chunk.find(needle, stop)
        for begin in sorted(starts):
            stop = chunk.find(b"\n", begin)
            record = _record(chunk[begin:stop if stop >= 0 else len(chunk)])
            if record is not None:
                yield record


_TS = b'{"ts":"'


def iter_audit_during(ws: Workspace, windows: list[tuple[float, float]],
                      want: Callable[[bytes], bool]) -> Iterator[AuditRecord]:
    """The records (passing ``want``) whose time falls in one of ``windows`` (sorted, on this host's
    clock). A line as the audit log writes it starts with its ISO time, compared as text before any
    parse; other lines are parsed and their time checked."""
    if not windows:
        return
    lows = [iso(lo).encode() for lo, _ in windows]
    highs = [iso(hi).encode() if hi != float("inf") else b"~" for _, hi in windows]
    low_ts = [lo for lo, _ in windows]

    def inside(ts: float) -> bool:
        i = bisect_right(low_ts, ts) - 1
        return i >= 0 and ts <= windows[i][1]

    for chunk in _audit_chunks(ws):
        if _outside(chunk, low_ts, windows):
            continue
        for raw in chunk.split(b"\n"):
            if not raw:
                continue
            canonical = raw.startswith(_TS) and raw[31:32] == b'"'
            if canonical:
                stamp = raw[7:31]
                i = bisect_right(lows, stamp) - 1
                if i < 0 or stamp > highs[i]:
                    continue
            if not want(raw):
                continue
            record = _record(raw)
            if record is not None and (canonical or inside(record.ts)):
                yield record


CHUNK_SLACK = 60.0  # seconds: lines of an append-only log from several processes are in time order within this


def _outside(chunk: bytes, low_ts: list[float], windows: list[tuple[float, float]]) -> bool:
    """True when a whole chunk of the audit log lies outside every window, judged by the times of
    its first and last lines (the log is appended in time order, give or take :data:`CHUNK_SLACK`)."""
    last_start = chunk.rfind(b"\n") + 1
    first_line, last_line = chunk[:40], chunk[last_start:last_start + 40]
    if not (first_line.startswith(_TS) and last_line.startswith(_TS)):
        return False
    first = parse_time(first_line[7:31].decode("ascii", "replace"))
    last = parse_time(last_line[7:31].decode("ascii", "replace"))
    if first is None or last is None:
        return False
    first, last = min(first, last) - CHUNK_SLACK, max(first, last) + CHUNK_SLACK
    i = bisect_right(low_ts, last) - 1
    return i < 0 or windows[i][1] < first


KEYED = (b'"dedup_key"', b"rehydrate", b"silence", b"acknowledg", b'"incident_')
INCIDENT_RECORDS = ("incident_opened", "incident_restarted", "incident_escalated", "incident_resolved")
EPOCHS = (b"registry_digest", b'"alert_raised"', b'"escalation"')  # see _audit_points


def _unkeyed(raw: bytes) -> bool:
    return (b'"action_' in raw or b'"refresh_' in raw) and b'"dedup_key"' not in raw


# --- reconstruction --------------------------------------------------------------------------------------

@dataclass
class Found:
    """One incident as the monitor's rules decided it (from a replay or from the index)."""

    view: dict[str, Any]  # IncidentView.to_json() of its latest picture
    offset: int | None = None  # byte offset of its first mismatching checkpoint
    events: list[tuple[str, dict[str, Any]]] = field(default_factory=list)  # (kind, picture)
    diff_at_end: dict[str, Any] | None = None
    untimed_start: bool = False  # its first checkpoint has no timestamp: started_at is the replay's read time
    # where started_at comes from: "checkpoint" (its timestamp), "index" (the picture a monitor of this
    # workspace wrote: the timestamp, or that monitor's reading when there was none), "monitor" (an untimed
    # start as a monitor read it), "replay" (untimed_start: this report's own reading)
    start_source: str = "checkpoint"

    def _times(self) -> tuple[float, float | None]:
        cached = self.__dict__.get("_cache")
        if cached is None or cached[0] is not self.view:
            view = self.view
            cached = (view, parse_time(view.get("started_at")) or 0.0, parse_time(view.get("resolved_at")))
            self.__dict__["_cache"] = cached
        return cached[1], cached[2]

    @property
    def started_at(self) -> float:
        return self._times()[0]

    @property
    def resolved_at(self) -> float | None:
        return self._times()[1]

    @property
    def key(self) -> str:
        return idx.incident_key(self.view)


@dataclass
class ReplayResult:
    incidents: list[Found]
    monitor: Monitor
    end_offset: int
    end_line: int
    alerts: list[Any]  # the alert events of the replay (the console's banner would have shown these)



# --- a whole feed, in parallel ------------------------------------------------------------------------

PARALLEL_ABOVE = 256 * 1024 * 1024  # bytes of feed worth reading with several processes
RANGE_BYTES = 128 * 1024 * 1024  # bytes per worker task
MAX_ITEMS = 200_000  # a range that compacts worse than this is read by the parent instead (memory bound)


@dataclass(frozen=True, slots=True)
class EpochMark:
    """In a worker's output: stored-registry change ``index`` applies from here on."""

    index: int


def _count_range(path: str, start: int, end: int) -> int:
    from polylog_console.core.feed.follower import count_newlines

    fd = os.open(path, os.O_RDONLY)
    try:
        return count_newlines(fd, start, end) or 0
    finally:
        os.close(fd)


def _scan_range(path: str, start: int, end: int, line: int, times: list[float], keep: int,
                last: bool) -> list[Any] | None:
    """A worker: the checkpoints of bytes ``[start, end)`` (a whole number of lines) parsed by the
    feed's parser and folded into runs (:func:`_fold`), with an
    :class:`EpochMark` before the first checkpoint at or after each stored-registry change time.
    Other entries and ingest errors are left out (they never change an incident). None when the
    range does not fold into :data:`MAX_ITEMS` items."""
    out: list[Any] = []
    splitter = LineSplitter(start)
    k_box = [0]
    with open(path, "rb") as handle:
        handle.seek(start)
        remaining = end - start
        while remaining > 0 or (last and splitter.partial):
            chunk = handle.read(min(READ_CHUNK, remaining)) if remaining > 0 else b""
            remaining -= len(chunk)
            if not chunk:
                if not (last and splitter.partial):
                    break
                chunk = b"\n"
            first, lines = splitter.feed(chunk)
            if not lines:
                continue
            batches = _sliced(lines, line, first)
            line += len(lines)
            for records in batches:
                if _fold_batch(records, out, keep, times, k_box):
                    return None
    return out


def _fold_batch(records: list[Any], out: list[Any], keep: int, times: list[float], k_box: list[int]) -> bool:
    """One batch of a worker's range into ``out`` (:func:`_scan_range`); True when it no longer
    folds into :data:`MAX_ITEMS` items."""
    k = k_box[0]
    if k < len(times):
        cut_from = 0
        for i, r in enumerate(records):
            ts = r.timestamp if r.__class__ is Checkpoint else None
            if ts is not None and k < len(times) and ts >= times[k]:
                _fold(records[cut_from:i], out, keep)
                while k < len(times) and ts >= times[k]:
                    out.append(EpochMark(k))
                    k += 1
                cut_from = i
        records = records[cut_from:]
    _fold(records, out, keep)
    k_box[0] = k
    return len(out) > MAX_ITEMS


def _fold(records: list[Any], out: list[Any], keep: int) -> None:
    """Checkpoints into ``out``, consecutive same-digest ones folded into a
    :class:`~polylog_console.core.monitor.rules.Run` (the monitor accounts for a run exactly; a
    run's field warnings are not counted here: they never change an incident). Other records
    (coordination entries, ingest errors) are left out for the same reason."""
    append = out.append
    for r in records:
        if r.__class__ is not Checkpoint:
            continue
        if out:
            tail = out[-1]
            cls = tail.__class__
            if cls is Run:
                if tail.first.digest == r.digest:
                    tail.add(r)
                    continue
            elif cls is Checkpoint and tail.digest == r.digest:
                run = out[-1] = Run(tail, keep)
                run.add(r)
                continue
        append(r)


def _ranges(path: Path, size: int, parts: int) -> list[tuple[int, int]]:
    """``parts`` byte ranges of whole lines covering ``[0, size)``."""
    cuts = [0]
    with open(path, "rb") as handle:
        for i in range(1, parts):
            pos = _line_start_after(handle, max(size * i // parts, cuts[-1]), size)
            if cuts[-1] < pos < size:
                cuts.append(pos)
    cuts.append(size)
    return [(a, b) for a, b in pairwise(cuts) if b > a]


def _line_start_after(handle: Any, pos: int, size: int, block: int = 1024 * 1024) -> int:
    """The offset just past the first newline at or after ``pos`` (``size`` when none before it),
    read a block at a time: a 700 MB run of NUL bytes costs a scan, never a 700 MB ``readline``."""
    while pos < size:
        handle.seek(pos)
        data = handle.read(min(block, size - pos))
        if not data:
            break
        nl = data.find(b"\n")
        if nl >= 0:
            return pos + nl + 1
        pos += len(data)
    return size


def _parallel_items(path: Path, size: int, times: list[float],
                    keep: int) -> Iterator[tuple[int, int, int, int, Any]]:
    """``(start, end, first line, lines, items or None)`` per range, in feed order, from a pool of
    processes."""
    from concurrent.futures import ProcessPoolExecutor

    from polylog_console.core.infra.parallel import process_context

    workers = max(1, min(os.cpu_count() or 1, 8))
    ranges = _ranges(path, size, max(workers, size // RANGE_BYTES + 1))
    with ProcessPoolExecutor(workers, mp_context=process_context(["polylog_console.core.runbook.report"])) as pool:
        counts = list(pool.map(_count_range, [str(path)] * len(ranges), [a for a, _ in ranges],
                               [b for _, b in ranges]))
        firsts = [1]
        for c in counts[:-1]:
            firsts.append(firsts[-1] + c)
        futures = [pool.submit(_scan_range, str(path), a, b, firsts[i], times, keep, i == len(ranges) - 1)
                   for i, (a, b) in enumerate(ranges)]
        try:
            for (a, b), first, count, future in zip(ranges, firsts, counts, futures, strict=True):
                yield a, b, first, count, future.result()
        finally:
            for future in futures:
                future.cancel()


def replay(ws: Workspace, config: Config, *, offset: int = 0, line: int | None = 1, epochs: Epochs | None = None,
           stop_offset: int | None = None, max_checkpoints: int | None = None, now: float | None = None,
           resume: Found | None = None, keep_alerts: bool = False, emit_checkpoints: bool = False,
           on_events: Callable[[list[Any]], None] | None = None, parallel: bool = True,
           quiet_until: int | None = None) -> ReplayResult:
    """Run the feed from ``offset`` (line number ``line``, None when unknown) through the monitor and
    collect its incidents.

    ``stop_offset``: stop after the line that starts there (the state as of that checkpoint);
    ``max_checkpoints``: stop after that many checkpoints. ``resume``: the incident open at
    ``offset`` (its first mismatching checkpoint is at ``offset``): the replay continues it.
    ``on_events`` sees every batch of the monitor's events (with ``emit_checkpoints``, one
    ``CheckpointEvent`` per checkpoint). ``quiet_until``: the lines before that offset only warm the
    monitor up (its flap detector sees the incidents that opened there), their events are dropped.
    A whole feed above :data:`PARALLEL_ABOVE` bytes is parsed by worker processes (the same parser,
    folded into runs the monitor accounts for exactly) and run through this one monitor in order
    (``parallel=False``: never). Raises OSError when the feed cannot be read.
    """
    epochs = epochs or Epochs()
    stored = EpochStored(StoredRegistry.for_workspace(ws, config.scheme))  # type: ignore[arg-type]
    monitor = ReplayMonitor(stored, config.monitor, ws)  # type: ignore[arg-type]
    if resume is not None and resume.view.get("flapped") and quiet_until is None:
        monitor.resume_flapping = True  # it was a flapping incident from its start (decided before it)
    quiet = [quiet_until is not None]  # warming up: events dropped
    now = time.time() if now is None else now
    found: list[Found] = []
    by_id: dict[int, Found] = {}
    alerts: list[Any] = []
    end_offset, end_line = offset, line or 0
    changes = epochs.changes
    next_change = 0
    stored.digest = epochs.initial
    # resuming an incident at its first checkpoint: the monitor starts "in drift", but its start is known
    resumed_in_history = bool(resume.view.get("start_in_history", True)) if resume is not None else True

    def _resumed(data: dict[str, Any]) -> None:
        """The resumed incident keeps what the index knew of its start and observation."""
        assert resume is not None
        data["start_in_history"] = resumed_in_history
        data["observed_at"] = resume.view.get("observed_at")
        if resume.view.get("started_at") is not None:  # (an untimed start: the monitor's read time, not ours)
            data["started_at"] = resume.view["started_at"]
        if resume.view.get("observed_by") != "replay":
            data.pop("observed_by", None)

    def collect(events: list[Any]) -> None:
        if quiet[0]:
            return
        if on_events is not None:
            on_events(events)
        for event in events:
            kind = getattr(event, "event", None)
            if kind == "incident":
                view = event.incident
                item = by_id.get(view.id)
                data = view.to_json()
                data["observed_by"] = "replay"  # its observed_at is this replay's clock, not a monitor's
                if item is None:
                    item = by_id[view.id] = Found(data)
                    if resume is not None and not found:
                        item.offset = resume.offset
                    found.append(item)
                if resume is not None and item is found[0]:
                    _resumed(data)
                item.view = data
                if len(item.events) < MAX_TIMELINE:
                    item.events.append((event.kind, data))
            elif kind == "alert" and keep_alerts:
                alerts.append(event)

    def process(records: list[Any]) -> None:
        if records and quiet[0]:
            k = next((i for i, r in enumerate(records) if _first_offset(r) >= quiet_until), len(records))  # type: ignore[operator]
            if k:
                monitor.process(records[:k], emit_checkpoints=False, now=now)  # the warm-up: events dropped
            if k == len(records):
                return
            quiet[0] = False
            records = records[k:]
        if records:
            out = monitor.process(records, emit_checkpoints=emit_checkpoints, now=now)
            collect(out)
            _offsets(out, records)

    def _offsets(out: list[Any], records: list[Any]) -> None:
        for event in out:
            if getattr(event, "event", None) == "incident" and event.kind in ("opened", "restarted"):
                item = by_id.get(event.incident.id)
                if item is not None:
                    target = event.incident.started_line
                    for record in records:
                        first = record.first if record.__class__ is Run else record
                        if first.__class__ is Checkpoint and first.line == target:
                            if item.offset is None or event.kind == "restarted":
                                item.offset = first.offset
                            item.untimed_start = first.timestamp is None
                            if item.untimed_start:
                                item.start_source = "replay"
                            break

    seen = 0
    path = config.feed.path
    size = os.stat(path).st_size
    if (parallel and offset == 0 and line == 1 and resume is None and stop_offset is None and max_checkpoints is None
            and not emit_checkpoints and quiet_until is None and size >= PARALLEL_ABOVE):
        keep = exact_keep(config.monitor)
        for start, end, first_line, count, items in _parallel_items(path, size, [c[0] for c in changes], keep):
            if items is None:  # did not fold: read here, in the ordinary way
                items = [r for batch in _bounded(path, start, end, first_line) for r in batch]
            segment: list[Any] = []
            for item in items:
                if item.__class__ is EpochMark:
                    process(segment)
                    segment = []
                    while next_change <= item.index:
                        stored.digest = changes[next_change][1]
                        next_change += 1
                        collect(monitor.process([], emit_checkpoints=False, now=now))
                else:
                    segment.append(item)
            process(segment)
            end_offset, end_line = end, first_line + count
        source: Iterator[list[Any]] = iter(())
    else:
        source = read_from(path, offset, line)
    for batch in source:
        done = False
        if stop_offset is not None and batch and batch[-1].offset >= stop_offset:
            batch = [r for r in batch if r.offset <= stop_offset]
            done = True
        if max_checkpoints is not None:
            for i, record in enumerate(batch):
                if record.__class__ is Checkpoint:
                    seen += 1
                    if seen >= max_checkpoints:
                        batch = batch[:i + 1]
                        done = True
                        break
        # split the batch where the stored registry changed
        while next_change < len(changes) and batch:
            when, digest = changes[next_change]
            last_ts = _last_ts(batch)
            if last_ts is None or last_ts < when:
                break
            cut = next((i for i, r in enumerate(batch) if r.__class__ is Checkpoint and r.timestamp is not None
                        and r.timestamp >= when), len(batch))
            process(batch[:cut])
            batch = batch[cut:]
            stored.digest = digest
            next_change += 1
            collect(monitor.process([], emit_checkpoints=emit_checkpoints, now=now))  # compares the latest again
        process(batch)
        if batch:
            tail = batch[-1]
            end_line = tail.line + 1 if tail.line is not None else end_line
            end_offset = tail.offset + (len(tail.raw) if tail.raw else 0) + 1
        if done:
            break
    if stop_offset is None and max_checkpoints is None:
        while next_change < len(changes):  # changes after the last checkpoint: compared again at once
            stored.digest = changes[next_change][1]
            next_change += 1
            collect(monitor.process([], emit_checkpoints=False, now=now))
    current = monitor.snapshot(now).incident  # the open incident as of the end (its last event may be older)
    if current is not None and current.id in by_id:
        item = by_id[current.id]
        item.view = {**current.to_json(), "observed_by": "replay"}
        if resume is not None and item is found[0]:
            _resumed(item.view)
    if resume is not None and found and found[0].untimed_start:  # its start: the index's (a monitor's reading)
        found[0].untimed_start, found[0].start_source = False, "monitor"
    for item in found:
        if item.resolved_at is None and monitor.latest is not None:
            with contextlib.suppress(PolylogError, OSError):
                diff = monitor.diff_for(monitor.latest)
                if diff is not None:
                    item.diff_at_end = diff.counts()
    return ReplayResult(found, monitor, end_offset, end_line, alerts)


def _first_offset(record: Any) -> int:
    return int((record.first if record.__class__ is Run else record).offset)


def warmup_start(path: Path, offset: int, line: int, window: int) -> tuple[int, int]:
    """``(offset, line)`` of where a replay continuing at ``offset`` (line ``line``) should begin so
    that its flap detector sees the ``window`` checkpoints before it (SPEC: flapping), as the monitor
    that read the whole feed did: ``window`` lines back, more while they hold fewer checkpoints (at
    most 64 times as many lines), never before the feed's start."""
    lines = max(1, window)
    while True:
        start, n = offset_before(path, offset, lines)
        if n < lines or lines >= 64 * window:
            return start, max(1, line - n)
        seen = 0
        for batch in _bounded(path, start, offset, max(1, line - n)):
            seen += sum(1 for r in batch if r.__class__ is Checkpoint)
        if seen >= window:
            return start, max(1, line - n)
        lines *= 4


def _bounded(path: Path, start: int, end: int, line: int) -> Iterator[list[Any]]:
    """The records of bytes ``[start, end)`` (whole lines), in the ordinary way."""
    for batch in read_from(path, start, line):
        if batch and batch[-1].offset >= end:
            yield [r for r in batch if r.offset < end]
            return
        yield batch


def _last_ts(batch: list[Any]) -> float | None:
    for record in reversed(batch):
        if record.__class__ is Checkpoint and record.timestamp is not None:
            return record.timestamp
    return None


@dataclass
class Reconstruction:
    incidents: list[Found]
    source: str  # "index", "scratch" or "tail" (only the feed's last bytes: max_scan)
    feed_error: str | None = None
    index_note: str | None = None


POINTS_COMPACT = 4096  # stored-digest points held before they are compacted (see _audit_points)


def _compact(points: list[tuple[float, str]]) -> list[tuple[float, str]]:
    """The points in time order with each run of one digest cut to its first and last point (what
    :func:`stored_epochs` reads from a run: where it begins, and where it still held)."""
    points.sort()
    out: list[tuple[float, str]] = []
    for i, point in enumerate(points):
        if out and out[-1][1] == point[1] and i + 1 < len(points) and points[i + 1][1] == point[1]:
            continue  # inside a run: neither its first nor its last point
        out.append(point)
    return out


def _audit_points(records: Iterable[AuditRecord]) -> list[tuple[float, str]]:
    """``(time, stored digest)`` points from a stream of audit records, in bounded memory: every
    alert record carries its stored digest (a 100 MB log holds hundreds of thousands), and only the
    changes matter, so the points are compacted whenever :data:`POINTS_COMPACT` accumulate."""
    points: list[tuple[float, str]] = []
    limit = POINTS_COMPACT
    for r in records:
        d = r.data
        if (r.event == "action_finished" and d.get("action") == "rehydrate" and d.get("outcome") == "ok"
                and isinstance(d.get("registry_digest"), str)):
            points.append((r.ts, d["registry_digest"]))
        elif r.event in ("alert_raised", "escalation") and isinstance(d.get("stored_digest"), str) \
                and d.get("code") in DRIFT_CODES:  # (a resolution names the drift's old stored digest)
            points.append((r.ts, d["stored_digest"]))
        else:
            continue
        if len(points) >= limit:
            points = _compact(points)
            limit = max(POINTS_COMPACT, 2 * len(points))  # a registry that really changed that often
    return points


def epochs_for(ws: Workspace, config: Config, keyed: Iterable[AuditRecord] | None = None) -> Epochs:
    """The stored registry's epochs from audit records (a stream; None: the audit log's own, read
    with :data:`EPOCHS` as needles)."""
    stored = StoredRegistry.for_workspace(ws, config.scheme)  # type: ignore[arg-type]
    try:
        current: str | None = stored.get().digest
        mtime: float | None = os.stat(ws.registry).st_mtime
    except (RegistryError, OSError):
        current, mtime = None, None
    records = iter_audit_with(ws, EPOCHS) if keyed is None else keyed
    return stored_epochs(_audit_points(records), current, mtime)


def reconstruct(ws: Workspace, config: Config, *, keyed: Iterable[AuditRecord] | None = None, use_index: bool = True,
                write_index: bool = True, now: float | None = None, epochs: Epochs | None = None,
                max_scan: int | None = None) -> Reconstruction:
    """Every incident of the feed, oldest first: from the index where it is consistent with the
    feed, else by replaying the whole feed (and then the index is written for next time).

    ``keyed``: audit records to take the stored registry's epochs from (default: the audit log,
    streamed). ``max_scan``: never replay more than that many bytes of feed (the escalation
    bundle): when the index does not cover all but the last ``max_scan`` bytes, only the last
    ``max_scan`` bytes are replayed (line numbers unknown) and ``index_note`` says so."""
    if epochs is None:
        epochs = epochs_for(ws, config, keyed)
    feed = config.feed.path
    index_path = idx.index_path(ws)
    note = None
    if use_index and index_path.exists():
        index = idx.read_index(index_path)
        view = idx.file_view(index, feed)
        try:
            size = os.stat(feed).st_size
        except OSError:
            size = -1
        if not view.known:
            note = "index is for another feed file"
        elif view.covered is None:
            note = "index does not cover the feed from its start"
        elif view.covered[0] > size:
            note = "index covers more than the feed holds"
        else:
            end, line, _stored, open_key = view.covered
            records = [r for r in view.incidents if r["offset"] < end]
            done = [Found(r["incident"], r.get("offset"), _index_events(index, r["incident"]), start_source="index")
                    for r in records
                    if r["incident"].get("resolved_at") is not None and r["incident"].get("start_in_history", True)]
            open_ones = [r for r in records if idx.incident_key(r["incident"]) == open_key]
            if open_key is not None and not open_ones:
                note = "index: the open incident's start offset is unknown"
            else:
                history = _earlier(view.others)
                start = open_ones[0]["offset"] if open_ones else end
                if max_scan is not None and size - start > max_scan:
                    note = f"the index covers the feed up to byte {start:,} of {size:,}"
                elif open_ones:
                    resume = Found(open_ones[0]["incident"], open_ones[0]["offset"])
                    begin, first_line = resume.offset, int(resume.view.get("started_line") or 1)
                    tail = replay(ws, config, **_warmed(feed, config, begin, first_line,  # type: ignore[arg-type]
                                                        resume.view.get("start_in_history", True)),
                                  epochs=epochs, now=now, resume=resume)
                    return Reconstruction(history + done + tail.incidents, "index", index_note=None)
                else:
                    tail = replay(ws, config, **_warmed(feed, config, end, line, True), epochs=epochs, now=now)
                    return Reconstruction(history + done + tail.incidents, "index", index_note=None)
    if max_scan is not None:
        bounded = _bounded_scan(ws, config, epochs, now, max_scan, note)
        if bounded is not None:
            return bounded
    try:
        result = replay(ws, config, epochs=epochs, now=now)
    except FileNotFoundError:
        return Reconstruction([], "scratch", f"{ws.relative(feed)}: feed not found", note)
    history = []
    if index_path.exists():
        history = _earlier(idx.file_view(idx.read_index(index_path), feed).others)
    if write_index and not config.ui.read_only:
        write_scratch_index(index_path, feed, result)
    return Reconstruction(history + result.incidents, "scratch", index_note=note)


def _warmed(feed: Path, config: Config, offset: int, line: int, in_history: bool) -> dict[str, Any]:
    """Where a replay continuing the index at ``offset`` begins: earlier, by the flap window, so
    that it decides flapping as the monitor that read everything did (not for an incident whose
    start lies before the history a monitor read, nor without flap detection)."""
    window = config.monitor.flap_window
    if not config.monitor.flap_threshold or not in_history or offset <= 0:
        return {"offset": offset, "line": line}
    try:
        start, first = warmup_start(feed, offset, line, window)
    except OSError:
        return {"offset": offset, "line": line}
    return {"offset": start, "line": first, "quiet_until": offset} if start < offset else {"offset": offset,
                                                                                          "line": line}


def _bounded_scan(ws: Workspace, config: Config, epochs: Epochs, now: float | None, max_scan: int,
                  why: str | None) -> Reconstruction | None:
    """The incidents of the feed's last ``max_scan`` bytes only (from the first line that starts in
    them; line numbers unknown), or None when the feed is no larger than that (replay it all)."""
    feed = config.feed.path
    try:
        fd, st = reader.open_regular(feed, what="feed")
    except (OSError, reader.UnreadableFile):
        return None  # the ordinary path says what is wrong
    size = st.st_size
    with open(fd, "rb") as handle:
        if size <= max_scan:
            return None
        start = _line_start_after(handle, size - max_scan, size)
    result = replay(ws, config, offset=start, line=None, epochs=epochs, now=now)
    amount = f"{max_scan // 1048576:,} MB" if max_scan % 1048576 == 0 else f"{max_scan:,} bytes"
    note = (f"only the last {amount} of the feed were read (bytes {start:,}–{size:,} of "
            f"{size:,}; line numbers unknown): {why or 'no incident index of this feed'}; "
            "`polylog-console report` reads all of it")
    return Reconstruction(result.incidents, "tail", index_note=note)


def _index_events(index: idx.Index, incident: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    events = sorted(index.events.get(idx.incident_key(incident), []), key=lambda e: idx.ORDER.get(e[0], 0))
    return [e for e in events if e[0] not in ("restarted", "latest")]


def _earlier(records: list[dict[str, Any]]) -> list[Found]:
    """Resolved incidents of feed files rotated away (their feed is gone; the index keeps them)."""
    out = [Found(r["incident"], None, start_source="index") for r in records
           if r["incident"].get("resolved_at") is not None]
    return sorted(out, key=lambda f: f.started_at)


def write_scratch_index(path: Path, feed: Path, result: ReplayResult) -> None:
    """What a whole replay found, as index records (coverage ``[0, end)``)."""
    identity = idx.feed_identity(feed)
    if identity is None:
        return
    ref = {k: identity[k] for k in ("dev", "ino", "head", "head_len")}
    records: list[dict[str, Any]] = []
    open_key = None
    for item in result.incidents:
        if item.resolved_at is None:
            open_key = item.key
        pictures = item.events or [("resolved" if item.resolved_at is not None else "opened", item.view)]
        for kind, picture in pictures:
            records.append({"kind": "incident", "event": kind, "feed": ref, "offset": item.offset,
                            "incident": {**picture, "started_at": item.view.get("started_at"),
                                         "started_label": item.view.get("started_label")}})
        records.append({"kind": "incident", "event": "latest", "feed": ref, "offset": item.offset,
                        "incident": item.view})
    stored = result.monitor.stored_digest
    records.append({"kind": "mark", "feed": ref, "from": 0, "to": result.end_offset, "line": result.end_line,
                    "stored_digest": stored, "open": open_key, "at": time.time()})
    idx.IndexFile(path).append(records)


# --- the report --------------------------------------------------------------------------------------------

@dataclass
class Alerted:
    code: str
    status: str
    raised_at: float
    dedup_key: str | None
    delivered: list[dict[str, Any]] = field(default_factory=list)
    failed: int = 0
    checkpoint: str | None = None  # the checkpoint it was raised for (its label)

    def to_json(self) -> dict[str, Any]:
        return {"code": self.code, "status": self.status, "raised_at": iso(self.raised_at),
                "dedup_key": self.dedup_key, "checkpoint": self.checkpoint, "delivered": self.delivered,
                "failed_attempts": self.failed}


@dataclass
class Report:
    """One incident with everything the audit log adds, and its derived times.

    **Times** (SPEC §13, one definition each): ``time_to_detect_s = observed_at − started_at``,
    ``time_to_acknowledge_s = acknowledged_at − started_at``, ``time_to_resolve_s = resolved_at −
    started_at`` (``resolved_at``: the first matching checkpoint's timestamp). None is negative: an
    observation before the checkpoint's own time means the engine's clock is ahead; the time is
    clamped at 0 and the skew reported (``clock_skew_s``). ``resolution_observed_at`` (when this host
    saw parity) is information beside them, never a second definition."""

    id: int
    found: Found
    observed_at: float | None = None
    observed_by: str | None = None  # "watch" (the audit/index), None: no monitor of this workspace saw it
    acknowledged_at: float | None = None
    acknowledged_by: str | None = None
    alerts: list[Alerted] = field(default_factory=list)
    actions: list[dict[str, Any]] = field(default_factory=list)
    acknowledgements: list[dict[str, Any]] = field(default_factory=list)
    silences: list[dict[str, Any]] = field(default_factory=list)
    refreshes: list[dict[str, Any]] = field(default_factory=list)
    escalations: list[dict[str, Any]] = field(default_factory=list)
    timeline: list[tuple[float, str, str, str]] = field(default_factory=list)  # (at, what, detail, clock)
    timeline_dropped: int = 0
    diff_at_start: dict[str, Any] | None = None  # counts as recorded (untrusted: the audit log's)
    diff_at_end: dict[str, Any] | None = None
    resolution_seen_at: float | None = None
    started_read_at: float | None = None  # an untimed start: when a monitor of this workspace read it
    seen: set[tuple[Any, ...]] = field(default_factory=set)  # alert records already listed (re-audits)
    duplicates: int = 0  # alert records left out as re-audits of one already listed
    beyond: int = 0  # audit records of this incident beyond the bounds (MAX_ALERTS, MAX_RECORDS...): counted only
    _open_actions: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def view(self) -> dict[str, Any]:
        return self.found.view

    @property
    def started_at(self) -> float:
        return self.started_read_at if self.started_read_at is not None else self.found.started_at

    @property
    def started_known(self) -> bool:
        """``started_at`` is a checkpoint's timestamp or a monitor's reading (not this report's clock)."""
        return not self.found.untimed_start or self.started_read_at is not None

    @property
    def resolved_at(self) -> float | None:
        return self.found.resolved_at

    @property
    def stored_digest(self) -> Any:
        """The stored digest the drift was against (its first picture), not a later one."""
        for _kind, picture in self.found.events:
            if isinstance(picture.get("stored_digest"), str):
                return picture["stored_digest"]
        return self.view.get("stored_digest")

    @property
    def clock_skew_s(self) -> float | None:
        """How far the engine's clock is ahead of this host's (the drift was observed before the
        checkpoint's own time), else None. Never from this report's own clock."""
        if self.started_known and self.observed_at is not None and self.observed_at < self.started_at:
            return round(self.started_at - self.observed_at, 3)
        return None

    @property
    def start_on_host(self) -> float:
        return self.started_at - (self.clock_skew_s or 0.0)

    def _since_start(self, ts: float | None) -> float | None:
        return None if ts is None or not self.started_known else round(max(0.0, ts - self.started_at), 3)

    @property
    def time_to_detect_s(self) -> float | None:
        return self._since_start(self.observed_at)

    @property
    def time_to_acknowledge_s(self) -> float | None:
        return self._since_start(self.acknowledged_at)

    @property
    def time_to_resolve_s(self) -> float | None:
        return self._since_start(self.resolved_at)

    def window(self) -> tuple[float, float]:
        """The incident's span on this host's clock (for placing audit records without a key)."""
        start = self.start_on_host if self.started_known else (self.observed_at or self.start_on_host)
        if self.observed_at is not None:
            start = min(start, self.observed_at)
        if self.resolved_at is None:
            return start, float("inf")
        end = self.resolved_at - (self.clock_skew_s or 0.0)
        if self.resolution_seen_at is not None:
            end = max(end, self.resolution_seen_at)
        return start, end + RESOLVE_GRACE

    def add(self, at: float, what: str, detail: str = "", clock: str = "host") -> None:
        if len(self.timeline) < MAX_TIMELINE:
            self.timeline.append((at, what, detail, clock))
        else:
            self.timeline_dropped += 1

    def order_timeline(self) -> None:
        """One order for entries of two clocks: an engine-clock entry (a checkpoint's time) is placed
        at that time corrected by the measured skew (``clock_skew_s``); each entry says its clock."""
        skew = self.clock_skew_s or 0.0
        rank = {"started": 0, "start found": 1, "resolved": 9}
        self.timeline.sort(key=lambda e: (e[0] - skew if e[3] == "engine" else e[0], rank.get(e[1], 5)))

    def to_json(self) -> dict[str, Any]:
        v = self.view
        stored = self.stored_digest
        return {
            "id": self.id,
            "state": "open" if self.resolved_at is None else "resolved",
            "started_at": iso(self.started_at),
            "started_label": v.get("started_label"),
            "started_line": v.get("started_line"),
            "start_in_history": v.get("start_in_history", True),
            "started_at_source": "monitor" if self.started_read_at is not None else self.found.start_source,
            "observed_at": _iso(self.observed_at),
            "observed_by": self.observed_by,
            "acknowledged_at": _iso(self.acknowledged_at),
            "acknowledged_by": self.acknowledged_by,
            "resolved_at": _iso(self.resolved_at),
            "resolved_label": v.get("resolved_label"),
            "time_to_detect_s": self.time_to_detect_s,
            "time_to_acknowledge_s": self.time_to_acknowledge_s,
            "time_to_resolve_s": self.time_to_resolve_s,
            "resolution_observed_at": _iso(self.resolution_seen_at),
            "clock_skew_s": self.clock_skew_s,
            "consecutive_mismatches": v.get("consecutive_mismatches"),
            "mismatching_checkpoints": v.get("mismatching_checkpoints"),
            "flapping": bool(v.get("flapping")),
            "flapped": bool(v.get("flapped")),
            "flap_drifts": v.get("flap_drifts") or 0,
            "matching_checkpoints": v.get("matching_checkpoints") or 0,
            "escalated": bool(v.get("escalated")) or bool(self.escalations),
            "stored_digest": stored,
            "stored_digest_at_end": v.get("stored_digest") if v.get("stored_digest") != stored else None,
            "live_digests": list(v.get("live_digests") or []),
            "diff_at_start": self.diff_at_start,
            "diff_at_end": self.diff_at_end,
            "alerts": [a.to_json() for a in self.alerts],
            "alert_records_repeated": self.duplicates,
            "acknowledgements": self.acknowledgements,
            "silences": self.silences,
            "actions": self.actions,
            "refreshes": self.refreshes,
            "escalations": self.escalations,
            "timeline": [{"at": iso(at), "what": what, "detail": detail, "clock": clock}
                         for at, what, detail, clock in self.timeline],
            "timeline_dropped": self.timeline_dropped,
            "audit_records_beyond_bounds": self.beyond,
        }

    def keep(self, into: list[dict[str, Any]], entry: dict[str, Any]) -> None:
        """Append ``entry`` unless :data:`MAX_RECORDS` are kept already (then it is counted)."""
        if len(into) < MAX_RECORDS:
            into.append(entry)
        else:
            self.beyond += 1


def _keys_of(view: dict[str, Any]) -> set[str]:
    stored = view.get("stored_digest")
    return {ev.dedup_key(stored, live) for live in view.get("live_digests") or [] if isinstance(stored, str)}


def _short(value: Any, n: int = 12) -> str:
    return value[:n] if isinstance(value, str) else "—"


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


class Attributor:
    """Which incident an audit record belongs to (by index into the incidents found). A drift
    (stored, live) can recur in several incidents, so its ``dedup_key`` only narrows the
    candidates (the incidents that had that drift; all of them when none did: a superseded drift);
    among them, the first rule that applies decides:

    1. the record's checkpoint time (``checkpoint_ts``, engine clock) lies in the incident's span
       ``[started_at, resolved_at]`` (spans of successive incidents do not overlap);
    2. its checkpoint ``label`` is one the incident's pictures name (start, latest, resolution);
    3. the incident named by the latest ``incident_*`` record of the same actor before it (the
       monitor audits ``incident_opened`` before its alerts, ``incident_resolved`` after them);
    4. (the caller) the incident whose span on this host's clock holds the record's time.

    A delivery belongs to the incident of the latest alert record it delivers (same code, status
    and dedup key). An acknowledgement, silence or refresh naming a drift goes to the candidate
    whose host-clock span holds it, else to the latest candidate observed before it."""

    def __init__(self, found: list[Found]) -> None:
        self.found = found
        self.ident: dict[str, int] = {}
        self.starts: dict[tuple[Any, Any], int] = {}  # (started_label, started_line) -> incident
        self.by_label: dict[str, list[int]] = {}
        self.by_key: dict[str, list[int]] = {}
        self.context: dict[str | None, int | None] = {}
        self.alert_of: dict[tuple[Any, Any, Any], int] = {}
        self.start_times = [f.started_at for f in found]
        self.ordered = all(a <= b for a, b in pairwise(self.start_times))
        self._sets: dict[str, set[int]] = {}
        for i, f in enumerate(found):
            self.ident.setdefault(f.key, i)
            self.starts.setdefault((f.view.get("started_label"), f.view.get("started_line")), i)
            labels: set[str] = set()
            keys: set[str] = set()
            for picture in [f.view, *(p for _, p in f.events)]:
                for name in ("started_label", "last_label", "resolved_label"):
                    if isinstance(picture.get(name), str):
                        labels.add(picture[name])
                keys |= _keys_of(picture)
            for label in labels:
                self.by_label.setdefault(label, []).append(i)
            for key in keys:
                self.by_key.setdefault(key, []).append(i)

    def incident_record(self, r: AuditRecord) -> int | None:
        """An ``incident_*`` record: its incident (by key, else by start label and line), which
        becomes the actor's context."""
        d = r.data
        i = self.ident.get(idx.incident_key(d))
        if i is None:
            i = self.starts.get((d.get("started_label"), d.get("started_line")))
        self.context[r.actor] = None if r.event == "incident_resolved" else i
        return i

    def _candidates(self, key: Any) -> list[int]:
        return self.by_key.get(key, []) if isinstance(key, str) else []

    def _in_span(self, ts: float, cands: set[int] | None) -> list[int]:
        """The candidates whose span ``[started_at, resolved_at]`` holds ``ts`` (a bisection when the
        incidents are in time order, as a feed's are)."""
        found = self.found
        if self.ordered:
            j = bisect_right(self.start_times, ts) - 1
            pool: Any = range(max(0, j - 1), j + 1)
        else:
            pool = range(len(found))
        return [i for i in pool if (cands is None or i in cands) and found[i].started_at <= ts
                <= (found[i].resolved_at if found[i].resolved_at is not None else float("inf"))]

    def drift_alert(self, r: AuditRecord) -> int | None:
        d = r.data
        key = d.get("dedup_key")
        cands: set[int] | None = None
        if isinstance(key, str) and key in self.by_key:
            cands = self._sets.get(key)
            if cands is None:
                cands = self._sets[key] = set(self.by_key[key])
        ctx = self.context.get(r.actor)
        ts = _number(d.get("checkpoint_ts"))
        hits: list[int] = self._in_span(ts, cands) if ts is not None else []
        label = d.get("checkpoint")
        if len(hits) != 1 and isinstance(label, str):
            named = [i for i in self.by_label.get(label, ()) if (cands is None or i in cands)
                     and (not hits or i in hits)]
            hits = named or hits
        if not hits and ctx is not None and (cands is None or ctx in cands):
            hits = [ctx]
        if not hits:
            return None
        i = ctx if ctx in hits else hits[0]
        self.alert_of[(d.get("code"), d.get("status"), d.get("dedup_key"))] = i  # type: ignore[index]
        return i

    def delivery(self, r: AuditRecord) -> int | None:
        d = r.data
        i = self.alert_of.get((d.get("code"), d.get("status"), d.get("dedup_key")))
        if i is None:
            cands = self._candidates(d.get("dedup_key"))
            i = cands[0] if len(cands) == 1 else None
        return i

    def keyed_other(self, key: Any, ts: float, reports: dict[int, Report]) -> int | None:
        cands = self._candidates(key)
        if not cands:
            return None
        for i in cands:
            rep = reports.get(i)
            lo, hi = rep.window() if rep is not None else (self.found[i].started_at, self.found[i].resolved_at or 0)
            if lo - RESOLVE_GRACE <= ts <= hi:
                return i
        before = [i for i in cands if (reports[i].window()[0] if i in reports else self.found[i].started_at) <= ts]
        return before[-1] if before else None


def _matcher_key(d: dict[str, Any]) -> Any:
    if isinstance(d.get("dedup_key"), str):
        return d["dedup_key"]
    matchers = d.get("matchers")
    if isinstance(matchers, dict):  # the ack command: {"workspace": ..., "dedup_key": ...}
        return matchers.get("dedup_key")
    if isinstance(matchers, list):  # Alertmanager's shape
        for m in matchers:
            if isinstance(m, dict) and m.get("name") == "dedup_key":
                return m.get("value")
    return None


def build_reports(found: list[Found], keyed: Iterable[AuditRecord], ws: Workspace | None = None,
                  selected: list[int] | None = None) -> list[Report]:
    """Merge the audit log into the incidents (``selected``: only those, by index). Every record is
    attributed among *all* the incidents (:class:`Attributor`), then kept when its incident is one
    of those selected; the records without a key (actions written before incidents existed) are
    placed by time, read from ``ws``'s audit log for the incidents' time windows only. An alert
    record already listed for the same incident (code, status, checkpoint) is a re-audit (every
    ``watch --once`` run audits what it finds again): left out, counted.

    ``keyed`` is read once, as a stream (``iter_audit_with``): what is kept is bounded per incident
    (alerts, deliveries, actions, acknowledgements, timeline entries; the rest counted in
    ``audit_records_beyond_bounds``) and the records held for the second pass are at most
    :data:`MAX_DEFERRED` (beyond: counted on every report), so a 100 MB audit log costs a scan, not
    its size in memory."""
    chosen = list(range(len(found))) if selected is None else list(selected)
    reports = {i: Report(i + 1, found[i], diff_at_end=found[i].diff_at_end) for i in chosen}
    everyone = {i: reports.get(i) or Report(i + 1, found[i]) for i in range(len(found))}  # for attribution
    attr = Attributor(found)
    i: int | None
    for i, rep in everyone.items():
        rep.diff_at_start = rep.view.get("diff_at_start")
        if i not in reports:
            continue
        for kind, picture in rep.found.events:
            _incident_entry(rep, kind, picture)
        if not rep.found.events:  # from the index: its latest picture
            _incident_entry(rep, "opened", rep.view)
            if rep.resolved_at is not None:
                _incident_entry(rep, "resolved", rep.view)
    order = sorted(everyone)
    starts = [everyone[i].start_on_host for i in order]

    def by_time(ts: float) -> int | None:
        j0 = bisect_right(starts, ts) - 1
        for j in (j0, j0 + 1):  # the observation may precede the start (clock skew)
            if 0 <= j < len(order):
                lo, hi = everyone[order[j]].window()
                if lo - RESOLVE_GRACE <= ts <= hi:
                    return order[j]
        return None

    deferred: list[AuditRecord] = []
    overflow = 0

    def defer(r: AuditRecord) -> None:
        nonlocal overflow
        if len(deferred) < MAX_DEFERRED:
            deferred.append(r)
        else:
            overflow += 1

    for r in keyed:  # pass 1: what names its incident (incident records, drift alerts, their deliveries)
        name, d = r.event, r.data
        if name in INCIDENT_RECORDS:
            i = attr.incident_record(r)
            if i is not None:
                _incident_record(everyone[i], r)
        elif name in ("alert_raised", "escalation", "alert_resolved") and d.get("code") in DRIFT_CODES:
            i = attr.drift_alert(r)
            if i is None:
                defer(r)
            else:
                _keyed_entry(everyone[i], r)
        elif name in ("alert_delivered", "alert_failed", "alert_retry"):
            i = attr.delivery(r)
            if i is None:
                defer(r)
            else:
                _keyed_entry(everyone[i], r)
        else:
            defer(r)
    for r in deferred:  # pass 2: by the drift's key and this host's time
        name, d = r.event, r.data
        if name in ("alert_raised", "escalation", "alert_resolved"):
            if d.get("code") not in DRIFT_CODES:
                continue
            i = by_time(r.ts)  # written before alert records named their checkpoint's time
            if i is not None:
                attr.alert_of[(d.get("code"), d.get("status"), d.get("dedup_key"))] = i
        elif name in ("alert_delivered", "alert_failed", "alert_retry"):
            i = attr.delivery(r)
            if i is None and d.get("code") in DRIFT_CODES:
                i = by_time(r.ts)
        elif name in ("acknowledged", "silence_created", "silence_expired") or name.startswith(("refresh_", "action_")):
            i = attr.keyed_other(_matcher_key(d), r.ts, everyone)
            if i is None and name in ("acknowledged", "silence_created", "silence_expired"):
                i = by_time(r.ts)
        else:
            continue
        if i is not None:
            _keyed_entry(everyone[i], r)
    out = [reports[i] for i in chosen]
    for rep in out:
        rep.beyond += overflow
        if rep.observed_at is None and rep.view.get("observed_by") != "replay":
            # no alert record, but the picture a running monitor wrote into the index says when
            rep.observed_at, rep.observed_by = parse_time(rep.view.get("observed_at")), "watch (index)"
        seen = rep.resolution_seen_at
        if seen is not None and rep.resolved_at is not None:  # parity as seen here, in time order
            rep.timeline = [(seen, what, f"{detail} (checkpoint time {iso(rep.resolved_at)}, seen here at "
                                         f"{iso(seen)})", "host") if what == "resolved" else (at, what, detail, clock)
                            for at, what, detail, clock in rep.timeline]
        if rep.found.untimed_start:
            rep.timeline = [(rep.started_at, what, detail, "host") if what == "started" else (at, what, detail, clock)
                            for at, what, detail, clock in rep.timeline]
        rep.order_timeline()
    spans = sorted((lo - RESOLVE_GRACE, hi) for lo, hi in (rep.window() for rep in everyone.values()))
    merged: list[tuple[float, float]] = []
    for lo, hi in spans:
        if merged and lo <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(hi, merged[-1][1]))
        else:
            merged.append((lo, hi))
    unkeyed = iter_audit_during(ws, merged, _unkeyed) if ws is not None else iter(())
    for r in unkeyed:
        i = by_time(r.ts)
        if i is not None and i in reports:
            _unkeyed_entry(reports[i], r)
    for rep in out:
        for pending in rep._open_actions.values():
            if len(rep.actions) < MAX_ACTIONS:
                rep.actions.append(pending)
        rep.actions.sort(key=lambda a: a.get("started_at") or "")
        rep.order_timeline()
    return out


def _incident_record(rep: Report, r: AuditRecord) -> None:
    """An ``incident_*`` record of a monitor of this workspace: when it observed the incident and,
    for a start without a timestamp, when it read that checkpoint."""
    d = r.data
    observed = parse_time(d.get("observed_at"))
    if observed is not None and (rep.observed_at is None or observed < rep.observed_at):
        rep.observed_at, rep.observed_by = observed, "watch"
    if rep.found.untimed_start and r.event in ("incident_opened", "incident_restarted"):
        read = parse_time(d.get("started_at"))
        if read is not None and (rep.started_read_at is None or read < rep.started_read_at):
            rep.started_read_at = read


def _incident_entry(rep: Report, kind: str, p: dict[str, Any]) -> None:
    if kind == "opened":
        live = _short((p.get("live_digests") or [None])[0])
        rep.add(rep.started_at, "started", f"checkpoint {p.get('started_label')} (line {p.get('started_line')}): "
                f"live {live} differs from stored {_short(p.get('stored_digest'))}", "engine")
        if p.get("flapping"):
            rep.add(rep.started_at, "flapping", "too many incidents within the flap window: held open until "
                    "flap_settle consecutive checkpoints agree; drifts in between are counted, not alerted", "engine")
    elif kind == "restarted":
        rep.add(rep.started_at, "start found", f"the drift began earlier, at {p.get('started_label')}", "engine")
    elif kind == "escalated":
        at = parse_time(p.get("last_at")) or rep.started_at
        raw_notes = p.get("notes")
        notes: list[Any] = raw_notes if isinstance(raw_notes, list) else []
        why = next((n.get("detail") for n in reversed(notes) if isinstance(n, dict) and n.get("what") == "escalated"),
                   None)
        if isinstance(why, str) and why.startswith("flapping"):  # (its own reason: not a count)
            rep.add(at, "escalated", f"at {p.get('last_label')}: {why}", "engine")
        else:
            rep.add(at, "escalated", f"at {p.get('last_label')}: {p.get('consecutive_mismatches')} consecutive "
                                     "mismatching checkpoints", "engine")
    elif kind == "resolved":
        ts = parse_time(p.get("resolved_at"))
        if ts is not None:
            flapped = (f" (parity held after flapping: {p.get('flap_drifts')} drifts, "
                       f"{p.get('matching_checkpoints')} matching checkpoints)") if p.get("flapped") else ""
            rep.add(ts, "resolved", f"checkpoint {p.get('resolved_label')} matches the stored registry again"
                    f"{flapped}", "engine")


def _keyed_entry(rep: Report, r: AuditRecord) -> None:
    d, ev_name = r.data, r.event
    code = d.get("code")
    if ev_name in ("alert_raised", "escalation") or (ev_name == "alert_resolved" and code in DRIFT_CODES):
        status = "resolved" if ev_name == "alert_resolved" else "firing"
        identity = (code, status, d.get("checkpoint"), _number(d.get("checkpoint_ts")), d.get("dedup_key"))
        if identity in rep.seen:  # audited again by a later run (watch --once re-reads the feed)
            rep.duplicates += 1
            return
        if len(rep.seen) < MAX_SEEN:
            rep.seen.add(identity)
        if status == "firing" and (rep.observed_at is None or r.ts < rep.observed_at):
            rep.observed_at, rep.observed_by = r.ts, "watch"
        if status == "resolved" and d.get("reason") != "superseded":
            rep.resolution_seen_at = min(rep.resolution_seen_at or r.ts, r.ts)
        if len(rep.alerts) < MAX_ALERTS:
            label = d.get("checkpoint")
            rep.alerts.append(Alerted(str(code), status, r.ts, d.get("dedup_key"),
                                      checkpoint=label if isinstance(label, str) else None))
        else:
            rep.beyond += 1
        diff = d.get("diff")
        if isinstance(diff, dict):
            counts = {k: diff.get(k) for k in ("missing", "unexpected", "mismatched")}
            if rep.diff_at_start is None:
                rep.diff_at_start = counts
            if rep.resolved_at is not None or rep.diff_at_end is None:
                rep.diff_at_end = counts
        if ev_name == "escalation":
            rep.keep(rep.escalations, {"at": iso(r.ts), "reason": d.get("summary"), "actor": r.actor})
        rep.add(r.ts, "alert " + ("escalated" if ev_name == "escalation" else status),
                f"{code}: {d.get('summary') or ''}")
    elif ev_name in ("alert_delivered", "alert_failed", "alert_retry"):
        target = None
        for alert in reversed(rep.alerts):
            if alert.code == code and alert.status == d.get("status") and alert.dedup_key == d.get("dedup_key"):
                target = alert
                break
        if ev_name == "alert_delivered":
            latency = d.get("latency_ms")
            entry = {"sink": d.get("sink"), "at": iso(r.ts),
                     "latency_ms": latency if isinstance(latency, int | float) else None,
                     "after_raised_s": round(r.ts - target.raised_at, 3) if target is not None else None}
            if target is not None and len(target.delivered) < MAX_DELIVERIES:
                target.delivered.append(entry)
            after = entry["after_raised_s"]
            rep.add(r.ts, "delivered", f"{code} {d.get('status')} to {d.get('sink')}"
                    + (f" ({after:.3f}s after raised)" if after is not None else ""))
        else:
            if target is not None:
                target.failed += 1
            rep.add(r.ts, "delivery " + ("failed" if ev_name == "alert_failed" else "retry"),
                    f"{code} to {d.get('sink')}: {d.get('error') or ''}")
    elif ev_name == "acknowledged":
        silence = d.get("silence_id")
        via = "alertmanager silence" if silence else ("ack command" if "matchers" in d else "console")
        entry = {"at": iso(r.ts), "by": r.actor, "code": code, "via": via, "silence_id": silence,
                 "until": d.get("until"), "comment": d.get("comment")}
        rep.keep(rep.acknowledgements, entry)
        if silence:
            rep.keep(rep.silences, {"at": iso(r.ts), "event": "silence_created", "by": r.actor,
                                    "silence_id": silence, "ends_at": d.get("until"), "comment": d.get("comment")})
        if rep.acknowledged_at is None:
            rep.acknowledged_at, rep.acknowledged_by = r.ts, r.actor
        rep.add(r.ts, "acknowledged", f"{code or 'drift'} by {r.actor} ({via})")
    elif ev_name in ("silence_created", "silence_expired"):
        entry = {"at": iso(r.ts), "event": ev_name, "by": r.actor, "silence_id": d.get("silence_id"),
                 "ends_at": d.get("ends_at"), "comment": d.get("comment")}
        rep.keep(rep.silences, entry)
        if ev_name == "silence_created":
            rep.keep(rep.acknowledgements, {"at": iso(r.ts), "by": r.actor, "code": code,
                                            "via": "alertmanager silence"})
            if rep.acknowledged_at is None:
                rep.acknowledged_at, rep.acknowledged_by = r.ts, r.actor
        rep.add(r.ts, "silence " + ev_name.split("_")[1], f"{d.get('silence_id')} by {r.actor}")
    elif ev_name.startswith(("refresh_", "action_")):
        _unkeyed_entry(rep, r)


def _unkeyed_entry(rep: Report, r: AuditRecord) -> None:
    d, name = r.data, r.event
    if name.startswith("refresh_"):
        rep.keep(rep.refreshes, {"at": iso(r.ts), "phase": name[len("refresh_"):], "outcome": d.get("outcome"),
                                 "error": d.get("error")})
        rep.add(r.ts, "auto-refresh " + name[len("refresh_"):], str(d.get("outcome") or d.get("error") or ""))
        return
    if not name.startswith("action_"):
        return
    action = d.get("action")
    if not isinstance(action, str) or action == "acknowledge":
        return
    phase = name[len("action_"):]
    key = f"{action}|{r.actor}"
    if phase == "started":
        if key in rep._open_actions and len(rep.actions) < MAX_ACTIONS:
            rep.actions.append(rep._open_actions.pop(key))
        rep._open_actions[key] = {"action": action, "actor": r.actor, "started_at": iso(r.ts), "finished_at": None,
                                  "duration_s": None, "outcome": None, "message": None}
        rep.add(r.ts, f"{action} started", f"by {r.actor}")
        return
    entry = rep._open_actions.pop(key, None)
    if entry is None:
        entry = {"action": action, "actor": r.actor, "started_at": None, "finished_at": None, "duration_s": None,
                 "outcome": None, "message": None}
    entry["finished_at"] = iso(r.ts)
    outcome = d.get("outcome") or {"finished": "ok", "failed": "error", "cancelled": "cancelled"}.get(phase)
    entry["outcome"] = outcome
    if isinstance(d.get("message"), str):
        entry["message"] = d["message"][:300]
    started = parse_time(entry["started_at"])
    duration = d.get("duration")
    entry["duration_s"] = (round(float(duration), 3) if isinstance(duration, int | float)
                           else round(r.ts - started, 3) if started is not None else None)
    if len(rep.actions) < MAX_ACTIONS:
        rep.actions.append(entry)
    else:
        rep.beyond += 1
    rep.add(r.ts, f"{action} {phase}", f"{outcome}" + (f" in {entry['duration_s']}s" if entry["duration_s"] is not None
                                                      else "") + f" by {r.actor}")


@dataclass
class ReportSet:
    reports: list[Report]
    source: str
    generated_at: float
    feed_error: str | None = None
    index_note: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"incidents": [r.to_json() for r in self.reports], "generated_at": iso(self.generated_at),
                "source": self.source, "feed_error": self.feed_error}

    @property
    def any_open(self) -> bool:
        return any(r.resolved_at is None for r in self.reports)


def build_report(ws: Workspace, config: Config, *, incident: str | None = None, since: float | None = None,
                 use_index: bool = True, write_index: bool = True, now: float | None = None,
                 max_scan: int | None = None) -> ReportSet:
    """The incidents asked for (``latest``, an id, or ``all``; ``since``: those active at or after
    that time; no ``incident``: all of those since ``since``, else the latest), oldest first, with the
    audit log merged in (streamed: memory is bounded by the incidents, not by the log).
    ``max_scan``: replay at most that many bytes of feed (see :func:`reconstruct`)."""
    now = time.time() if now is None else now
    if incident is None:
        incident = "all" if since is not None else "latest"
    rec = reconstruct(ws, config, use_index=use_index, write_index=write_index, now=now, max_scan=max_scan)
    found = rec.incidents
    selected = list(range(len(found)))
    if since is not None:
        selected = [i for i in selected if (found[i].resolved_at or float("inf")) >= since]
    if incident == "latest":
        selected = selected[-1:]
    elif incident != "all":
        try:
            wanted = int(incident)
        except ValueError:
            raise PolylogError(f"--incident {incident!r}: expected latest, all or an incident number") from None
        if not 1 <= wanted <= len(found):
            raise PolylogError(f"--incident {wanted}: no such incident (the feed holds {len(found)})")
        selected = [wanted - 1]
    chosen = build_reports(found, iter_audit_with(ws, KEYED), ws, selected)
    return ReportSet(chosen, rec.source, now, rec.feed_error, rec.index_note)


# --- Markdown ------------------------------------------------------------------------------------------

def _dur(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    if seconds < 120:
        return f"{seconds:.3f} s"
    minutes, sec = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m{sec:02d}s" if hours else f"{minutes}m{sec:02d}s"


def render_markdown(rs: ReportSet, ws: Workspace, config: Config) -> str:
    from polylog_console.core.runbook.markdown import code, mask_secrets, secret_values

    parts = ["# Post-incident report: registry drift",
             f"Generated {code(iso(rs.generated_at))} for workspace {code(ws.root, 300)} "
             f"(incidents {'from the incident index' if rs.source == 'index' else 'reconstructed from the feed'}"
             " and the audit log)."]
    if rs.feed_error:
        parts.append(f"_Feed unavailable:_ {code(rs.feed_error, 300)}")
    if not rs.reports:
        parts.append("No incident: every checkpoint of the feed matched the stored registry of its moment.")
    for rep in rs.reports:
        parts.extend(incident_markdown(rep))
    return mask_secrets("\n\n".join(parts) + "\n", secret_values(config))


def incident_markdown(rep: Report) -> list[str]:
    from polylog_console.core.runbook.markdown import _table, code, fence

    v = rep.view
    state = "**OPEN**" if rep.resolved_at is None else "resolved"
    out = [f"## Incident {rep.id}: {state}"]
    rows = [
        ["started", f"{code(iso(rep.started_at))} at {code(v.get('started_label'), 80, table=True)} "
                    f"(line {v.get('started_line')})"
         + ("" if v.get("start_in_history", True) else " — the loaded history began in this drift")],
        ["observed", code(_iso(rep.observed_at)) + ("" if rep.observed_at is not None
                                                     else " (no monitor of this workspace recorded it)")],
        ["acknowledged", f"{code(_iso(rep.acknowledged_at))}" + (f" by {code(rep.acknowledged_by, 120, table=True)}"
                                                                if rep.acknowledged_by else "")],
        ["resolved", "still open" if rep.resolved_at is None else
         f"{code(iso(rep.resolved_at))} at {code(v.get('resolved_label'), 80, table=True)}"],
        ["time to detect", _dur(rep.time_to_detect_s)],
        ["time to acknowledge", _dur(rep.time_to_acknowledge_s)],
        ["time to resolve", _dur(rep.time_to_resolve_s) if rep.resolved_at is not None else "— (open)"],
        ["consecutive mismatches", str(v.get("consecutive_mismatches"))],
        *([["flapping", f"{'flapping now' if v.get('flapping') else 'flapped'}: {v.get('flap_drifts')} drifts, "
                        f"{v.get('mismatching_checkpoints')} mismatching and {v.get('matching_checkpoints')} matching "
                        "checkpoints (one incident: held open until flap_settle checkpoints agreed)"]]
          if v.get("flapped") else []),
        ["stored digest", code(rep.stored_digest, 80, table=True)
         + (f" (later {code(v.get('stored_digest'), 80, table=True)})"
            if v.get("stored_digest") != rep.stored_digest else "")],
        ["live digests", ", ".join(code(d, 80, table=True) for d in v.get("live_digests") or []) or "—"],
    ]
    if rep.started_read_at is not None or rep.found.start_source == "replay":
        rows.append(["start time", "its checkpoint has no timestamp: " + (
            "when this workspace's monitor read it" if rep.started_read_at is not None else
            "when this report read it (no monitor of this workspace recorded it; no times derived)")])
    if rep.duplicates:
        rows.append(["re-audited", f"{rep.duplicates} alert records of a later run left out (listed once)"])
    if rep.clock_skew_s is not None:
        rows.append(["clock skew", f"the engine's clock is {rep.clock_skew_s:.3f} s ahead of this host "
                                   "(the time to detect is clamped at 0)"])
    out.append(_table(["", ""], rows))
    out.append("### Diff summary")

    def counts(d: dict[str, int] | None) -> str:
        if not d:
            return "no symbol diff (no checkpoint state, or the stored registry of that moment is not kept)"
        return f"missing {d.get('missing')}, unexpected {d.get('unexpected')}, mismatched {d.get('mismatched')}"

    out.append(f"- at the start: {counts(rep.diff_at_start)}\n- at the end: {counts(rep.diff_at_end)}")
    out.append("### Timeline")
    if rep.timeline:
        out.append("Each entry says its clock: `engine` (a checkpoint's own timestamp) or `host` (this host's "
                   "audit log); engine times are ordered as corrected by the measured clock skew.")
        out.append(_table(["at (UTC)", "clock", "what", "detail"],
                          [[code(iso(at)), clock, code(what, 60, table=True), code(detail, 300, table=True)]
                           for at, what, detail, clock in rep.timeline]))
        if rep.timeline_dropped:
            out.append(f"… {rep.timeline_dropped:,} more entries not shown.")
    if rep.beyond:
        out.append(f"{rep.beyond:,} more audit records of this incident (beyond the report's bounds) are counted, "
                   "not listed.")
    out.append("### Alerts")
    if rep.alerts:
        rows = []
        for a in rep.alerts:
            sinks = ", ".join(f"{d['sink']} at {d['at']}" + (f" ({d['after_raised_s']:.3f} s)"
                                                             if d.get("after_raised_s") is not None else "")
                              for d in a.delivered) or "not delivered"
            rows.append([code(a.code, 40, table=True), a.status, code(iso(a.raised_at)), code(sinks, 600, table=True)])
        out.append(_table(["code", "status", "raised", "delivered"], rows))
    else:
        out.append("No alert recorded in the audit log for this incident.")
    out.append("### Actions")
    if rep.actions:
        out.append(_table(["action", "actor", "started", "finished", "duration", "outcome"],
                          [[code(a["action"], 40, table=True), code(a["actor"], 120, table=True),
                            code(a["started_at"]), code(a["finished_at"]), _dur(a["duration_s"]),
                            code(a["outcome"], 40, table=True)] for a in rep.actions]))
        messages = [f"{a['action']}: {a['message']}" for a in rep.actions if a.get("message")]
        if messages:
            out.append(fence(messages, "text"))
    else:
        out.append("No action recorded during this incident.")
    return out


def report_name(now: float, ext: str) -> Callable[[int], str]:
    """``report-<UTC second>.<ext>``, then ``report-<UTC second>-2.<ext>``... (see :func:`write_report`)."""
    stamp = datetime.fromtimestamp(now, tz=UTC).strftime("%Y%m%dT%H%M%SZ")
    return lambda n: f"report-{stamp}.{ext}" if n == 1 else f"report-{stamp}-{n}.{ext}"


def write_report(ws: Workspace, text: str, now: float, ext: str, retention: Any = None) -> Path:
    """Write the report into ``memory/reports/`` under a name no other process has taken (two
    reports in the same second get ``-2``...: :func:`~polylog_console.core.infra.atomic.write_new`
    publishes with an exclusive link, never overwriting), then apply ``[retention]`` (never
    deleting the newest; core/infra/retention.py). Raises OSError."""
    from polylog_console.core.infra.retention import prune_kind
    from polylog_console.core.model.config import RetentionConfig

    directory = ws.path(REPORTS)
    directory.mkdir(parents=True, exist_ok=True)
    path = atomic.write_new(directory, report_name(now, ext), text.encode("utf-8"))
    prune_kind(ws, "reports", retention or RetentionConfig())
    return path


# --- the timeline so far, for the escalation bundle ------------------------------------------------------

TIMELINE_SCAN = 32 * 1024 * 1024  # bytes of feed the bundle replays at most when the index does not cover the rest


def timeline_markdown(ws: Workspace, config: Config, now: float | None = None, *,
                      max_scan: int = TIMELINE_SCAN) -> str:
    """The latest incident's timeline so far (the escalation bundle's section): from the incident
    index when it is consistent with the feed (only the feed after its coverage is replayed), else
    from the last ``max_scan`` bytes of the feed, saying so: never a replay of a whole feed of
    unbounded size inside ``bundle``."""
    rs = build_report(ws, config, incident="latest", write_index=False, now=now, max_scan=max_scan)
    parts: list[str] = []
    if rs.source == "tail" and rs.index_note:
        parts.append(f"_Bounded timeline:_ {rs.index_note}.")  # our own words and numbers only
    if not rs.reports:
        parts.append("No incident in the feed." if rs.source != "tail" else "No incident in the part of the feed read.")
    else:
        parts.extend(incident_markdown(rs.reports[-1])[1:])
    return "\n\n".join(parts)


# --- the console's timeline and replay -----------------------------------------------------------------

STRIP = 120  # checkpoints read per page of the timeline's strip

STRIP_CHARS = {True: "=", False: "x", None: "?"}


@dataclass(frozen=True, slots=True)
class Cell:
    """One checkpoint of the strip, compared with the stored registry of its moment."""

    label: str
    line: int | None
    offset: int
    timestamp: float | None
    match: bool | None
    scheme_mismatch: bool
    status: str
    consecutive: int
    has_state: bool

    @property
    def char(self) -> str:
        """Readable without colour: ``=`` match, ``x`` drift, ``~`` scheme mismatch, ``?`` not compared."""
        return "~" if self.scheme_mismatch else STRIP_CHARS[self.match]


def _cells(events: list[Any], into: list[Cell]) -> None:
    for e in events:
        if getattr(e, "event", None) == "checkpoint":
            cp = e.checkpoint
            if into and into[-1].offset == cp.offset:
                continue  # compared again (the stored registry changed): the strip keeps how it arrived
            into.append(Cell(cp.display_label, cp.line, cp.offset, cp.timestamp, e.registry_match, e.scheme_mismatch,
                             str(e.status), e.consecutive_mismatches, cp.has_state))


def strip_from(ws: Workspace, config: Config, offset: int, line: int | None, count: int = STRIP, *,
               epochs: Epochs | None = None, stop_before: int | None = None) -> list[Cell]:
    """Up to ``count`` checkpoints from ``offset`` (not past ``stop_before``), each compared with the
    stored registry of its moment (the same replay as the report)."""
    cells: list[Cell] = []
    stop = None if stop_before is None else max(offset, stop_before - 1)
    if stop_before is not None and stop_before <= offset:
        return cells
    replay(ws, config, offset=offset, line=line, epochs=epochs, max_checkpoints=count, stop_offset=stop,
           emit_checkpoints=True, on_events=lambda events: _cells(events, cells))
    if stop_before is not None:
        cells = [c for c in cells if c.offset < stop_before]
    return cells


def offset_before(path: Path, offset: int, lines: int) -> tuple[int, int]:
    """``(start, n)``: the offset of the line ``n`` lines before the one at ``offset`` (``n`` =
    ``lines``, fewer at the start of the file), read backwards with the follower's
    :class:`~polylog_console.core.feed.follower.BackScanner`."""
    from polylog_console.core.feed.follower import BackScanner

    if offset <= 0:
        return 0, 0
    with open(path, "rb") as handle:
        scanner = BackScanner(handle.fileno(), offset + 1)  # the line at ``offset`` begins after a newline
        seen = 0
        start = offset
        for region_offset, region in scanner:
            pos = region_offset
            starts = []
            for item in region:
                starts.append(pos)
                pos += (item if isinstance(item, int) else len(item)) + 1
            for begin in reversed(starts):
                if begin >= offset:
                    continue
                seen += 1
                start = begin
                if seen >= lines:
                    return start, seen
        return start, seen


@dataclass
class StateAt:
    """What the console showed as of one checkpoint (against the stored registry of that moment)."""

    cell: Cell
    status: str
    registry_match: bool | None
    scheme_mismatch: bool
    consecutive: int
    stored_digest: str | None
    live_digest: str
    diff: Any  # RegistryDiff or None
    diff_note: str | None
    active_alerts: list[tuple[str, str]]  # (code, summary)
    incident: dict[str, Any] | None


def state_at(ws: Workspace, config: Config, cell: Cell, found: list[Found], *, epochs: Epochs | None = None) -> StateAt:
    """Replay the monitor up to ``cell``: from the start of the incident it belongs to (the state of a
    drift depends on its whole run), else from the checkpoint itself (in sync, nothing carried)."""
    start: Found | None = None
    for f in found:
        if f.offset is not None and f.offset <= cell.offset:
            start = f
    if start is not None and cell.match is not False and start.view.get("resolved_label") != cell.label \
            and start.resolved_at is not None and cell.timestamp is not None and cell.timestamp > start.resolved_at:
        start = None
    active: dict[tuple[str, str], str] = {}

    def track(events: list[Any]) -> None:
        for e in events:
            if getattr(e, "event", None) != "alert":
                continue
            a = e.alert
            if a.status == "firing":
                active[(a.code, a.dedup_key)] = a.summary
            else:
                for code in (a.code, *a.resolves):
                    active.pop((code, a.dedup_key), None)

    now = cell.timestamp if cell.timestamp is not None else time.time()
    if start is not None:
        result = replay(ws, config, offset=start.offset, line=start.view.get("started_line"),  # type: ignore[arg-type]
                        epochs=epochs, stop_offset=cell.offset, resume=start, now=now, on_events=track)
    else:
        result = replay(ws, config, offset=cell.offset, line=cell.line, epochs=epochs, stop_offset=cell.offset,
                        now=now, on_events=track)
    m = result.monitor
    latest = m.latest
    diff = None
    note = None
    if latest is not None and latest.has_state and m.latest_match is False:
        try:
            diff = m.diff_for(latest)
        except (PolylogError, OSError) as exc:
            note = str(exc)
        if diff is None and note is None:
            note = m.diff_error(latest) or "the stored registry of that moment is not kept: no symbol diff"
    elif latest is not None and not latest.has_state:
        note = "this checkpoint carries no registry state: no symbol diff"
    view = m.snapshot(now)
    incident = view.incident.to_json() if view.incident is not None else None
    return StateAt(cell, str(view.status), view.latest_match, view.latest_scheme_mismatch, view.consecutive_mismatches,
                   view.stored_digest, latest.digest if latest is not None else "", diff, note,
                   sorted((code, summary) for (code, _key), summary in active.items()), incident)


class TimelineSource:
    """What the console's timeline screen shows, computed here (no Textual): the incidents of the
    feed (from the index when consistent), a page of checkpoints around one incident, older pages,
    and the replayed state at any checkpoint. Every call reads files: run it off the UI thread."""

    def __init__(self, ws: Workspace, config: Config) -> None:
        self.ws = ws
        self.config = config
        self.epochs: Epochs | None = None
        self.found: list[Found] = []
        self.reports: list[Report] = []
        self.source = ""

    def load(self, now: float | None = None) -> list[Report]:
        self.epochs = epochs_for(self.ws, self.config)
        rec = reconstruct(self.ws, self.config, epochs=self.epochs, write_index=False, now=now)
        self.found = rec.incidents
        self.source = rec.source
        self.reports = build_reports(self.found, iter_audit_with(self.ws, KEYED), self.ws)
        return self.reports

    def load_quick(self, now: float | None = None) -> list[Report]:
        """The incidents without the audit log's details (what the screen shows first, at once):
        only the records that say when the stored registry changed are read."""
        self.epochs = epochs_for(self.ws, self.config)
        rec = reconstruct(self.ws, self.config, epochs=self.epochs, write_index=False, now=now)
        self.found = rec.incidents
        self.source = rec.source
        self.reports = build_reports(self.found, [])
        return self.reports

    def around(self, rep: Report, count: int = STRIP, before: int = 10) -> list[Cell]:
        """``before`` lines before the incident's start, then up to ``count`` checkpoints from there."""
        offset = rep.found.offset or 0
        start, back = offset_before(self.config.feed.path, offset, before)
        line = rep.view.get("started_line")
        first_line = line - back if isinstance(line, int) and line > back else (1 if start == 0 else None)
        return strip_from(self.ws, self.config, start, first_line, count + before, epochs=self.epochs)

    def around_checkpoint(self, offset: int, line: int | None, count: int = STRIP) -> list[Cell]:
        """A page of checkpoints with the one at ``offset`` (a row of the console's checkpoints
        table) in its middle."""
        start, back = offset_before(self.config.feed.path, offset, count // 2)
        first_line = line - back if line is not None and line > back else (1 if start == 0 else None)
        return strip_from(self.ws, self.config, start, first_line, count, epochs=self.epochs)

    def older(self, first: Cell, count: int = STRIP) -> list[Cell]:
        """The page of checkpoints before ``first`` (paged in as the user scrubs back)."""
        start, back = offset_before(self.config.feed.path, first.offset, count + count // 4)  # other entries too
        line = first.line - back if first.line is not None and first.line > back else (1 if start == 0 else None)
        cells = strip_from(self.ws, self.config, start, line, count * 2, epochs=self.epochs, stop_before=first.offset)
        return cells[-count:]

    def newer(self, last: Cell, count: int = STRIP) -> list[Cell]:
        cells = strip_from(self.ws, self.config, last.offset, last.line, count + 1, epochs=self.epochs)
        return [c for c in cells if c.offset > last.offset]

    def state_at(self, cell: Cell) -> StateAt:
        return state_at(self.ws, self.config, cell, self.found, epochs=self.epochs)
