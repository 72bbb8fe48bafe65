"""Runbook step 3, "rehydrate catalogs": rebuild ``catalogs/`` from ``stable_polyforms.jsonl``.

One pass over the source, in parallel worker processes for large files: each worker validates its
byte range (:mod:`polylog_console.core.runbook.validate`) and serialises its polyforms' attachment-graph
entries and scaler-table members (once each, in polylog6's encoding: :mod:`catalogs`); the parent merges
the ranges in file order (duplicates across ranges, the registry state, the scaler tables, the later
line winning) and streams the artifacts to disk, byte for byte what polylog6's ``populate_catalogs.py``
writes for the same source. An invalid source raises
:class:`~polylog_console.core.runbook.validate.ValidationFailed` before anything is written.

Atomicity. The new generation is written into a complete new directory beside the old one
(``WORKSPACE/.catalogs-staging-<pid>/``: the three artifacts, ``metadata.json`` and a copy of any
other file that lives in ``catalogs/``), every file and the directory are fsynced, and the two
directories are swapped in one step with Linux ``renameat2(RENAME_EXCHANGE)``; the workspace
directory is fsynced and the old generation removed. A crash, ``kill -9``, a full disk or a cancel
at any moment before the exchange leaves the old ``catalogs/`` untouched; after it, the new one is
complete. Where ``renameat2`` is unavailable, a journal (``.catalogs-journal.json``, written once
the staging directory is complete) makes two plain renames roll forward on the next run. Every run
first removes what a crashed run left behind. All of it happens under the workspace lock.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import hashlib
import json
import os
import shutil
import stat
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from polylog_console.core.infra import atomic
from polylog_console.core.infra.audit import AuditLog
from polylog_console.core.infra.lock import LockHeld, WorkspaceLock
from polylog_console.core.model.config import Config
from polylog_console.core.model.errors import PolylogError
from polylog_console.core.model.events import iso
from polylog_console.core.model.progress import Cancelled, Progress
from polylog_console.core.model.workspace import CATALOGS, SOURCE, Workspace, check_contained
from polylog_console.core.registry.stored import DEFAULT_NAMESPACE, NAMESPACES, DigestCache, State, symbol_count
from polylog_console.core.runbook import catalogs
from polylog_console.core.runbook.validate import (
    ChunkResult,
    SourceFile,
    ValidationFailed,
    check_chunk,
    gc_paused,
    merge,
    parse_workers,
    plan,
    run_chunks,
)

__all__ = ["Cancelled", "LockHeld", "RehydrateResult", "ValidationFailed", "recover", "rehydrate"]

STAGING_PREFIX = ".catalogs-staging-"
OLD_PREFIX = ".catalogs-old-"
JOURNAL = ".catalogs-journal.json"
ARTIFACT_NAMES = {Path(p).name for p in (*catalogs.ARTIFACTS.values(), catalogs.METADATA_PATH)}

_AT_FDCWD = -100
_RENAME_EXCHANGE = 2
_UNSUPPORTED = {errno.ENOSYS, errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP}


def _load_renameat2() -> Callable[..., int] | None:
    try:
        fn = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    fn.restype = ctypes.c_int
    return fn


_RENAMEAT2 = _load_renameat2()


@dataclass
class RehydrateResult:
    """What a rehydrate wrote (SPEC §11: polyforms, registry_digest, source_checksum, artifacts)."""

    polyforms: int
    registry_digest: str
    source_checksum: str
    artifacts: dict[str, dict[str, Any]]
    duration: float
    scheme: str = "engine"
    symbols: int = 0
    generated_at: str = ""
    workers: int = 1
    swap: str = "exchange"  # or "journal" (renameat2 unavailable), "rename" (no catalogs/ before)

    def to_json(self) -> dict[str, Any]:
        return {
            "polyforms": self.polyforms,
            "registry_digest": self.registry_digest,
            "source_checksum": self.source_checksum,
            "artifacts": self.artifacts,
            "scheme": self.scheme,
            "symbols": self.symbols,
            "generated_at": self.generated_at,
            "duration": round(self.duration, 3),
            "workers": self.workers,
        }


# -- the worker ------------------------------------------------------------------------------


def build_chunk(data: bytes, first_line: int) -> ChunkResult:
    """Worker entry point: validate a byte range and, if it is clean, build its part of the catalogs:
    ``(graph part, {ns: {uuid: symbol}}, {scaler key: scaler member bytes})``."""
    result, kept = check_chunk(data, first_line, keep=True)
    if result.error_count == 0:
        _exact_integers(data, first_line, result.record_lines, kept)
        with gc_paused():
            state: State = {}
            tables: dict[str, bytes] = {}
            scaler_item = catalogs.scaler_item
            for p in kept:
                key, item = scaler_item(p)
                tables[key] = item  # a later line replaces an earlier one, as in polylog6
                symbol = p.get("unicode_char")
                if symbol is None:
                    continue
                ns = p.get("namespace", DEFAULT_NAMESPACE)
                part = state.get(ns)
                if part is None:
                    part = state[ns] = {}
                part[p["uuid"]] = symbol
            result.extra = (catalogs.attachment_fragments(kept), state, tables)
    return result


_BIG = float(2**63)


def _may_hold_big_integer(p: dict[str, Any]) -> bool:
    """True when a field the catalogs copy may hold an integer beyond 64 bits, which orjson reads as a
    float (``99999999999999999999`` -> ``1e+20``): ``O`` or ``I`` a float that large, or a float that
    large in ``fold_angles`` (orjson writes it back with an exponent: ``e+``)."""
    for name in ("O", "I"):
        value = p.get(name)
        if type(value) is float and abs(value) >= _BIG:
            return True
    angles = p.get("fold_angles")
    return bool(angles) and b"e+" in orjson.dumps(angles)


def _exact_integers(data: bytes, first_line: int, record_lines: list[int], kept: list[dict[str, Any]]) -> None:
    """Parse again, with Python's json, the lines that may hold an integer beyond 64 bits: polylog6
    (Python's json) keeps ``99999999999999999999`` exact, and so must the catalogs. ``kept`` holds one
    object per line of ``record_lines`` (the chunk is valid). Rare: the lines are split only then."""
    lines: list[bytes] | None = None
    for i, p in enumerate(kept):
        if _may_hold_big_integer(p):
            if lines is None:
                lines = data.split(b"\n")
            kept[i] = json.loads(lines[record_lines[i] - first_line])


def assemble(chunks: list[ChunkResult]) -> tuple[State, dict[str, bytes], list[catalogs.GraphPart]]:
    """The registry state, the scaler entries and the graph fragments of a valid source, from the
    chunks' parts in file order (equal to what the single-pass builders of :mod:`catalogs` make)."""
    state: State = {ns: {} for ns in NAMESPACES}
    tables: dict[str, bytes] = {}
    fragments = []
    for chunk in chunks:
        chunk_fragments, chunk_state, chunk_tables = chunk.extra
        fragments.append(chunk_fragments)
        for ns, part in chunk_state.items():
            state.setdefault(ns, {}).update(part)
        tables.update(chunk_tables)  # chunks in file order: the later line's entry wins
    return state, tables, fragments


# -- files and directories -------------------------------------------------------------------


def _fail(message: str, exc: OSError) -> PolylogError:
    reason = exc.strerror or str(exc)
    code = errno.errorcode.get(exc.errno or 0)
    return PolylogError(f"{message}: {reason}{f' ({code})' if code else ''}")


def _fsync_path(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _remove(path: Path) -> None:
    """Remove a leftover file, symlink or directory tree (never following a symlink)."""
    if path.is_symlink() or not path.is_dir():
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        return

    def onerror(func: Any, target: str, exc_info: Any) -> None:
        # A read-only directory inside the leftover: make it writable and try once more.
        with contextlib.suppress(OSError):
            os.chmod(os.path.dirname(target), 0o700)
            func(target)

    shutil.rmtree(path, onerror=onerror)


def _write_artifact(directory: Path, name: str, pieces: Iterable[bytes]) -> tuple[str, int]:
    """Write ``pieces`` into a new file, fsync it; return (sha256, size)."""
    h = hashlib.sha256()
    size = 0
    check_contained(directory / name)  # a staging directory linked outside the workspace: refused
    fd = os.open(directory / name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
    with open(fd, "wb", buffering=1 << 20) as handle:
        for piece in pieces:
            handle.write(piece)
            h.update(piece)
            size += len(piece)
        handle.flush()
        os.fsync(handle.fileno())
    return h.hexdigest(), size


def _copy_unrelated(source: Path, staging: Path) -> list[str]:
    """Copy every entry of the old ``catalogs/`` that rehydrate does not produce (notes, extra
    catalogs, subdirectories; symlinks stay symlinks), fsynced. Returns the names copied."""
    copied: list[str] = []
    if not source.is_dir():
        return copied
    for entry in sorted(os.scandir(source), key=lambda e: e.name):
        name = entry.name
        if name in ARTIFACT_NAMES or (name.startswith(".") and name.endswith(".tmp")):
            continue
        target = staging / name
        if entry.is_symlink():
            os.symlink(os.readlink(entry.path), target)
        elif entry.is_dir(follow_symlinks=False):
            shutil.copytree(entry.path, target, symlinks=True)
            for dirpath, _dirs, files in os.walk(target):
                for file in files:
                    path = Path(dirpath) / file
                    if not path.is_symlink():
                        _fsync_path(path)
                _fsync_path(Path(dirpath))
        else:
            shutil.copy2(entry.path, target, follow_symlinks=False)
            _fsync_path(target)
        copied.append(name)
    return copied


def check_writable(ws: Workspace) -> None:
    """Refuse (changing nothing) when ``catalogs/`` or an artifact is read-only, or is not a plain
    directory. Mode bits are checked, not only access(2): root passes every permission check, but
    an operator who removed the write bits meant "do not touch"."""
    root = ws.root
    if not os.access(root, os.W_OK) or not os.stat(root).st_mode & 0o222:
        raise PolylogError(f"workspace {root} is read-only: cannot rehydrate; nothing was changed")
    cat = ws.catalogs
    try:
        st = os.lstat(cat)
    except FileNotFoundError:
        return
    if stat.S_ISLNK(st.st_mode):
        raise PolylogError(f"{CATALOGS}/ is a symbolic link: rehydrate replaces the directory itself, so it "
                           f"refuses to replace a link; make {CATALOGS}/ a plain directory")
    if not stat.S_ISDIR(st.st_mode):
        raise PolylogError(f"{CATALOGS} is not a directory; nothing was changed")
    if not st.st_mode & 0o222 or not os.access(cat, os.W_OK):
        raise PolylogError(f"{CATALOGS}/ is read-only (mode {stat.S_IMODE(st.st_mode):04o}): rehydrate refused, "
                           f"nothing was changed; make it writable (chmod u+w {CATALOGS}) to rehydrate")
    for name in sorted(ARTIFACT_NAMES):
        try:
            fst = os.lstat(cat / name)
        except FileNotFoundError:
            continue
        if stat.S_ISREG(fst.st_mode) and not fst.st_mode & 0o222:
            raise PolylogError(f"{CATALOGS}/{name} is read-only (mode {stat.S_IMODE(fst.st_mode):04o}): rehydrate "
                               f"refused, nothing was changed")


def _exchange(root_fd: int, a: str, b: str) -> bool:
    """Atomically swap directory entries ``a`` and ``b`` of ``root_fd``. False when unsupported."""
    fn = _RENAMEAT2
    if fn is None:
        return False
    if fn(root_fd, os.fsencode(a), root_fd, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()
    if err in _UNSUPPORTED:
        return False
    raise OSError(err, os.strerror(err), b)


def recover(ws: Workspace) -> list[str]:
    """Finish or undo what a crashed rehydrate left (call under the workspace lock).

    With a journal, the staging directory it names is complete: the swap rolls forward. Every
    other ``.catalogs-staging-*`` / ``.catalogs-old-*`` entry is garbage and is removed.
    Returns what was done, for the audit log."""
    root = ws.root
    done: list[str] = []
    journal = root / JOURNAL
    if journal.exists():
        try:
            info = orjson.loads(journal.read_bytes())
            staging = root / Path(str(info["staging"])).name
            old = root / Path(str(info["old"])).name
        except (OSError, orjson.JSONDecodeError, KeyError, TypeError):
            info = None
        if info is not None and staging.name.startswith(STAGING_PREFIX) and old.name.startswith(OLD_PREFIX):
            cat = ws.catalogs
            if staging.is_dir():
                if os.path.lexists(cat) and not os.path.lexists(old):
                    os.rename(cat, old)
                if not os.path.lexists(cat):
                    os.rename(staging, cat)
                    done.append(f"rolled forward an interrupted swap ({staging.name})")
            elif not os.path.lexists(cat) and old.is_dir():
                os.rename(old, cat)
                done.append(f"restored {CATALOGS}/ from {old.name}")
            atomic.fsync_dir(root)
        journal.unlink()
        atomic.fsync_dir(root)
    for entry in os.scandir(root):
        if entry.name.startswith((STAGING_PREFIX, OLD_PREFIX)):
            _remove(Path(entry.path))
            done.append(f"removed leftover {entry.name}")
    return done


def _swap(ws: Workspace, staging: Path) -> str:
    """Put the complete ``staging`` directory in place of ``catalogs/`` in one atomic step and
    remove the previous generation; returns how (``exchange``, ``journal`` or ``rename``).

    Raises OSError only when nothing was swapped (``catalogs/`` is then the previous generation)."""
    root = ws.root
    root_fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        if not os.path.lexists(ws.catalogs):
            os.rename(staging.name, CATALOGS, src_dir_fd=root_fd, dst_dir_fd=root_fd)
            how = "rename"
        elif _exchange(root_fd, staging.name, CATALOGS):
            how = "exchange"
        else:
            old = OLD_PREFIX + staging.name[len(STAGING_PREFIX):]
            atomic.write_bytes(root / JOURNAL, orjson.dumps({"staging": staging.name, "old": old}))
            try:
                os.rename(CATALOGS, old, src_dir_fd=root_fd, dst_dir_fd=root_fd)
                try:
                    os.rename(staging.name, CATALOGS, src_dir_fd=root_fd, dst_dir_fd=root_fd)
                except OSError:
                    os.rename(old, CATALOGS, src_dir_fd=root_fd, dst_dir_fd=root_fd)
                    raise
            except OSError:
                with contextlib.suppress(OSError):
                    os.unlink(JOURNAL, dir_fd=root_fd)
                raise
            with contextlib.suppress(OSError):
                os.fsync(root_fd)
                os.unlink(JOURNAL, dir_fd=root_fd)
            staging = root / old
            how = "journal"
        # Swapped: from here on nothing may report a failure (the new generation is in place).
        with contextlib.suppress(OSError):
            os.fsync(root_fd)
    finally:
        os.close(root_fd)
    if how != "rename":
        with contextlib.suppress(OSError):
            _remove(staging)  # the previous generation; a leftover is removed by the next run
    return how


# -- the action ------------------------------------------------------------------------------


def _build_and_swap(ws: Workspace, config: Config, workers: int | str, progress: Progress,
                    chunk_size: int | None, audit: AuditLog) -> RehydrateResult:
    recovered = recover(ws)
    if recovered:
        audit.append("rehydrate_recovered", action="rehydrate", details=recovered)
    check_writable(ws)
    progress.update(message=f"reading {SOURCE}")
    source = SourceFile.read(ws.source)
    data = source.data
    source_checksum = catalogs.sha256_bytes(data)
    n, size = plan(len(data), workers, chunk_size)
    chunks = run_chunks(data, build_chunk, workers=n, chunk_size=size, progress=progress,
                        message=f"validating and building from {SOURCE}", path=ws.source if n > 1 else None)
    if n > 1:
        source.check_unchanged()  # the workers read the file themselves: it must be what we hashed
    report = merge(chunks, source=SOURCE)
    report.workers = n
    if not report.valid:
        raise ValidationFailed(report)
    del data, source
    progress.update(message="assembling catalogs")
    scheme = config.scheme
    generated_at = iso()
    with gc_paused():
        state, tables, fragments = assemble(chunks)
        del chunks
        registry = catalogs.registry_document(state, label=f"hydration-{generated_at}", scheme=scheme,  # type: ignore[arg-type]
                                              generated_at=generated_at)
        pieces: dict[str, Iterable[bytes]] = {
            catalogs.ARTIFACTS["registry"]: [catalogs.dump(registry)],
            catalogs.ARTIFACTS["scaler_tables"]: catalogs.scaler_pieces(tables),
            catalogs.ARTIFACTS["attachment_graph"]: catalogs.graph_pieces(fragments),
        }
    progress.check()

    staging = ws.root / f"{STAGING_PREFIX}{os.getpid()}"
    progress.update(message="writing the new catalogs")
    try:
        if os.path.lexists(staging):
            _remove(staging)
        os.mkdir(staging, 0o700)
        checksums: dict[str, str] = {}
        sizes: dict[str, int] = {}
        for rel, parts in pieces.items():
            checksums[rel], sizes[rel] = _write_artifact(staging, Path(rel).name, parts)
            progress.check()
        meta = catalogs.metadata_from_checksums(source_checksum, checksums, registry["digest"],
                                                source_file=SOURCE, generated_at=generated_at)
        meta_bytes = catalogs.python_json(meta)
        checksums[catalogs.METADATA_PATH], sizes[catalogs.METADATA_PATH] = _write_artifact(
            staging, Path(catalogs.METADATA_PATH).name, [meta_bytes])
        _copy_unrelated(ws.catalogs, staging)
        mode = stat.S_IMODE(os.stat(ws.catalogs).st_mode) if ws.catalogs.is_dir() else 0o755
        os.chmod(staging, mode)
        atomic.fsync_dir(staging)
        progress.check()  # the last moment a cancel is honoured: past here the swap completes
        progress.update(message="swapping in the new catalogs")
        how = _swap(ws, staging)
    except BaseException as exc:
        if os.path.lexists(staging):
            with contextlib.suppress(OSError):
                _remove(staging)
        if isinstance(exc, OSError):
            raise _fail(f"cannot write the new catalogs, the previous ones are unchanged ({ws.relative(staging)})",
                        exc) from None
        raise
    DigestCache(ws.digest_cache).put(checksums[catalogs.ARTIFACTS["registry"]], scheme, registry["digest"])
    names = {path: name for name, path in catalogs.ARTIFACTS.items()}
    names[catalogs.METADATA_PATH] = "metadata"
    artifacts = {names[rel]: {"path": rel, "checksum": checksums[rel], "bytes": sizes[rel]}
                 for rel in sorted(checksums)}
    progress.update(message="done", force=True)
    return RehydrateResult(report.polyforms, registry["digest"], source_checksum, artifacts, 0.0, scheme,
                           symbol_count(state), generated_at, n, how)


def rehydrate(ws: Workspace, config: Config, *, workers: int | str = "auto", progress: Progress | None = None,
              lock_wait: float = 0.0, actor: str | None = None, chunk_size: int | None = None) -> RehydrateResult:
    """Validate the source and rebuild ``catalogs/`` atomically under the workspace lock.

    Raises :class:`ValidationFailed` (nothing written; ``.report`` lists the problems),
    :class:`LockHeld` (another action holds the workspace), :class:`Cancelled` (nothing changed),
    or :class:`PolylogError` with a one-line message for I/O problems (nothing changed). Appends
    ``action_started`` / ``action_finished`` / ``action_failed`` / ``action_cancelled`` audit events.
    """
    progress = progress or Progress()
    audit = AuditLog(ws.audit, actor)
    started = time.perf_counter()
    audit.append("action_started", action="rehydrate", workers=str(workers))
    try:
        try:
            parse_workers(workers)
        except (TypeError, ValueError):
            raise PolylogError(f"--workers must be 'auto' or a positive integer, not {workers!r}") from None
        with WorkspaceLock(ws, "rehydrate", wait=lock_wait, progress=progress, actor=audit.actor):
            result = _build_and_swap(ws, config, workers, progress, chunk_size, audit)
    except ValidationFailed as exc:
        audit.append("action_finished", action="rehydrate", outcome="problem", message=str(exc),
                     error_count=exc.report.error_count, written=False)
        raise
    except Cancelled as exc:
        audit.append("action_cancelled", action="rehydrate", outcome="cancelled", message=str(exc), written=False)
        raise
    except PolylogError as exc:
        audit.append("action_failed", action="rehydrate", outcome="error", message=str(exc), written=False)
        raise
    except OSError as exc:
        error = _fail("rehydrate failed", exc)
        audit.append("action_failed", action="rehydrate", outcome="error", message=str(error), written=False)
        raise error from None
    except KeyboardInterrupt:
        audit.append("action_cancelled", action="rehydrate", outcome="cancelled", message="interrupted",
                     written=False)
        raise
    except Exception as exc:  # a bug: the audit log still closes what it opened
        audit.append("action_failed", action="rehydrate", outcome="error", message=f"{type(exc).__name__}: {exc}",
                     written=False)
        raise
    result.duration = time.perf_counter() - started
    audit.append("action_finished", action="rehydrate", outcome="ok", polyforms=result.polyforms,
                 registry_digest=result.registry_digest, source_checksum=result.source_checksum,
                 duration=round(result.duration, 3), workers=result.workers, swap=result.swap)
    return result
