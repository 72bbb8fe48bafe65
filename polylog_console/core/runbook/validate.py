"""Schema validation of ``stable_polyforms.jsonl`` (SPEC §2), runbook step 2.

Every problem is reported with its line number, the field and a message: a line that is not
UTF-8 JSON, a line that is not an object, every schema violation of a line (not only the first),
a duplicate ``uuid`` and a duplicate symbol within a namespace. Blank lines are ignored.

Speed (100,000 polyforms in well under 2 s on two cores) comes from:

* a real JSON-Schema validator (fastjsonschema, draft-07) compiled once per process: a fail-fast
  variant checks every line, and only a failing line is checked again by the collect-all variant
  to list all its violations;
* the source split into byte ranges at newline boundaries, checked in parallel worker processes
  (``forkserver``: safe from a multi-threaded console) for large files; duplicates across ranges
  are found when the per-range results are merged, in file order;
* the cyclic garbage collector paused while millions of small objects are created (it otherwise
  re-walks them over and over and dominates the run time).

The same chunk machinery serves :mod:`polylog_console.core.runbook.rehydrate`, whose workers validate
and build catalog fragments in one pass.
"""

from __future__ import annotations

import contextlib
import gc
import os
import select
import signal
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import fastjsonschema
import orjson

from polylog_console.core.infra import reader
from polylog_console.core.infra.audit import AuditLog
from polylog_console.core.infra.parallel import process_context
from polylog_console.core.infra.text import safe_text
from polylog_console.core.model.errors import PolylogError, WorkspaceError
from polylog_console.core.model.progress import Cancelled, Progress
from polylog_console.core.registry.stored import DEFAULT_NAMESPACE, NAMESPACES, type_name

#: SPEC §2 as JSON Schema (draft-07: additional properties allowed; 2.0 is an integer, true is not).
#: (fastjsonschema anchors ``$`` as ``\Z``, so a uuid with a trailing newline does not match.)
SCHEMA: dict[str, Any] = {
    "$schema": "http://json-schema.org/draft-07/schema#",
    "title": "stable_polyforms.jsonl line",
    "type": "object",
    "required": ["uuid", "composition"],
    "properties": {
        "uuid": {"type": "string", "pattern": "^[0-9a-f]{32}$"},
        "composition": {"type": "string"},
        "namespace": {"type": "string", "enum": list(NAMESPACES)},
        "unicode_char": {"type": "string", "minLength": 1, "maxLength": 2},
        "O": {"type": "integer", "minimum": 1},
        "I": {"type": "integer", "minimum": 1},
        "vertices": {"type": "array"},
        "fold_angles": {"type": "array"},
        "stability": {"type": "number", "minimum": 0, "maximum": 1},
    },
}

LINE = "(line)"  # the ``field`` of a problem with the whole line
MAX_ERRORS = 100_000  # errors kept in a report; ``error_count`` still counts them all
PARALLEL_MIN_BYTES = 2 << 20  # below this, ``auto`` checks in-process (a pool costs ~0.15 s)
SERIAL_CHUNK = 1 << 20  # in-process chunks: progress and cancellation every ~30 ms
MIN_CHUNK = 64 << 10
MAX_CHUNK = 8 << 20
MAX_WORKERS = 16


@cache
def _validators() -> tuple[Callable[[Any], Any], Callable[[Any], Any]]:
    fast = fastjsonschema.compile(SCHEMA, use_default=False, detailed_exceptions=False)
    full = fastjsonschema.compile(SCHEMA, use_default=False, fast_fail=False)
    return fast, full


# -- the report ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ValidationError:
    """One problem: ``line`` (1-based), ``field`` (``""`` or ``"(line)"`` for the whole line), ``message``."""

    line: int
    field: str
    message: str

    def to_json(self) -> dict[str, Any]:
        return {"line": self.line, "field": self.field, "message": self.message}


