"""Runbook step 4, "recompute digest": digest ``catalogs/registry.json`` afresh, compare it with
the latest checkpoint (or one chosen by label), diff the symbols when the checkpoint carries a
state, and verify ``catalogs/metadata.json`` against the files."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from polylog_console.core.catalogs import CatalogCheck, verify_catalogs
from polylog_console.core.config import Config, MonitorConfig
from polylog_console.core.diff import RegistryDiff
from polylog_console.core.errors import PolylogError, WorkspaceError
from polylog_console.core.monitor import Monitor
from polylog_console.core.records import Checkpoint, read_records
from polylog_console.core.registry import StoredRegistry
from polylog_console.core.workspace import Workspace


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


def find_checkpoint(feed: Path, label: str = "latest") -> Checkpoint | None:
    """The last checkpoint of the feed, or the last one with ``label``."""
    found = None
    try:
        for batch in read_records(feed):
            for record in batch:
                if isinstance(record, Checkpoint) and (label == "latest" or record.label == label):
                    found = record
    except FileNotFoundError:
        raise WorkspaceError(f"{feed}: feed not found") from None
    except OSError as exc:
        raise WorkspaceError(f"{feed}: cannot read feed: {exc.strerror or exc}") from None
    return found


def recompute(ws: Workspace, config: Config, checkpoint: str = "latest") -> RecomputeResult:
    stored = StoredRegistry.for_workspace(ws, config.scheme)  # type: ignore[arg-type]
    view = stored.get()  # RegistryError (exit 2) when unreadable
    cp = find_checkpoint(config.feed.path, checkpoint)
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
    return RecomputeResult(view.digest, config.scheme, view.symbols, cp, match, scheme_mm, diff, diff_error,
                           verify_catalogs(ws.root), view.file_digest_ok)
