"""Feed records (SPEC §5): parse one line of ``context-brief.jsonl``.

A line becomes exactly one of:

* :class:`Checkpoint`: any object with a string ``registry_digest``, at its top level or inside an
  object ``checkpoint_record`` (the envelope, see :func:`parse_line` for which one is compared when
  both are there). Other fields are optional; a present field of the wrong type is a
  :class:`FieldWarning` attached to the checkpoint and the field is treated as absent.
* :class:`Entry`: any other object (a coordination entry): kept and shown, never an error.
* :class:`IngestError`: not valid UTF-8 JSON, not an object, or ``registry_digest`` not a string.

Blank lines give None. Lines are parsed with orjson; when orjson refuses a line the standard
library gets a second look, so that valid JSON orjson does not take is still read, and the error
message names the problem precisely. That second look is where hostile but valid JSON is decided,
once, for every consumer (SPEC §5: only ``registry_digest`` decides what a line is):

* **lone surrogates** (``"\\ud800"``, which orjson refuses): strings are kept exactly as written,
  so a digest is compared as it is (it can never match a stored digest) and keys stay distinct;
  each field holding one gets a :class:`FieldWarning`. Outputs make such strings safe
  (``core/infra/text.py``: U+FFFD in JSON, a visible ``\\ud800`` in text).
* **integers of more than** :data:`MAX_INT_DIGITS` **digits** (which Python refuses to convert,
  and which would cost quadratic time) and **values nested too deeply** for the decoder's
  recursion become :class:`Unreadable` markers: the field reads as absent, with a warning; the
  line is still a checkpoint when its ``registry_digest`` is a string. A line that is not valid
  JSON at any depth is still an ingest error.
* ``NaN``, ``Infinity`` and ``-Infinity`` (not JSON, but what Python's ``json.dumps``, the
  engine's encoder, writes for non-finite floats) are read as those floats: a field holding one
  gets a :class:`FieldWarning` (a non-finite ``timestamp`` is no usable time: the checkpoint counts
  as written when it was read), never an ingest error when ``registry_digest`` is a string. JSON
  output writes them as ``null`` (``core/infra/text.py``).

**Times.** A checkpoint's ``timestamp`` is usable when it is a finite number of seconds since the
epoch in ``[TIME_MIN, TIME_MAX)``: years 1 to 9999 UTC, exactly what :class:`datetime.datetime`
(and so every ISO-8601 output) can represent. Anything else (``9e15``, ``1e300``,
``253402300800`` = year 10000, ``-62135596801`` = year 0, ``NaN``) is a :class:`FieldWarning` and the
checkpoint counts as written when it was read, as with no timestamp at all: it is still compared.
:func:`usable_time` is that decision, made here once for every consumer.
"""

from __future__ import annotations

import json
import math
import re
import sys
from dataclasses import dataclass, field
from typing import Any

from orjson import JSONDecodeError, loads

from polylog_console.core.infra.gcpause import gc_paused
from polylog_console.core.infra.text import has_surrogates, safe_text, type_name
from polylog_console.core.registry.digest import looks_like_digest

BOM = b"\xef\xbb\xbf"

# Integers longer than this are not converted (CPython's own default limit for int(str)); a
# checkpoint field never needs one. The limit holds whatever sys.set_int_max_str_digits says.
MAX_INT_DIGITS = 4300
ABSENT = "the field is read as absent"

# The usable range of a checkpoint's time (seconds since the epoch, UTC): what datetime can
# represent, 0001-01-01T00:00:00Z (included) to 10000-01-01T00:00:00Z (excluded). See the module
# docstring; core/model/events.py ``iso`` clamps to the same range as a second line of defence.
TIME_MIN = -62135596800.0
TIME_MAX = 253402300800.0


def usable_time(value: Any) -> float | None:
    """``value`` as a checkpoint time (float seconds), or None when it is not a number (a bool is
    not), not finite or outside ``[TIME_MIN, TIME_MAX)``. Integers of any size are compared exactly."""
    t = type(value)
    if t is float:
        return value if TIME_MIN <= value < TIME_MAX else None  # NaN compares False: None
    if t is int:
        return float(value) if TIME_MIN <= value < TIME_MAX else None
    return None