@dataclass
class ValidationReport:
    """The outcome of validating a source. ``errors`` holds at most :data:`MAX_ERRORS` problems, in
    line order; ``error_count`` counts all of them. ``polyforms`` counts the lines holding a JSON
    object; ``lines`` counts every line (blank ones included, so line numbers go up to it)."""

    valid: bool
    lines: int
    polyforms: int
    errors: list[ValidationError]
    error_count: int
    source: str = "stable_polyforms.jsonl"
    duration: float = 0.0
    workers: int = 1

    @property
    def truncated(self) -> bool:
        return self.error_count > len(self.errors)

    def to_json(self) -> dict[str, Any]:
        return {
            "valid": self.valid,
            "source": self.source,
            "lines": self.lines,
            "polyforms": self.polyforms,
            "error_count": self.error_count,
            "errors": [e.to_json() for e in self.errors],
            "errors_truncated": self.truncated,
            "duration": round(self.duration, 3),
            "workers": self.workers,
        }

    def summary(self) -> str:
        """One line: ``stable_polyforms.jsonl: VALID, 2,000 polyforms in 2,000 lines``."""
        name = safe_text(self.source, 80)
        if self.valid:
            return f"{name}: VALID, {self.polyforms:,} polyforms in {self.lines:,} lines"
        noun = "error" if self.error_count == 1 else "errors"
        return f"{name}: INVALID, {self.error_count:,} {noun} in {self.lines:,} lines ({self.polyforms:,} polyforms)"

    def render_text(self, limit: int = 50) -> str:
        """The summary and the first ``limit`` problems, one per line, safe for a terminal."""
        out = [self.summary()]
        shown = self.errors[: max(0, limit)]
        width = len(str(shown[-1].line)) if shown else 1
        for e in shown:
            where = f"{safe_text(e.field, 30)}: " if e.field else ""
            out.append(f"  line {e.line:>{width}}  {where}{safe_text(e.message, 200)}")
        hidden = self.error_count - len(shown)
        if hidden > 0:
            more = (f"only the first {len(self.errors):,} are kept" if self.truncated
                    else "use --json for the full list")
            out.append(f"  ... and {hidden:,} more ({more})")
        return "\n".join(out)


class ValidationFailed(PolylogError):
    """The source is invalid; nothing was written. ``report`` lists the problems."""

    def __init__(self, report: ValidationReport) -> None:
        noun = "error" if report.error_count == 1 else "errors"
        first = ""
        if report.errors:
            e = report.errors[0]
            where = f"{safe_text(e.field, 30)}: " if e.field else ""
            first = f", first on line {e.line} ({where}{safe_text(e.message, 100)})"
        super().__init__(f"{safe_text(report.source, 80)} is invalid: {report.error_count:,} {noun}{first}; "
                         f"nothing written")
        self.report = report


# -- checking a chunk of lines ---------------------------------------------------------------

SYMBOL_SEP = "\x00"  # joins namespace and symbol into one key for the duplicate check


@dataclass
class ChunkResult:
    """What a worker sends back for one byte range: counts, problems, and, per polyform line, the
    columns the duplicate check needs (``record_lines[i]`` is the line of ``uuids[i]`` and
    ``symbols[i]``; a symbol key is ``namespace + "\\x00" + symbol``). A value that breaks the
    schema is None there: it is reported once, not again as a duplicate."""

    first_line: int
    lines: int = 0
    polyforms: int = 0
    errors: list[tuple[int, str, str]] = field(default_factory=list)
    error_count: int = 0
    record_lines: list[int] = field(default_factory=list)
    uuids: list[str | None] = field(default_factory=list)
    symbols: list[str | None] = field(default_factory=list)
    extra: Any = None  # whatever a builder adds (rehydrate: its part of the catalogs)


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector (reference counting still frees everything)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _shown(value: Any, limit: int = 60) -> str:
    """``string "abc"``, ``integer 0``, ``null``: a value in a message, cut and made safe."""
    if value is None:
        return "null"
    try:
        text = orjson.dumps(value).decode("utf-8")
    except TypeError:
        text = repr(value)
    return f"{type_name(value)} {safe_text(text, limit)}"


