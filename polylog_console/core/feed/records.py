"""Feed records (SPEC §5): parse one line of ``context-brief.jsonl``.

A line becomes exactly one of:

* :class:`Checkpoint`: any object (or ``{"checkpoint_record": {...}}`` envelope) with a string
  ``registry_digest``. Other fields are optional; a present field of the wrong type is a
  :class:`FieldWarning` attached to the checkpoint and the field is treated as absent.
* :class:`Entry`: any other object (a coordination entry): kept and shown, never an error.
* :class:`IngestError`: not valid UTF-8 JSON, not an object, or ``registry_digest`` not a string.

Blank lines give None. Lines are parsed with orjson; when orjson refuses a line the standard
library gets a second look, so that valid JSON orjson does not take (integers beyond 64 bits) is
still read, and the error message names the problem precisely.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

from orjson import JSONDecodeError, loads

from polylog_console.core.infra.gcpause import gc_paused
from polylog_console.core.registry.digest import looks_like_digest
from polylog_console.core.registry.stored import type_name

BOM = b"\xef\xbb\xbf"


@dataclass(frozen=True, slots=True)
class FieldWarning:
    line: int | None
    field: str
    reason: str

    def to_json(self) -> dict[str, Any]:
        return {"line": self.line, "field": self.field, "reason": self.reason}


class Checkpoint:
    """One checkpoint. ``line`` is the 1-based line number (None until known, see the follower),
    ``offset`` the byte offset of the line in the feed file, ``raw`` the line's bytes and
    ``data`` the checkpoint object (the inner one for an envelope).

    Only the digest is extracted when the line is read; the other fields are read from ``data``
    on first use, and a present field of the wrong type reads as None with a
    :class:`FieldWarning` in :attr:`warnings`. This keeps reading a feed at a few microseconds a
    line (``tests/bench/bench_foundation.py``).
    """

    __slots__ = ("_warnings", "data", "digest", "envelope", "line", "observed_ns", "offset", "raw", "telemetry_raw")
    kind = "checkpoint"

    def __init__(self, digest: str, line: int | None, offset: int, raw: bytes, data: dict[str, Any],
                 observed_ns: int = 0, envelope: bool = False, telemetry: Any = None) -> None:
        self.digest = digest
        self.line = line
        self.offset = offset
        self.raw = raw
        self.data = data
        self.observed_ns = observed_ns
        self.envelope = envelope
        self.telemetry_raw = telemetry
        self._warnings: tuple[FieldWarning, ...] | None = None

    def __repr__(self) -> str:
        return f"Checkpoint({self.display_label!r}, line={self.line}, digest={self.digest[:12]!r})"

    def _typed(self, name: str, types: tuple[type, ...]) -> Any:
        value = self.data.get(name)
        if value is None or type(value) in types:
            return value
        if int in types and type(value) is float and value.is_integer() and abs(value) >= 2**63:
            # orjson reads integers beyond 64 bits as floats: read the exact integer instead.
            exact = _exact_field(self.raw, name, self.envelope)
            if type(exact) is int:
                return exact
        return None

    @property
    def label(self) -> str | None:
        return self._typed("label", (str,))

    @property
    def path(self) -> str | None:
        return self._typed("path", (str,))

    @property
    def polygons(self) -> int | None:
        return self._typed("polygons", (int,))

    @property
    def chunk_count(self) -> int | None:
        return self._typed("chunk_count", (int,))

    @property
    def module_refs(self) -> int | None:
        return self._typed("module_refs", (int,))

    @property
    def timestamp(self) -> float | None:
        value = self.data.get("timestamp")
        t = type(value)
        if t is float:
            return value if math.isfinite(value) else None
        if t is int:
            return float(value) if abs(value) < 1e15 else None
        return None

    @property
    def registry_state(self) -> dict[str, Any] | None:
        return self._typed("registry_state", (dict,))

    @property
    def registry_snapshot(self) -> str | None:
        return self._typed("registry_snapshot", (str,))

    @property
    def telemetry(self) -> dict[str, Any] | None:
        return self.telemetry_raw if type(self.telemetry_raw) is dict else None

    @property
    def warnings(self) -> tuple[FieldWarning, ...]:
        """Every present field of the wrong type, as (line, field, reason). Computed once."""
        warnings = self._warnings
        if warnings is None or (warnings and warnings[0].line != self.line):
            warnings = self._warnings = field_warnings(self.data, self.line, self.envelope, self.telemetry_raw)
        return warnings

    @property
    def display_label(self) -> str:
        label = self.label
        if label is not None:
            return label
        return f"line {self.line}" if self.line is not None else f"offset {self.offset}"

    @property
    def has_state(self) -> bool:
        return self.registry_state is not None or self.registry_snapshot is not None

    def to_json(self) -> dict[str, Any]:
        return {
            "line": self.line,
            "label": self.display_label,
            "registry_digest": self.digest,
            "timestamp": self.timestamp,
            "path": self.path,
            "polygons": self.polygons,
            "chunk_count": self.chunk_count,
            "module_refs": self.module_refs,
            "has_state": self.has_state,
            "warnings": [w.to_json() for w in self.warnings],
        }


def _exact_field(raw: bytes, name: str, envelope: bool) -> Any:
    try:
        obj = json.loads(raw.decode("utf-8", "replace").lstrip("\ufeff"))
    except ValueError:
        return None
    if envelope and isinstance(obj, dict):
        obj = obj.get("checkpoint_record")
    return obj.get(name) if isinstance(obj, dict) else None


_EXPECTED: tuple[tuple[str, tuple[type, ...], str], ...] = (
    ("label", (str,), "a string"),
    ("path", (str,), "a string"),
    ("polygons", (int,), "an integer"),
    ("chunk_count", (int,), "an integer"),
    ("module_refs", (int,), "an integer"),
    ("timestamp", (int, float), "a number"),
    ("registry_state", (dict,), "an object"),
    ("registry_snapshot", (str,), "a string"),
)


_CLEAN_SHAPES: set[tuple[tuple[str, ...], tuple[type, ...], type]] = set()


def field_warnings(data: dict[str, Any], line: int | None, envelope: bool = False,
                   telemetry: Any = None) -> tuple[FieldWarning, ...]:
    get = data.get
    digest = get("registry_digest")
    # Checkpoints of one engine share a shape (keys and value types): a shape once found clean
    # needs only the digest and time checks that depend on the values.
    shape = (tuple(data), tuple(map(type, data.values())), type(telemetry))
    if shape in _CLEAN_SHAPES:
        ts = get("timestamp")
        if looks_like_digest(digest) and (ts is None or -1e15 < ts < 1e15):
            return ()
    warnings: list[FieldWarning] = []
    cacheable = True
    for name, types, expected in _EXPECTED:
        value = data.get(name)
        if value is None:
            continue
        if type(value) not in types:
            if int in types and type(value) is float and value.is_integer() and abs(value) >= 2**63:
                cacheable = False
                continue  # an integer beyond 64 bits (orjson reads it as a float); see Checkpoint._typed
            warnings.append(FieldWarning(line, name, f"expected {expected}, got {type_name(value)}"))
        elif name == "timestamp" and (
            (type(value) is float and not math.isfinite(value)) or (type(value) is int and abs(value) >= 1e15)
        ):
            warnings.append(FieldWarning(line, name, "not a usable time (out of range)"))
    if envelope and telemetry is not None and type(telemetry) is not dict:
        warnings.append(FieldWarning(line, "detection_telemetry", f"expected an object, got {type_name(telemetry)}"))
    if isinstance(digest, str) and not looks_like_digest(digest):
        warnings.append(FieldWarning(line, "registry_digest", "not 64 lowercase hex characters"))
    if not warnings and cacheable and len(_CLEAN_SHAPES) < 256 and all(
        t in (str, int, float, bool, type(None)) for t in shape[1]
    ):
        _CLEAN_SHAPES.add(shape)  # only shapes of scalars: their checks are all type checks
    return tuple(warnings)


@dataclass(slots=True)
class Entry:
    """A coordination entry that is not a checkpoint."""

    data: dict[str, Any]
    line: int | None
    offset: int
    raw: bytes
    observed_ns: int = 0

    kind = "entry"

    @property
    def entry_kind(self) -> str:
        for key in ("kind", "type", "event", "entry"):
            value = self.data.get(key)
            if isinstance(value, str):
                return value
        return next(iter(self.data), "empty")

    def to_json(self) -> dict[str, Any]:
        return {"line": self.line, "kind": self.entry_kind}


@dataclass(slots=True)
class IngestError:
    line: int | None
    offset: int
    reason: str
    raw: bytes = field(default=b"", repr=False)
    observed_ns: int = 0

    kind = "ingest_error"

    def to_json(self) -> dict[str, Any]:
        return {"line": self.line, "offset": self.offset, "reason": self.reason}


Record = Checkpoint | Entry | IngestError



def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _slow_loads(raw: bytes) -> tuple[Any, str | None]:
    """Second look at a line orjson refused: (value, None) or (None, reason)."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return None, f"invalid UTF-8 at byte {exc.start}"
    try:
        return json.loads(text, parse_constant=_reject_constant), None
    except ValueError as exc:
        # "Expecting value: line 1 column 9 (char 8)": keep the column, drop the line part.
        message = str(exc)
        if isinstance(exc, json.JSONDecodeError):
            message = f"{exc.msg} (column {exc.colno})"
        return None, f"invalid JSON: {message}"
    except RecursionError:
        return None, "invalid JSON: nested too deeply"