def _nonfinite_name(value: float) -> str:
    return "NaN" if value != value else ("Infinity" if value > 0 else "-Infinity")


class Unreadable:
    """A JSON value that was read but cannot be used: an integer of more than
    :data:`MAX_INT_DIGITS` digits, or a value nested too deeply for the decoder. It stands in
    the decoded object in its place; ``what`` says which (``"an integer of 5000 digits"``). It is
    no JSON type, so every typed field reads it as absent; as text (``str``) it is ``<what>``."""

    __slots__ = ("what",)

    def __init__(self, what: str) -> None:
        self.what = what

    def __repr__(self) -> str:
        return f"Unreadable({self.what!r})"

    def __str__(self) -> str:
        return f"<{self.what}>"

    def __eq__(self, other: object) -> bool:
        return type(other) is Unreadable and other.what == self.what

    def __hash__(self) -> int:
        return hash(self.what)


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

    __slots__ = ("_warnings", "data", "digest", "envelope", "extra", "line", "observed_ns", "offset", "raw",
                 "telemetry_raw")
    kind = "checkpoint"

    def __init__(self, digest: str, line: int | None, offset: int, raw: bytes, data: dict[str, Any],
                 observed_ns: int = 0, envelope: bool = False, telemetry: Any = None,
                 extra: tuple[tuple[str, str], ...] = ()) -> None:
        self.digest = digest
        self.line = line
        self.offset = offset
        self.raw = raw
        self.data = data
        self.observed_ns = observed_ns
        self.envelope = envelope
        self.telemetry_raw = telemetry
        self.extra = extra  # (field, reason) found when the line was decoded (see hostile_values)
        self._warnings: tuple[FieldWarning, ...] | None = None

    def __repr__(self) -> str:
        return f"Checkpoint({self.display_label!r}, line={self.line}, digest={self.digest[:12]!r})"

    def _typed(self, name: str, types: tuple[type, ...]) -> Any:
        value = self.data.get(name)
        if value is None or type(value) in types:
            if self.extra and value is not None and (name, ABSENT) in self._unreadable():
                return None  # an object or array holding an Unreadable value: not usable as a whole
            return value
        if int in types and type(value) is float and value.is_integer() and abs(value) >= 2**63:
            # orjson reads integers beyond 64 bits as floats: read the exact integer instead.
            exact = _exact_field(self.raw, name, self.envelope)
            if type(exact) is int:
                return exact
        return None

    def _unreadable(self) -> set[tuple[str, str]]:
        return {(n, ABSENT) for n, r in self.extra if r.endswith(ABSENT)}

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
        """The checkpoint's own time when usable (:func:`usable_time`), else None: read time applies."""
        return usable_time(self.data.get("timestamp"))

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
            warnings = field_warnings(self.data, self.line, self.envelope, self.telemetry_raw)
            if self.extra:
                warnings += tuple(FieldWarning(self.line, name, reason) for name, reason in self.extra)
            self._warnings = warnings
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
        obj = _DECODER.decode(raw.decode("utf-8", "replace").lstrip("\ufeff"))
    except (ValueError, RecursionError):
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


_FIELD_NAMES = frozenset(name for name, _, _ in _EXPECTED)
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
        if isinstance(digest, str) and looks_like_digest(digest) and (ts is None or TIME_MIN <= ts < TIME_MAX):
            return ()
    warnings: list[FieldWarning] = []
    cacheable = True
    for name, types, expected in _EXPECTED:
        value = data.get(name)
        if value is None or type(value) is Unreadable:  # an Unreadable value: its warning is in extra
            continue
        if type(value) is float and not math.isfinite(value):  # NaN, Infinity (Python's json writes them)
            what = _nonfinite_name(value)
            warnings.append(FieldWarning(line, name, (
                f"not a usable time ({what}: not a finite number), read as the time the line was read"
                if name == "timestamp" else f"expected {expected}, got number ({what}: not finite)")))
            continue
        if type(value) not in types:
            if int in types and type(value) is float and value.is_integer() and abs(value) >= 2**63:
                cacheable = False
                continue  # an integer beyond 64 bits (orjson reads it as a float); see Checkpoint._typed
            warnings.append(FieldWarning(line, name, f"expected {expected}, got {type_name(value)}"))
        elif name == "timestamp" and usable_time(value) is None:
            warnings.append(FieldWarning(line, name, "not a usable time (outside years 1 to 9999 UTC), "
                                         "read as the time the line was read"))
    if envelope and telemetry is not None and type(telemetry) not in (dict, Unreadable):
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
            if type(value) is str:
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