def _line_count(data: bytes) -> int:
    if not data:
        return 0
    return data.count(b"\n") + (0 if data.endswith(b"\n") else 1)


def schema_problems(obj: dict[str, Any]) -> list[tuple[str, str]]:
    """Every schema violation of one object, as (field, message); [] when it is valid.

    One problem per field, the first the schema finds (a field of the wrong type would otherwise
    also be reported as out of range or not in the enum)."""
    _fast, full = _validators()
    try:
        full(obj)
        return []
    except fastjsonschema.JsonSchemaValuesException as exc:
        found = exc.errors
    except fastjsonschema.JsonSchemaValueException as exc:
        found = [exc]
    problems: list[tuple[str, str]] = []
    seen: set[str] = set()
    for err in found:
        name = err.name or "data"
        fld = name[4:].lstrip(".") if name.startswith("data") else name
        if fld in seen:
            continue
        seen.add(fld)
        if err.rule == "required" and not fld:
            for missing in SCHEMA["required"]:
                if missing not in obj:
                    problems.append((missing, "required field is missing"))
            continue
        message = err.message
        if message.startswith(name):
            message = message[len(name):].strip()
        problems.append((fld, f"{message} (got {_shown(err.value)})"))
    return problems


def check_chunk(data: bytes, first_line: int, *, keep: bool = False) -> tuple[ChunkResult, list[dict[str, Any]]]:
    """Check the lines of ``data`` (complete lines; the first is line ``first_line``).

    Returns the result and, with ``keep``, the parsed objects of the valid lines (for builders)."""
    fast, _full = _validators()
    result = ChunkResult(first_line, _line_count(data))
    errors = result.errors
    record_lines = result.record_lines
    uuids = result.uuids
    symbols = result.symbols
    kept: list[dict[str, Any]] = []
    loads = orjson.loads
    decode_error = orjson.JSONDecodeError
    schema_error = fastjsonschema.JsonSchemaException
    count = 0

    def problem(line: int, fld: str, message: str) -> None:
        nonlocal count
        count += 1
        if len(errors) < MAX_ERRORS:
            errors.append((line, fld, message))

    with gc_paused():
        for offset, raw in enumerate(data.split(b"\n")):
            if not raw or raw.isspace():
                continue
            line = first_line + offset
            try:
                obj = loads(raw)
            except decode_error as exc:
                problem(line, LINE, f"not valid JSON: {safe_text(exc, 120)}")
                continue
            if type(obj) is not dict:
                problem(line, LINE, f"expected a JSON object, got {type_name(obj)}")
                continue
            result.polyforms += 1
            uuid = obj.get("uuid")
            symbol = obj.get("unicode_char")
            try:
                fast(obj)
            except schema_error:
                bad = set()
                for fld, message in schema_problems(obj):
                    problem(line, fld, message)
                    bad.add(fld)
                if "uuid" in bad:
                    uuid = None
                if "unicode_char" in bad or "namespace" in bad:
                    symbol = None
            else:
                if keep:
                    kept.append(obj)
            record_lines.append(line)
            uuids.append(uuid)
            symbols.append(None if symbol is None else obj.get("namespace", DEFAULT_NAMESPACE) + SYMBOL_SEP + symbol)
    result.error_count = count
    return result, kept


def validate_chunk(data: bytes, first_line: int) -> ChunkResult:
    """Worker entry point for validation only."""
    return check_chunk(data, first_line)[0]


# -- splitting and running in parallel -------------------------------------------------------