def parse_line(raw: bytes, line: int | None = None, offset: int = 0, observed_ns: int = 0) -> Record | None:
    """Parse one feed line (without its ``\\n``). Returns None for a blank line."""
    try:
        obj = loads(raw)
    except JSONDecodeError:
        if raw.endswith(b"\r"):
            raw = raw[:-1]
        if offset == 0 and raw.startswith(BOM):
            raw = raw[3:]
        if not raw.strip():
            return None
        try:
            obj = loads(raw)
        except JSONDecodeError:
            obj, reason = _slow_loads(raw)
            if reason is not None:
                return IngestError(line, offset, reason, raw, observed_ns)
    if type(obj) is not dict:
        return IngestError(line, offset, f"not a JSON object (got {type_name(obj)})", raw, observed_ns)
    if "checkpoint_record" in obj:
        inner = obj["checkpoint_record"]
        if type(inner) is not dict:
            return IngestError(
                line, offset, f"checkpoint_record must be an object (got {type_name(inner)})", raw, observed_ns)
        digest = inner.get("registry_digest")
        if type(digest) is str:
            return Checkpoint(digest, line, offset, raw, inner, observed_ns, True, obj.get("detection_telemetry"))
        if digest is None and "registry_digest" not in inner:
            return IngestError(line, offset, "checkpoint_record has no registry_digest", raw, observed_ns)
    else:
        digest = obj.get("registry_digest")
        if type(digest) is str:
            return Checkpoint(digest, line, offset, raw, obj, observed_ns)
        if digest is None and "registry_digest" not in obj:
            return Entry(obj, line, offset, raw, observed_ns)
    return IngestError(line, offset, f"registry_digest must be a string (got {type_name(digest)})", raw, observed_ns)


