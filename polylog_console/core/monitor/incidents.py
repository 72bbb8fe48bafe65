"""The incident index (``memory/incidents/index.jsonl``): what the monitor decided about incidents,
kept as it goes, so that a post-incident report over a feed of gigabytes need not replay it all.

The index is a cache, never the truth: the truth is the feed run through the monitor's rules
(:mod:`polylog_console.core.monitor.rules`) plus the audit log. A report uses the index only when it
is consistent with the feed (same file: device, inode and a hash of its first bytes; offsets
within its size; coverage from the feed's first byte without a gap) and replays the feed only
after the last covered offset; otherwise it reconstructs from scratch, and then writes what it
found back here so that the next report is fast.

One JSON object per line, appended with one ``write()`` on an ``O_APPEND`` file under ``flock``
(the audit log's discipline: a ``watch`` and a ``report`` may append at the same time):

* ``{"kind": "incident", "event": "opened|escalated|restarted|resolved", "feed": F, "offset": O,
  "incident": IncidentView.to_json()}``: an incident event; ``offset`` is the byte offset of its
  first mismatching checkpoint when known (else null).
* ``{"kind": "mark", "feed": F, "from": A, "to": B, "line": L, "stored_digest": D, "open": K|null,
  "at": host time}``: the monitor compared every checkpoint in bytes ``[A, B)`` of feed ``F``;
  ``line`` is the line number at ``B``, ``open`` the open incident's key at ``B``.

``F`` is ``{"dev", "ino", "head", "head_len"}`` (``head``: SHA-256 of the first ``head_len`` bytes).
An incident's key is ``started_label`` + ``started_at``. The file is bounded: past
:data:`MAX_BYTES` it is rewritten atomically with the latest record per incident and one mark
per contiguous coverage range.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import time
from bisect import bisect_left
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from polylog_console.core.infra import atomic
from polylog_console.core.infra.text import json_line
from polylog_console.core.model.workspace import check_contained

INDEX = "memory/incidents/index.jsonl"
HEAD_BYTES = 4096  # bytes of the feed's start hashed to recognise the same file
MARK_INTERVAL = 5.0  # seconds between coverage marks written by a running monitor
MAX_BYTES = 8 * 1024 * 1024  # the index is compacted past this size
MAX_RUN_RECORDS = 10_000  # incident records one writer adds before it stops (a flapping feed); ~25 MB
MAX_READ = 64 * 1024 * 1024  # never read more than this much of an index
MAX_EVENTS = 32  # incident events kept per incident when reading


def index_path(ws: Any) -> Path:
    return Path(ws.path(INDEX))


def incident_key(incident: dict[str, Any]) -> str:
    return f"{incident.get('started_label')}@{incident.get('started_at')}"


def _event_signature(kind: str, picture: dict[str, Any]) -> tuple[Any, ...]:
    """What makes an incident event the same one when several runs wrote it (a ``watch``, a
    ``watch --once``, a scratch report): its kind and the checkpoint it happened at, not the
    picture's times of observation."""
    if kind == "escalated":
        return kind, picture.get("last_label"), picture.get("escalations")
    if kind == "resolved":
        return kind, picture.get("resolved_label"), picture.get("resolved_at")
    if kind == "restarted":
        return kind, picture.get("started_label"), picture.get("scan")
    if kind == "latest":
        return kind, picture.get("last_label"), picture.get("state"), picture.get("mismatching_checkpoints")
    return (kind,)


def feed_identity(path: Path, head_len: int | None = None) -> dict[str, Any] | None:
    """The feed's identity: device, inode and a hash of its first ``head_len`` bytes (at most
    :data:`HEAD_BYTES`; fewer when the file is shorter). None when it cannot be read."""
    try:
        with open(path, "rb") as handle:
            st = os.fstat(handle.fileno())
            want = HEAD_BYTES if head_len is None else head_len
            head = handle.read(want)
    except OSError:
        return None
    if head_len is not None and len(head) < head_len:
        return None
    return {"dev": st.st_dev, "ino": st.st_ino, "head": hashlib.sha256(head).hexdigest(), "head_len": len(head),
            "size": st.st_size}


def same_feed(recorded: dict[str, Any], path: Path) -> bool:
    """Is ``path`` still the file ``recorded`` describes (same device, inode and first bytes)?"""
    try:
        current = feed_identity(path, int(recorded.get("head_len", 0)))
    except (TypeError, ValueError):
        return False
    return (current is not None and current["dev"] == recorded.get("dev") and current["ino"] == recorded.get("ino")
            and current["head"] == recorded.get("head"))