def available_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0)) or 1
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def parse_workers(value: int | str | None) -> int | None:
    """``"auto"``/None -> None (decide by size); ``N`` -> N (>= 1). ValueError otherwise."""
    if value is None or value == "auto":
        return None
    n = int(value)
    if n < 1:
        raise ValueError(f"workers must be 'auto' or a positive integer, not {value!r}")
    return n


def plan(size: int, workers: int | str | None, chunk_size: int | None = None) -> tuple[int, int]:
    """(worker processes, chunk size) for a source of ``size`` bytes. 1 worker = in-process."""
    wanted = parse_workers(workers)
    if wanted is None:
        wanted = 1 if size < PARALLEL_MIN_BYTES else min(available_cpus(), MAX_WORKERS)
    if chunk_size is None:
        chunk_size = SERIAL_CHUNK if wanted == 1 else max(MIN_CHUNK, min(MAX_CHUNK, size // (wanted * 4) + 1))
    return wanted, max(1, chunk_size)


def split_chunks(data: bytes, chunk_size: int) -> list[tuple[int, int, int]]:
    """Byte ranges ``(start, end, first_line)`` of about ``chunk_size`` bytes, each ending after a
    newline (the last may end without one), covering ``data`` exactly."""
    ranges = []
    start = 0
    line = 1
    size = len(data)
    while start < size:
        end = data.find(b"\n", min(start + chunk_size, size) - 1)
        end = size if end < 0 else end + 1
        ranges.append((start, end, line))
        line += data.count(b"\n", start, end)
        start = end
    return ranges


def _exit_with(parent: int) -> None:
    """Block until process ``parent`` ends, then end this worker at once.

    A forkserver child cannot rely on its parent's death: its parent is the forkserver, and the
    forkserver itself waits for a pipe that every child holds open. So each worker watches the
    process that asked for it (a pidfd becomes readable when that process exits: no polling)."""
    try:
        fd = os.pidfd_open(parent)
    except ProcessLookupError:
        os._exit(70)
    except (AttributeError, OSError):  # no pidfd (old kernel): check once a second instead
        while True:
            time.sleep(1.0)
            try:
                os.kill(parent, 0)
            except ProcessLookupError:
                os._exit(70)
            except OSError:
                pass
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    while not poller.poll():
        pass
    os._exit(70)


def _worker_init(parent: int) -> None:
    """In each worker: end with the requesting process, leave Ctrl-C to it, no cyclic GC."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    gc.disable()
    threading.Thread(target=_exit_with, args=(parent,), name="exit-with-parent", daemon=True).start()


def _pool_context() -> Any:
    """``forkserver`` (fork would copy a multi-threaded console's locks; spawn is slower), started
    so that it works under the console too (:mod:`polylog_console.core.infra.parallel`)."""
    return process_context(["polylog_console.core.runbook.rehydrate"])


def _run_on_range(fn: Callable[[bytes, int], Any], path: str, start: int, end: int, first_line: int) -> Any:
    """Worker side of :func:`run_chunks` with a file: read the byte range (from the page cache)
    instead of receiving it through a pipe, which would keep the parent busy copying."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        chunk = os.pread(fd, end - start, start)
    finally:
        os.close(fd)
    if len(chunk) != end - start:
        raise PolylogError(f"{Path(path).name} changed while it was being read; run again")
    return fn(chunk, first_line)


def run_chunks(data: bytes, fn: Callable[[bytes, int], Any], *, workers: int, chunk_size: int,
               progress: Progress | None = None, message: str = "checking", path: Path | None = None) -> list[Any]:
    """``fn(chunk_bytes, first_line)`` for every chunk of ``data``, results in file order.

    ``workers`` == 1 runs in this process; more runs a process pool. When ``data`` is the content
    of the file ``path``, workers read their ranges from it themselves (the caller then checks that
    the file did not change: :meth:`SourceFile.check_unchanged`). The progress callback gets bytes
    done / total; cancellation (``progress.cancel()``) is honoured between chunks and raises
    :class:`~polylog_console.core.model.progress.Cancelled` after the running chunks end."""
    progress = progress or Progress()
    ranges = split_chunks(data, chunk_size)
    total = len(data)
    progress.update(0, total, message)
    results: list[Any] = [None] * len(ranges)
    if workers <= 1 or len(ranges) <= 1:
        done = 0
        for i, (start, end, first) in enumerate(ranges):
            progress.check()
            results[i] = fn(data[start:end], first)
            done += end - start
            progress.update(done)
        progress.check()
        return results
    executor = ProcessPoolExecutor(max_workers=min(workers, len(ranges)), mp_context=_pool_context(),
                                   initializer=_worker_init, initargs=(os.getpid(),))
    try:
        futures: dict[Future[Any], int] = {}
        for i, (start, end, first) in enumerate(ranges):
            if path is not None:
                futures[executor.submit(_run_on_range, fn, str(path), start, end, first)] = i
            else:
                futures[executor.submit(fn, data[start:end], first)] = i
        pending = set(futures)
        done_bytes = 0
        while pending:
            progress.check()
            finished, pending = wait(pending, timeout=0.1, return_when=FIRST_COMPLETED)
            for future in finished:
                i = futures[future]
                results[i] = future.result()
                done_bytes += ranges[i][1] - ranges[i][0]
            if finished:
                progress.update(done_bytes)
        progress.check()
    except BrokenProcessPool:
        raise PolylogError("a worker process died unexpectedly (out of memory?); nothing was changed") from None
    finally:
        executor.shutdown(wait=True, cancel_futures=True)
    return results


# -- merging ---------------------------------------------------------------------------------


def _duplicates(chunks: list[ChunkResult], column: str) -> list[tuple[int, str, int]]:
    """``(line, value, first line)`` for every repeated value of a column, in file order.

    The common case, no duplicate at all, is decided by comparing a set's size with the list's
    (native speed); only then are values matched to lines."""
    values = [v for chunk in chunks for v in getattr(chunk, column) if v is not None]
    if len(set(values)) == len(values):
        return []
    first: dict[str, int] = {}
    found = []
    for chunk in chunks:
        for line, value in zip(chunk.record_lines, getattr(chunk, column)):
            if value is None:
                continue
            seen = first.setdefault(value, line)
            if seen != line:
                found.append((line, value, seen))
    return found


def merge(chunks: list[ChunkResult], *, source: str = "stable_polyforms.jsonl") -> ValidationReport:
    """One report from the chunks' results, adding duplicate uuids and duplicate symbols per
    namespace across the whole file (each reported on the later line, naming the first)."""
    errors: list[tuple[int, str, str]] = []
    count = 0
    for chunk in chunks:
        count += chunk.error_count
        errors.extend(chunk.errors)
    with gc_paused():
        for line, uuid, first in _duplicates(chunks, "uuids"):
            errors.append((line, "uuid", f"duplicate uuid {safe_text(uuid, 40)}, first on line {first}"))
            count += 1
        for line, key, first in _duplicates(chunks, "symbols"):
            ns, symbol = key.split(SYMBOL_SEP, 1)
            errors.append((line, "unicode_char", f"duplicate symbol {_shown(symbol)} in namespace {ns}, "
                                                 f"first on line {first}"))
            count += 1
        errors.sort(key=lambda e: e[0])  # stable: a line's schema problems stay before its duplicates
        kept = [ValidationError(*e) for e in errors[:MAX_ERRORS]]
    return ValidationReport(count == 0, sum(c.lines for c in chunks), sum(c.polyforms for c in chunks), kept, count,
                            source)


def validate_bytes(data: bytes, *, source: str = "stable_polyforms.jsonl", progress: Progress | None = None,
                   workers: int | str | None = None, chunk_size: int | None = None) -> ValidationReport:
    started = time.perf_counter()
    n, size = plan(len(data), workers, chunk_size)
    chunks = run_chunks(data, validate_chunk, workers=n, chunk_size=size, progress=progress,
                        message=f"validating {source}")
    report = merge(chunks, source=source)
    report.duration = time.perf_counter() - started
    report.workers = n
    return report


def _identity(st: os.stat_result) -> tuple[int, ...]:
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


@dataclass
class SourceFile:
    """A source file's bytes and its identity when read, to detect a change while workers read it."""

    path: Path
    data: bytes
    identity: tuple[int, ...]

    @classmethod
    def read(cls, path: Path) -> SourceFile:
        """Read ``path``, or raise a one-line :class:`WorkspaceError`."""
        path = Path(path)
        try:
            # Regular files only, opened without blocking: a FIFO in the source's place would
            # otherwise hold the open (and every signal) until a writer appears.
            fd, _ = reader.open_regular(path, what="source")
            with open(fd, "rb") as handle:
                identity = _identity(os.fstat(handle.fileno()))
                data = handle.read()
        except reader.UnreadableFile as exc:
            raise WorkspaceError(f"{path}: source not found" if exc.missing else str(exc)) from None
        except FileNotFoundError:
            raise WorkspaceError(f"{path}: source not found") from None
        except IsADirectoryError:
            raise WorkspaceError(f"{path}: is a directory, not a source file") from None
        except OSError as exc:
            raise WorkspaceError(f"{path}: cannot read source: {exc.strerror or exc}") from None
        return cls(path, data, identity)

    def check_unchanged(self) -> None:
        """Raise :class:`PolylogError` if the file was replaced or written since :meth:`read`."""
        try:
            now = _identity(os.stat(self.path))
        except OSError:
            now = ()
        if now != self.identity:
            raise PolylogError(f"{self.path.name} changed while it was being read; run again")


def read_source(path: Path) -> bytes:
    """The source's bytes, or a one-line :class:`WorkspaceError`."""
    return SourceFile.read(path).data


def validate_file(path: Path, progress: Progress | None = None, workers: int | str | None = None, *,
                  chunk_size: int | None = None) -> ValidationReport:
    """Validate a ``stable_polyforms.jsonl`` file (SPEC §2). ``workers``: None/"auto" or N processes."""
    started = time.perf_counter()
    source = SourceFile.read(path)
    n, size = plan(len(source.data), workers, chunk_size)
    chunks = run_chunks(source.data, validate_chunk, workers=n, chunk_size=size, progress=progress,
                        message=f"validating {source.path.name}", path=source.path if n > 1 else None)
    if n > 1:
        source.check_unchanged()
    report = merge(chunks, source=source.path.name)
    report.duration = time.perf_counter() - started
    report.workers = n
    return report


def validate_workspace(ws: Any, *, progress: Progress | None = None, workers: int | str | None = None,
                       actor: str | None = None, chunk_size: int | None = None) -> ValidationReport:
    """Runbook step 2 as an action: validate ``ws.source`` and append the audit events (SPEC §8)."""
    audit = AuditLog(ws.audit, actor)
    audit.append("action_started", action="validate", source=ws.relative(ws.source))
    try:
        report = validate_file(ws.source, progress, workers, chunk_size=chunk_size)
    except Cancelled as exc:
        audit.append("action_cancelled", action="validate", outcome="cancelled", message=str(exc))
        raise
    except PolylogError as exc:
        audit.append("action_failed", action="validate", outcome="error", message=str(exc))
        raise
    except Exception as exc:  # a bug: the audit log still closes what it opened
        audit.append("action_failed", action="validate", outcome="error", message=f"{type(exc).__name__}: {exc}")
        raise
    audit.append("action_finished", action="validate", outcome="ok" if report.valid else "problem",
                 lines=report.lines, polyforms=report.polyforms, error_count=report.error_count,
                 duration=round(report.duration, 3))
    return report