_CONSTANTS = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}


def _nonfinite_constant(name: str) -> float:
    """``NaN``, ``Infinity``, ``-Infinity``: not JSON, but Python's ``json.dumps`` writes them."""
    return _CONSTANTS[name]


def _bounded_int(digits: str) -> Any:
    count = len(digits) - (digits[0] == "-")
    if count > MAX_INT_DIGITS:
        return Unreadable(f"an integer of {count:,} digits")
    limit = sys.get_int_max_str_digits()
    if limit == 0 or count <= limit:
        return int(digits)
    # A lower limit set for this interpreter: convert in pieces, each under any limit Python
    # accepts (640 digits at least).
    plain = digits.lstrip("-")
    value = 0
    for i in range(0, count, 600):
        piece = plain[i:i + 600]
        value = value * 10 ** len(piece) + int(piece)
    return -value if digits[0] == "-" else value


_DECODER = json.JSONDecoder(parse_int=_bounded_int, parse_constant=_nonfinite_constant)
_WS = re.compile(r"[ \t\n\r]*")
_SCALAR = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][-+]?[0-9]+)?|true|false|null|NaN|-?Infinity")
# Runs of openings (``[``, or ``{`` with a plain key: ``[{"a":[``) and of closings are taken at once.
_OPENS = re.compile(r'(?:\[++|\{"[^"\\\[\]{}]*+":)++')  # possessive: no backtracking state kept
_NOT_OPENING = bytes(b for b in range(256) if b not in b"[{")  # keys dropped from a run: its containers
_CLOSES = re.compile(r"[\]}]+")
_OPENER = str.maketrans("]}", "[{")
_scanstring = json.decoder.scanstring  # type: ignore[attr-defined]


def _skip_value(text: str, idx: int) -> int:
    """Check the JSON value at ``idx`` without building it, iteratively (any depth); returns the
    index just past it. Raises ValueError (IndexError at the end of the text) when it is not JSON.
    Linear in its length; runs of brackets are taken at once (a 64 MiB line in well under a second)."""
    stack = bytearray()  # b"[" or b"{" per open container
    while True:
        # a value is expected at idx
        idx = _WS.match(text, idx).end()  # type: ignore[union-attr]
        c = text[idx]
        run = _OPENS.match(text, idx) if c == "[" or c == "{" else None
        if run is not None:
            opened = run.group().encode("utf-8").translate(None, _NOT_OPENING)
            stack += opened
            idx = _WS.match(text, run.end()).end()  # type: ignore[union-attr]
            if opened[-1] == 0x7B or text[idx] != "]":
                continue  # a member's value, or an array's first value, follows
            stack.pop()  # an empty array
            idx += 1
        elif c == "{":
            stack += b"{"
            idx = _WS.match(text, idx + 1).end()  # type: ignore[union-attr]
            if text[idx] == "}":
                stack.pop()
                idx += 1
            else:
                idx = _member_key(text, idx)
                continue
        elif c == '"':
            idx = _scanstring(text, idx + 1)[1]
        else:
            m = _SCALAR.match(text, idx)
            if m is None:
                raise ValueError(f"Expecting value (char {idx})")
            idx = m.end()
        # after a value: close containers, or a comma and the next value
        while True:
            if not stack:
                return idx
            idx = _WS.match(text, idx).end()  # type: ignore[union-attr]
            c = text[idx]
            if c == ",":
                idx += 1
                if stack[-1] == 0x7B:  # "{"
                    idx = _member_key(text, _WS.match(text, idx).end())  # type: ignore[union-attr]
                break
            if c == "]" or c == "}":
                run = _CLOSES.match(text, idx)
                assert run is not None
                closers = run.group()[: len(stack)]  # what follows the value's end is not its own
                if stack[len(stack) - len(closers):] != closers[::-1].translate(_OPENER).encode("ascii"):
                    raise ValueError(f"Unexpected {c!r} (char {idx})")
                del stack[len(stack) - len(closers):]
                idx += len(closers)
            else:
                raise ValueError(f"Expecting ',' delimiter (char {idx})")


