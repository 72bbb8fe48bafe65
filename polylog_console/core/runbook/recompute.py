"""Runbook step 4, "recompute digest": digest ``catalogs/registry.json`` afresh, compare it with
the latest checkpoint (or one chosen by label), diff the symbols when the checkpoint carries a
state, and verify ``catalogs/metadata.json`` against the files."""

from __future__ import annotations

import itertools
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from polylog_console.core.feed.follower import BackScanner, count_newlines
from polylog_console.core.feed.records import MAX_LINE, Checkpoint, parse_line, read_records
from polylog_console.core.infra.reader import open_regular
from polylog_console.core.model.config import Config, MonitorConfig
from polylog_console.core.model.errors import PolylogError, WorkspaceError
from polylog_console.core.model.progress import Progress
from polylog_console.core.model.workspace import Workspace
from polylog_console.core.monitor.rules import Monitor
from polylog_console.core.registry.diff import RegistryDiff
from polylog_console.core.registry.stored import StoredRegistry
from polylog_console.core.runbook.catalogs import CatalogCheck, verify_catalogs


@dataclass
class RecomputeResult:
    stored_digest: str
    scheme: str
    symbols: int
    checkpoint: Checkpoint | None
    registry_match: bool | None
    scheme_mismatch: bool
    diff: RegistryDiff | None
    diff_error: str | None
    catalogs: CatalogCheck
    file_digest_ok: bool

    @property
    def ok(self) -> bool:
        return bool(self.registry_match) and self.catalogs.consistent and self.file_digest_ok

    def to_json(self) -> dict[str, Any]:
        cp = self.checkpoint
        return {
            "stored_digest": self.stored_digest,
            "scheme": self.scheme,
            "symbols": self.symbols,
            "checkpoint": None if cp is None else {
                "label": cp.display_label, "line": cp.line, "registry_digest": cp.digest,
                "timestamp": cp.timestamp, "has_state": cp.has_state},
            "registry_match": self.registry_match,
            "scheme_mismatch": self.scheme_mismatch,
            "diff": None if self.diff is None else self.diff.summary(),
            "diff_error": self.diff_error,
            "catalogs": self.catalogs.to_json(),
            "registry_file_digest_ok": self.file_digest_ok,
        }


def _last_checkpoint(feed: Path, progress: Progress | None, block: int = 64 * 1024) -> Checkpoint | None:
    """The feed's last checkpoint, read backwards from the end (never the whole of a big feed). A
    last line without its newline counts, as :func:`read_records` reads it."""
    fd, _ = open_regular(feed, what="feed")  # a FIFO or a device is refused, never waited on
    try:
        end = os.fstat(fd).st_size
        # blocks of at most 256 KB: a burst of tiny lines never becomes a region of millions of lines
        scanner = BackScanner(fd, end, first_block=block, max_block=256 * 1024)
        regions = iter(scanner)
        first = next(regions, None)  # reading the last block places scanner.boundary
        boundary = scanner.boundary or 0
        unterminated: list[tuple[int, list[bytes | int]]] = (
            [(boundary, [os.pread(fd, end - boundary, boundary)])] if 0 < end - boundary <= MAX_LINE else [])
        for offset, lines in itertools.chain(unterminated, [first] if first else [], regions):
            if progress is not None:
                progress.check()
            starts, at = [], offset
            for line in lines:  # an over-long line comes as its length
                starts.append(at)
                at += (line if isinstance(line, int) else len(line)) + 1
            for line, at in zip(reversed(lines), reversed(starts), strict=True):
                record = parse_line(line, None, at) if type(line) is bytes else None
                if isinstance(record, Checkpoint):
                    record.line = _line_number(fd, at, progress)
                    return record
    finally:
        os.close(fd)
    return None


def _line_number(fd: int, offset: int, progress: Progress | None, step: int = 64 << 20) -> int:
    """1-based line number of the line starting at ``offset``, counted in steps the operator can
    cancel between."""
    count = 0
    for start in range(0, offset, step):
        if progress is not None:
            progress.check()
        count += count_newlines(fd, start, min(offset, start + step)) or 0
    return count + 1


def find_checkpoint(feed: Path, label: str = "latest", progress: Progress | None = None) -> Checkpoint | None:
    """The last checkpoint of the feed, or the last one with ``label``."""
    found = None
    try:
        if label == "latest":
            return _last_checkpoint(feed, progress)
        size = max(1, feed.stat().st_size)
        done = 0
        for batch in read_records(feed):
            if progress is not None:
                progress.check()
            for record in batch:
                if isinstance(record, Checkpoint) and record.label == label:
                    found = record
            if batch and progress is not None:
                done = max(done, batch[-1].offset)
                progress.update(done, size, None)
    except FileNotFoundError:
        raise WorkspaceError(f"{feed}: feed not found") from None
    except OSError as exc:
        raise WorkspaceError(f"{feed}: cannot read feed: {exc.strerror or exc}") from None
    return found


def recompute(ws: Workspace, config: Config, checkpoint: str = "latest",
              progress: Progress | None = None) -> RecomputeResult:
    """Runbook step 4. ``progress`` reports the phases and lets the operator cancel between them."""
    if progress is not None:
        progress.update(0, 3, "digesting catalogs/registry.json")
    # "Recompute" means it: the digest cache is not consulted, so no cache file, however forged,
    # can stand in for the digest of the file's state (the monitor uses the cache, checked).
    stored = StoredRegistry(ws.registry, config.scheme, None, label=ws.relative(ws.registry))  # type: ignore[arg-type]
    view = stored.get()  # RegistryError (exit 2) when unreadable
    if progress is not None:
        progress.check()
        progress.update(1, 3, f"finding the {checkpoint} checkpoint")
    cp = find_checkpoint(config.feed.path, checkpoint, progress)
    if progress is not None:
        progress.check()
        progress.update(2, 3, "comparing and verifying catalogs")
    if cp is None and checkpoint != "latest":
        raise PolylogError(f"no checkpoint labelled {checkpoint!r} in {ws.relative(config.feed.path)}")
    monitor = Monitor(stored, MonitorConfig(scheme=config.scheme), ws)
    match = None
    scheme_mm = False
    diff = None
    diff_error = None
    if cp is not None:
        monitor.process([cp])
        match = monitor.latest_match
        scheme_mm = monitor.latest_scheme_mismatch
        if match is False:
            diff = monitor.diff_for(cp)
            diff_error = monitor.diff_error(cp)
            if diff is None and diff_error is None:
                diff_error = "the checkpoint carries no registry_state or registry_snapshot"
    catalogs = verify_catalogs(ws.root)
    if progress is not None:
        progress.update(3, 3, "done")
    return RecomputeResult(view.digest, config.scheme, view.symbols, cp, match, scheme_mm, diff, diff_error,
                           catalogs, view.file_digest_ok)