class LineSplitter:
    """Cuts a byte stream into lines, holding an incomplete last line until its newline arrives.

    ``feed(chunk)`` returns ``(offset, lines)``: the complete lines (without ``\\n``) and the
    stream offset of the first one. A line longer than ``max_line`` bytes is not kept in memory:
    it comes out as an ``int``, its length, once its newline arrives.
    """

    def __init__(self, start_offset: int = 0, max_line: int = 64 * 1024 * 1024) -> None:
        self.offset = start_offset  # stream offset of pending[0] (or of the over-long line)
        self.pending = b""
        self.max_line = max_line
        self._skipped = -1  # bytes dropped of the current over-long line, -1 when not in one

    @property
    def consumed(self) -> int:
        """Offset just past the last complete line."""
        return self.offset

    @property
    def partial(self) -> int:
        """Bytes of an incomplete last line held (or skipped) so far."""
        return self._skipped if self._skipped >= 0 else len(self.pending)

    def feed(self, chunk: bytes) -> tuple[int, list[bytes | int]]:
        first = self.offset
        if not chunk:
            return first, []
        lines: list[bytes | int] = []
        if self._skipped >= 0:
            nl = chunk.find(b"\n")
            if nl < 0:
                self._skipped += len(chunk)
                return first, lines
            lines.append(self._skipped + nl)
            self.offset += self._skipped + nl + 1
            self._skipped = -1
            data = chunk[nl + 1 :]
        else:
            data = self.pending + chunk if self.pending else chunk
        nl = data.rfind(b"\n")
        if nl < 0:
            tail = data
        else:
            tail = data[nl + 1 :]
            complete: list[bytes | int] = data[:nl].split(b"\n")  # type: ignore[assignment]
            if nl > self.max_line:  # only then can a complete line exceed the limit
                limit = self.max_line
                complete = [len(x) if len(x) > limit else x for x in complete]  # type: ignore[arg-type]
            lines.extend(complete)
            self.offset += nl + 1
        if len(tail) > self.max_line:
            self.pending = b""
            self._skipped = len(tail)
        else:
            self.pending = tail
        return first, lines

    def reset(self, offset: int = 0) -> None:
        self.offset = offset
        self.pending = b""
        self._skipped = -1