def _feed_key(feed: dict[str, Any]) -> tuple[Any, Any, Any]:
    return (feed.get("dev"), feed.get("ino"), feed.get("head"))


class IndexFile:
    """Appends records to the index (one ``write()`` per line, under ``flock``)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.last_error: str | None = None
        # Compacting again only once the file has doubled since the last compaction keeps the
        # cost linear in what is written: a flapping feed's many incidents leave a compacted index
        # above MAX_BYTES, and compacting at every append would be quadratic.
        self._compacted = 0  # the file's size after the last compaction

    def append(self, records: list[dict[str, Any]]) -> None:
        if not records:
            return
        data = b"".join(json_line(r) for r in records)  # valid UTF-8 whatever the feed held
        try:
            check_contained(self.path)  # linked outside the workspace (or a loop): refused, nothing written there
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view):]
                size = os.fstat(fd).st_size
            finally:
                os.close(fd)
            self.last_error = None
        except OSError as exc:  # the index is a cache: a failure costs a slower report, nothing else
            self.last_error = f"{self.path}: {exc.strerror or exc}"
            return
        if size > max(MAX_BYTES, 2 * self._compacted):
            self.compact()
            try:
                self._compacted = os.stat(self.path).st_size
            except OSError:
                self._compacted = size

    def compact(self) -> None:
        """Rewrite the index with the latest record per incident and merged coverage (atomic)."""
        try:
            fd = os.open(self.path, os.O_RDWR)
        except OSError:
            return
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            index = read_index(self.path)
            records: list[dict[str, Any]] = []
            for feed, ranges in index.coverage.items():
                for start, end, line, stored, open_key, at in ranges:
                    records.append({"kind": "mark", "feed": index.feeds[feed], "from": start, "to": end,
                                    "line": line, "stored_digest": stored, "open": open_key, "at": at})
            for key, latest in index.latest.items():
                for kind, picture in index.events.get(key, []):
                    records.append({**latest, "event": kind, "incident": picture})
            data = b"".join(json_line(r) for r in records)  # valid UTF-8 whatever the feed held
            with contextlib.suppress(OSError):
                atomic.write_bytes(self.path, data, durable=False)
        finally:
            os.close(fd)


@dataclass
class Index:
    """An index as read: the latest record per incident and the coverage per feed file."""

    latest: dict[str, dict[str, Any]] = field(default_factory=dict)  # incident key -> latest incident record
    events: dict[str, list[tuple[str, dict[str, Any]]]] = field(default_factory=dict)  # key -> (kind, picture)
    feeds: dict[tuple[Any, Any, Any], dict[str, Any]] = field(default_factory=dict)
    # feed -> merged ranges [(from, to, line at to, stored digest at to, open key at to, at)]
    coverage: dict[tuple[Any, Any, Any], list[tuple[int, int, int, Any, Any, Any]]] = field(default_factory=dict)
    bad_lines: int = 0


ORDER = {"opened": 0, "restarted": 1, "escalated": 2, "resolved": 3, "latest": 4}


def read_index(path: Path) -> Index:
    """Read an index (bounded: at most :data:`MAX_READ` bytes, the newest ones). Unknown or
    malformed lines are counted and skipped."""
    index = Index()
    try:
        with open(path, "rb") as handle:
            size = os.fstat(handle.fileno()).st_size
            if size > MAX_READ:
                handle.seek(size - MAX_READ)
                handle.readline()
            data = handle.read(MAX_READ)
    except OSError:
        return index
    raw_ranges: dict[tuple[Any, Any, Any], list[tuple[int, int, int, Any, Any, Any]]] = {}
    for raw in data.split(b"\n"):
        if not raw.strip():
            continue
        try:
            record = orjson.loads(raw)
        except orjson.JSONDecodeError:
            index.bad_lines += 1
            continue
        if not isinstance(record, dict) or not isinstance(record.get("feed"), dict):
            index.bad_lines += 1
            continue
        feed = record["feed"]
        kind = record.get("kind")
        if kind == "mark":
            start, end = record.get("from"), record.get("to")
            if type(start) is int and type(end) is int and 0 <= start <= end:
                fk = _feed_key(feed)
                index.feeds.setdefault(fk, feed)
                raw_ranges.setdefault(fk, []).append((start, end, int(record.get("line") or 0),
                                                      record.get("stored_digest"), record.get("open"),
                                                      record.get("at")))
            else:
                index.bad_lines += 1
        elif kind == "incident" and isinstance(record.get("incident"), dict):
            key = incident_key(record["incident"])
            seen = index.events.setdefault(key, [])
            kind = str(record.get("event"))
            sign = _event_signature(kind, record["incident"])
            if len(seen) < MAX_EVENTS and not any(_event_signature(k, p) == sign for k, p in seen):
                seen.append((kind, record["incident"]))  # (each event once, whichever run wrote it)
            old = index.latest.get(key)
            if old is None or _newer(record, old):
                if old is not None and not isinstance(record.get("offset"), int) and isinstance(old.get("offset"), int):
                    record = {**record, "offset": old["offset"]}  # the start's offset, known from an earlier record
                index.latest[key] = record
            elif not isinstance(old.get("offset"), int) and isinstance(record.get("offset"), int):
                index.latest[key] = {**old, "offset": record["offset"]}
        else:
            index.bad_lines += 1
    for fk, ranges in raw_ranges.items():
        index.coverage[fk] = _merge(ranges)
    return index


def _merge(ranges: list[tuple[int, int, int, Any, Any, Any]]) -> list[tuple[int, int, int, Any, Any, Any]]:
    """Overlapping or touching ranges merged; each merged range keeps the state at its end."""
    merged: list[tuple[int, int, int, Any, Any, Any]] = []
    for item in sorted(ranges, key=lambda r: (r[0], r[1])):
        if merged and item[0] <= merged[-1][1]:
            last = merged[-1]
            # the state at the end: the mark reaching furthest; of two at the same offset, the later
            if item[1] > last[1] or (item[1] == last[1] and (item[5] or 0) >= (last[5] or 0)):
                merged[-1] = (last[0], item[1], item[2], item[3], item[4], item[5])
        else:
            merged.append(item)
    return merged


@dataclass
class FileView:
    """What an index knows of one feed file (records made when it was shorter included)."""

    covered: tuple[int, int, Any, Any] | None  # (offset, line, stored digest, open key) covered from byte 0
    incidents: list[dict[str, Any]]  # its incident records (latest per incident), by start offset
    others: list[dict[str, Any]]  # incident records of other files (rotated away)
    known: bool  # the index has records of this file at all


def file_view(index: Index, path: Path) -> FileView:
    """The index's view of the feed file at ``path``: every recorded identity that is this file (same
    device and inode, same first bytes over the length recorded) counts, whatever its size then."""
    keys = {k for k, feed in index.feeds.items() if same_feed(feed, path)}
    for record in index.latest.values():
        fk = _feed_key(record.get("feed") or {})
        if fk not in keys and fk not in index.feeds and same_feed(record.get("feed") or {}, path):
            keys.add(fk)
    ranges = [r for k in keys for r in index.coverage.get(k, [])]
    merged = _merge(ranges)
    covered = None
    if merged and merged[0][0] == 0:
        _start, end, line, stored, open_key, _at = merged[0]
        covered = (end, line, stored, open_key)
    mine: list[dict[str, Any]] = []
    others: list[dict[str, Any]] = []
    for record in index.latest.values():
        (mine if _feed_key(record.get("feed") or {}) in keys else others).append(record)
    mine = sorted((r for r in mine if isinstance(r.get("offset"), int)), key=lambda r: r["offset"])
    return FileView(covered, mine, others, bool(keys))


def _newer(record: dict[str, Any], old: dict[str, Any]) -> bool:
    a, b = record["incident"], old["incident"]
    if (b.get("resolved_at") is not None) != (a.get("resolved_at") is not None):
        return a.get("resolved_at") is not None
    rank = ORDER.get(str(record.get("event")), 0) - ORDER.get(str(old.get("event")), 0)
    if rank:
        return rank > 0
    return int(a.get("mismatching_checkpoints") or 0) >= int(b.get("mismatching_checkpoints") or 0)


class IndexWriter:
    """A :class:`~polylog_console.core.monitor.session.Session` subscriber that keeps the index as
    the monitor goes: each incident event at once, a coverage mark at most every
    :data:`MARK_INTERVAL` seconds (no timer: written with the next batch after the interval)."""

    def __init__(self, path: Path, feed_path: Path, *, clock: Any = time.time,
                 interval: float = MARK_INTERVAL) -> None:
        self.file = IndexFile(path)
        self.feed_path = Path(feed_path)
        self.clock = clock
        self.interval = interval
        self.feed: dict[str, Any] | None = None
        self.start: int | None = None  # first offset compared since the feed was (re)opened
        self.end: int | None = None  # just past the last line compared
        self.line = 0
        self.stored: str | None = None
        self.open_key: str | None = None
        self.last_mark = 0.0
        self._recent: list[tuple[int, int]] = []  # (line, offset) of the checkpoints of the current batch
        self._starts: dict[int, int | None] = {}  # incident id -> offset of its first checkpoint
        self.written = 0  # incident records written by this writer
        self.stopped = False  # past MAX_RUN_RECORDS: the index covers the feed only up to here

    def __call__(self, events: list[Any]) -> None:
        if self.stopped:
            return
        records: list[dict[str, Any]] = []
        recent: list[tuple[int, int]] = []
        incidents: list[Any] = []
        for event in events:
            kind = getattr(event, "event", None)
            if kind == "checkpoint":
                cp = event.checkpoint
                if cp.line is not None:
                    recent.append((cp.line, cp.offset))
                if self.start is None:
                    self.start = cp.offset
                    self._identify()
                self.end = cp.offset + len(cp.raw) + 1
                self.line = (cp.line or 0) + 1
                if event.stored_digest is not None:
                    self.stored = event.stored_digest
            elif kind == "entry" or kind == "ingest_error":
                record = event.entry if kind == "entry" else event.error
                if self.start is None:
                    self.start = record.offset
                    self._identify()
                if record.line is not None:
                    self.end = record.offset + len(record.raw) + 1
                    self.line = record.line + 1
            elif kind == "feed" and event.kind in ("created", "rotated", "truncated", "deleted", "replaced"):
                # ("started" follows the history it read: the same file)
                if self.start is not None and self.end is not None:
                    records.append(self._mark())
                self.feed = None
                self.start = self.end = None
            elif kind == "stored" and event.digest is not None:
                self.stored = event.digest
            elif kind == "incident":
                incidents.append(event)
        for event in incidents:  # after the loop: the checkpoint that opened it may follow its event
            view = event.incident
            data = view.to_json()
            self.open_key = None if view.resolved_at is not None else incident_key(data)
            if self.feed is None:
                self._identify()
            offset = self._offset_of(view.started_line, recent)
            if event.kind != "restarted" and (offset is None or event.kind != "opened"):
                offset = self._starts.get(view.id, offset)
            # (a start found earlier by the backwards scan: its offset is known only when still in
            # the recent batches; else None, and a report replays that feed from scratch)
            self._starts[view.id] = offset
            if len(self._starts) > 64:
                self._starts.pop(next(iter(self._starts)))
            records.append({"kind": "incident", "event": event.kind, "feed": self._feed_ref(),
                            "offset": offset, "incident": data})
        due = records or (self.end is not None and self.clock() - self.last_mark >= self.interval)
        if due and self.start is not None and self.end is not None and self.feed is not None:
            records.append(self._mark())
        self._recent = recent[-1024:] if recent else self._recent
        self.written += len(incidents)
        if self.written > MAX_RUN_RECORDS:
            # A flapping feed: the index would grow with every incident (and its compaction with
            # it). It stops here, its last mark covering the feed before this batch; a report reads that
            # part from the index and replays the rest of the feed (the same answer, slower).
            self.stopped = True  # this batch is not written: the last mark written ends the coverage
            return
        self.file.append(records)


    def flush(self) -> None:
        """Write a last coverage mark (when the monitor stops)."""
        if self.stopped:
            return
        if self.start is not None and self.end is not None and self.feed is not None:
            self.file.append([self._mark()])

    def _offset_of(self, line: int | None, recent: list[tuple[int, int]]) -> int | None:
        if line is None:
            return None
        for pool in (recent, self._recent):
            i = bisect_left(pool, (line, -1))
            if i < len(pool) and pool[i][0] == line:
                return pool[i][1]
        return None

    def _identify(self) -> None:
        self.feed = feed_identity(self.feed_path)

    def _feed_ref(self) -> dict[str, Any]:
        feed = self.feed or {}
        return {k: feed.get(k) for k in ("dev", "ino", "head", "head_len")}

    def _mark(self) -> dict[str, Any]:
        self.last_mark = self.clock()
        return {"kind": "mark", "feed": self._feed_ref(), "from": self.start, "to": self.end, "line": self.line,
                "stored_digest": self.stored, "open": self.open_key, "at": self.last_mark}


def attach_incident_index(session: Any) -> IndexWriter | None:
    """Keep ``memory/incidents/index.jsonl`` for this session (not in observer mode: the index is a
    workspace write). Returns the subscriber."""
    if getattr(session, "read_only", False):
        return None
    writer = IndexWriter(index_path(session.ws), session.config.feed.path)
    session.subscribe(writer)
    return writer