def _member_key(text: str, idx: int) -> int:
    """Past ``"key":`` at idx (whitespace after the colon not included)."""
    if text[idx] != '"':
        raise ValueError(f"Expecting property name enclosed in double quotes (char {idx})")
    idx = _WS.match(text, _scanstring(text, idx + 1)[1]).end()  # type: ignore[union-attr]
    if text[idx] != ":":
        raise ValueError(f"Expecting ':' delimiter (char {idx})")
    return idx + 1


def _deep_value(text: str, idx: int, depth: int) -> tuple[Any, int]:
    """The value at ``idx``; one too deep for the decoder is an :class:`Unreadable` (checked as
    JSON all the same), except that the top-level object and its object members (the
    ``checkpoint_record`` envelope) are read member by member."""
    try:
        return _DECODER.raw_decode(text, idx)
    except RecursionError:
        pass
    if depth < 2 and text.startswith("{", idx):
        return _deep_object(text, idx, depth + 1)
    return Unreadable("a value nested too deeply to read"), _skip_value(text, idx)


def _deep_object(text: str, idx: int, depth: int) -> tuple[dict[str, Any], int]:
    obj: dict[str, Any] = {}
    idx = _WS.match(text, idx + 1).end()  # type: ignore[union-attr]
    if text[idx] == "}":
        return obj, idx + 1
    while True:
        if text[idx] != '"':
            raise ValueError(f"Expecting property name enclosed in double quotes (char {idx})")
        key, idx = _scanstring(text, idx + 1)
        idx = _WS.match(text, idx).end()  # type: ignore[union-attr]
        if text[idx] != ":":
            raise ValueError(f"Expecting ':' delimiter (char {idx})")
        obj[key], idx = _deep_value(text, _WS.match(text, idx + 1).end(), depth)  # type: ignore[union-attr]
        idx = _WS.match(text, idx).end()  # type: ignore[union-attr]
        if text[idx] == "}":
            return obj, idx + 1
        if text[idx] != ",":
            raise ValueError(f"Expecting ',' delimiter (char {idx})")
        idx = _WS.match(text, idx + 1).end()  # type: ignore[union-attr]


def _deep_loads(text: str) -> Any:
    """A whole line too deep for the decoder: see :func:`_deep_value`."""
    idx = _WS.match(text).end()  # type: ignore[union-attr]
    try:
        value, end = _deep_value(text, idx, 0)
    except IndexError:
        raise ValueError("Unexpected end of the line") from None
    if _WS.match(text, end).end() != len(text):  # type: ignore[union-attr]
        raise ValueError(f"Extra data (char {end})")
    return value