MAX_LINE = 64 * 1024 * 1024


def parse_lines(lines: list[bytes | int], first_line: int | None, first_offset: int, observed_ns: int = 0,
                max_line: int = MAX_LINE) -> list[Record]:
    """Parse consecutive lines; ``first_line``/``first_offset`` locate the first one.

    The common case (a plain checkpoint object) is handled inline; anything else goes through
    :func:`parse_line`. The cyclic GC is paused meanwhile (see :mod:`polylog_console.core.infra.gcpause`)."""
    with gc_paused():
        return _parse_lines(lines, first_line, first_offset, observed_ns, max_line)


def _parse_lines(lines: list[bytes | int], first_line: int | None, first_offset: int, observed_ns: int,
                 max_line: int) -> list[Record]:
    out: list[Record] = []
    append = out.append
    line = first_line
    offset = first_offset
    for raw in lines:
        if type(raw) is int:  # an over-long line, dropped by the splitter: its length
            append(IngestError(line, offset, f"line of {raw} bytes is longer than the limit of {max_line} bytes",
                               b"", observed_ns))
            offset += raw + 1
        else:
            try:
                obj = loads(raw)
            except JSONDecodeError:
                obj = None
            if type(obj) is dict and "checkpoint_record" not in obj:
                digest = obj.get("registry_digest")
                if type(digest) is str:
                    append(Checkpoint(digest, line, offset, raw, obj, observed_ns))
                else:
                    record = parse_line(raw, line, offset, observed_ns)
                    append(record)  # type: ignore[arg-type]
            else:
                record = parse_line(raw, line, offset, observed_ns)
                if record is not None:
                    append(record)
            offset += len(raw) + 1
        if line is not None:
            line += 1
    return out


def read_records(path, *, chunk_size: int = 4 * 1024 * 1024, max_line: int = MAX_LINE):
    """Read a whole feed file in large chunks; yields lists of records (one list per chunk).

    A last line without its newline is still read (the file is complete for this purpose).
    Raises OSError if the file cannot be opened, :class:`~polylog_console.core.infra.reader.UnreadableFile`
    if it is not a regular file (a FIFO or ``/dev/zero`` would block or never end).
    """
    from polylog_console.core.infra.reader import open_regular

    splitter = LineSplitter(0, max_line)
    line = 1
    fd, _ = open_regular(path, what="feed")
    with open(fd, "rb") as handle:
        while True:
            chunk = handle.read(chunk_size)
            if not chunk:
                break
            first, lines = splitter.feed(chunk)
            if lines:
                yield parse_lines(lines, line, first, 0, max_line)
                line += len(lines)
        if splitter.partial:
            first, lines = splitter.feed(b"\n")
            yield parse_lines(lines, line, first, 0, max_line)