def _slow_loads(raw: bytes) -> tuple[Any, str | None]:
    """Second look at a line orjson refused: (value, None) or (None, reason)."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return None, f"invalid UTF-8 at byte {exc.start}"
    try:
        try:
            return _DECODER.decode(text), None
        except RecursionError:
            return _deep_loads(text), None
    except ValueError as exc:
        # "Expecting value: line 1 column 9 (char 8)": keep the column, drop the line part.
        message = str(exc)
        if isinstance(exc, json.JSONDecodeError):
            message = f"{exc.msg} (column {exc.colno})"
        return None, f"invalid JSON: {message}"
    except RecursionError:
        return None, "invalid JSON: nested too deeply"


def hostile_values(obj: dict[str, Any]) -> tuple[tuple[str, str], ...]:
    """(field, reason) for each top-level field of a decoded line that holds a lone surrogate
    (in a key or a string, at any depth) or an :class:`Unreadable` value. Only lines orjson
    refused can hold either, so only they are walked."""
    found: list[tuple[str, str]] = []
    for name, value in obj.items():
        # a non-finite float in a typed field: field_warnings says it (once) in that field's terms
        problem = None if type(value) is float and name in _FIELD_NAMES else _hostile(value)
        if has_surrogates(name):
            problem = problem or _surrogate_reason(name)
        if problem is not None:
            found.append((name, problem))
    return tuple(found)


def _surrogate_reason(text: str) -> str:
    bad = next(ch for ch in text if 0xD800 <= ord(ch) <= 0xDFFF)
    return (f"holds a lone surrogate ({safe_text(bad)}): not valid Unicode "
            "(U+FFFD in JSON output, a visible escape in text)")


def _hostile(value: Any) -> str | None:
    """The first problem found in ``value`` (iteratively: any depth), or None."""
    stack = [value]
    while stack:
        v = stack.pop()
        t = type(v)
        if t is str:
            if has_surrogates(v):
                return _surrogate_reason(v)
        elif t is dict:
            for k, item in v.items():
                if type(k) is str and has_surrogates(k):
                    return _surrogate_reason(k)
                stack.append(item)
        elif t is list:
            stack.extend(v)
        elif t is Unreadable:
            return f"{v.what}: {ABSENT}"
        elif t is float and not math.isfinite(v):
            return f"holds {_nonfinite_name(v)}: not a finite number (not JSON; null in JSON output)"
    return None


def _kind(value: Any) -> str:
    if type(value) is float and not math.isfinite(value):
        return _nonfinite_name(value)
    return value.what if type(value) is Unreadable else type_name(value)


def parse_line(raw: bytes, line: int | None = None, offset: int = 0, observed_ns: int = 0) -> Record | None:
    """Parse one feed line (without its ``\\n``). Returns None for a blank line."""
    slow = False  # decoded by the standard library: it may hold lone surrogates or Unreadable values
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
            slow = True
    if type(obj) is not dict:
        return IngestError(line, offset, f"not a JSON object (got {_kind(obj)})", raw, observed_ns)
    digest = obj.get("registry_digest")
    if "checkpoint_record" in obj:
        return _envelope(obj, digest, slow, raw, line, offset, observed_ns)
    if type(digest) is str:
        return Checkpoint(digest, line, offset, raw, obj, observed_ns, extra=hostile_values(obj) if slow else ())
    if digest is None and "registry_digest" not in obj:
        return Entry(obj, line, offset, raw, observed_ns)
    return IngestError(line, offset, f"registry_digest must be a string (got {_kind(digest)})", raw, observed_ns)


def _envelope(obj: dict[str, Any], outer: Any, slow: bool, raw: bytes, line: int | None, offset: int,
              observed_ns: int) -> Record:
    """A line with ``checkpoint_record`` (SPEC §5: any object with a string ``registry_digest`` is a
    checkpoint, at the top level or inside the envelope):

    * an object ``checkpoint_record`` with a string digest is the checkpoint as the engine writes it
      (``data`` is that inner object). A top-level ``registry_digest`` beside it that differs, or is
      not a string, is a warning naming both; the inner digest is the one compared.
    * otherwise a string top-level ``registry_digest`` makes the whole line the checkpoint (``data``
      is the top-level object); a ``checkpoint_record`` that is not an object, or an object without
      a string digest, is a warning on the field ``checkpoint_record``.
    * with neither, the line is an ingest error (it claims to be a checkpoint; no digest to compare).
    """
    inner = obj["checkpoint_record"]
    inner_digest = inner.get("registry_digest") if type(inner) is dict else None
    if type(inner_digest) is str:
        telemetry = obj.get("detection_telemetry")
        extra = hostile_values(inner) if slow else ()
        if slow and telemetry is not None:
            extra += tuple(("detection_telemetry", r) for r in (_hostile(telemetry),) if r is not None)
        if outer is not None or "registry_digest" in obj:
            if type(outer) is not str:
                extra += (("registry_digest", f"the envelope's top-level registry_digest is not a string "
                           f"(got {_kind(outer)}): checkpoint_record's is compared"),)
            elif outer != inner_digest:
                extra += (("registry_digest", f"the envelope's top-level registry_digest "
                           f"{safe_text(outer[:12])}… differs from checkpoint_record's "
                           f"{safe_text(inner_digest[:12])}…: checkpoint_record's is compared"),)
        return Checkpoint(inner_digest, line, offset, raw, inner, observed_ns, True, telemetry, extra)
    if type(outer) is str:
        extra = hostile_values(obj) if slow else ()
        if type(inner) is not dict:
            why = f"expected an object, got {_kind(inner)}"
        elif "registry_digest" in inner:
            why = f"its registry_digest is not a string (got {_kind(inner_digest)})"
        else:
            why = "has no registry_digest"
        extra = (*(x for x in extra if x[0] != "checkpoint_record"),
                 ("checkpoint_record", f"{why}: the top-level registry_digest is compared"))
        return Checkpoint(outer, line, offset, raw, obj, observed_ns, extra=extra)
    if type(inner) is not dict:
        return IngestError(
            line, offset, f"checkpoint_record must be an object (got {_kind(inner)})", raw, observed_ns)
    if inner_digest is None and "registry_digest" not in inner:
        return IngestError(line, offset, "checkpoint_record has no registry_digest", raw, observed_ns)
    return IngestError(line, offset, f"registry_digest must be a string (got {_kind(inner_digest)})", raw,
                       observed_ns)


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
        if isinstance(raw, int):  # an over-long line, dropped by the splitter: its length
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
                elif digest is None and "registry_digest" not in obj:
                    append(Entry(obj, line, offset, raw, observed_ns))
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


BATCH_RECORDS = 8192  # records per batch (read_records, the follower): memory is bounded by it, not by the feed


def _batches(lines: list[bytes | int], line: int, first: int, max_line: int):
    """parse_lines over ``lines`` in slices of at most BATCH_RECORDS lines (non-empty lists only)."""
    if len(lines) <= BATCH_RECORDS:
        records = parse_lines(lines, line, first, 0, max_line)
        if records:
            yield records
        return
    for i in range(0, len(lines), BATCH_RECORDS):
        part = lines[i:i + BATCH_RECORDS]
        records = parse_lines(part, line + i, first, 0, max_line)
        try:
            first += sum(map(len, part)) + len(part)  # type: ignore[arg-type]
        except TypeError:  # an over-long line stands as its length
            first += sum(x if isinstance(x, int) else len(x) for x in part) + len(part)
        if records:
            yield records


def read_records(path, *, chunk_size: int = 1 << 20, max_line: int = MAX_LINE):
    """Read a whole feed file in chunks; yields lists of at most :data:`BATCH_RECORDS` records, so
    memory is bounded by the chunk and batch sizes whatever the feed holds (3,000,000 ``{}``
    lines: ``tests/bench/bench_memory.py``).

    A last line without its newline is still read (the file is complete for this purpose).
    Raises :class:`~polylog_console.core.infra.reader.UnreadableFile` (one line naming the feed) if
    the file cannot be opened or read, or is not a regular file (a FIFO or ``/dev/zero`` would block
    or never end): an ``OSError`` that escapes is never the feed's (callers must not say it is).
    """
    from polylog_console.core.infra.reader import UnreadableFile, open_regular

    splitter = LineSplitter(0, max_line)
    line = 1
    fd, _ = open_regular(path, what="feed")
    with open(fd, "rb") as handle:
        while True:
            try:
                chunk = handle.read(chunk_size)
            except OSError as exc:
                raise UnreadableFile(str(path), f"cannot read feed: {exc.strerror or exc}") from None
            if not chunk:
                break
            first, lines = splitter.feed(chunk)
            if lines:
                yield from _batches(lines, line, first, max_line)
                line += len(lines)
        if splitter.partial:
            first, lines = splitter.feed(b"\n")
            yield from _batches(lines, line, first, max_line)


tolerant_loads = _slow_loads  # the tolerant second look, for other files read as JSON (registry.json, metadata.json)
