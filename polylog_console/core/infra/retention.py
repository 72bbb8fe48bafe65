"""Retention of the directories that grow with every incident (issue 10: nothing grows without
bound over months): ``memory/escalations/`` (bundles), ``memory/reports/`` (post-incident reports)
and ``memory/outbox/failed/`` (deliveries a sink refused for good).

Each keeps at most ``keep`` files and none older than ``max_age`` (``[retention]`` in
``monitoring.toml``; defaults in :class:`~polylog_console.core.model.config.RetentionConfig`:
200 bundles / 180 days, 200 reports / 365 days, 1000 refused deliveries / 30 days), and **never
deletes the newest file**, however old: the last bundle of a quiet workspace stays. A directory
is pruned by whoever writes a new file into it, right after writing (the bundle writer, the
report writer, the outbox when it sets a delivery aside), so a directory only grows by a write
and each write brings it back within its limits.

Age is the file's modification time; order is newest first by modification time, then by name.
Only regular files are counted (not directories, not symlinks, not the ``.name.tmp`` files of
an atomic write in progress; such a temporary file older than :data:`STALE_TMP` seconds is what a
process killed mid-write left behind, and is removed). Two processes pruning at once are
harmless: a file already gone is skipped.
"""

from __future__ import annotations

import contextlib
import os
import stat
import time
from pathlib import Path
from typing import Any

ESCALATIONS = "memory/escalations"
REPORTS = "memory/reports"
FAILED = "memory/outbox/failed"
STALE_TMP = 3600.0  # a temporary file of an atomic write this old was left by a killed writer


def prune(directory: Path, *, keep: int, max_age: float | None = None, now: float | None = None) -> list[Path]:
    """Delete the files of ``directory`` beyond the newest ``keep`` or older than ``max_age``
    seconds, never the newest. Returns what was deleted (nothing when the directory is missing)."""
    now = time.time() if now is None else now
    entries: list[tuple[int, str, str]] = []
    try:
        with os.scandir(directory) as it:
            for entry in it:
                try:
                    st = entry.stat(follow_symlinks=False)
                except OSError:
                    continue
                if entry.name.startswith("."):
                    if entry.name.endswith(".tmp") and stat.S_ISREG(st.st_mode) and now - st.st_mtime > STALE_TMP:
                        with contextlib.suppress(OSError):
                            os.unlink(entry.path)
                    continue
                if stat.S_ISREG(st.st_mode):
                    entries.append((st.st_mtime_ns, entry.name, entry.path))
    except OSError:
        return []
    entries.sort(reverse=True)
    removed: list[Path] = []
    cutoff_ns = None if not max_age else int((now - max_age) * 1e9)
    for index, (mtime_ns, _name, path) in enumerate(entries):
        if index == 0:
            continue  # the newest is always kept
        if index < keep and (cutoff_ns is None or mtime_ns >= cutoff_ns):
            continue
        try:
            os.unlink(path)
        except FileNotFoundError:
            continue
        except OSError:
            break  # a read-only directory: nothing more can go
        removed.append(Path(path))
    return removed


def prune_kind(ws: Any, kind: str, retention: Any) -> list[Path]:
    """Apply ``retention`` (a :class:`~polylog_console.core.model.config.RetentionConfig`) to one of
    ``escalations``, ``reports`` or ``failed`` of workspace ``ws``."""
    relative = {"escalations": ESCALATIONS, "reports": REPORTS, "failed": FAILED}[kind]
    return prune(Path(ws.root) / relative, keep=getattr(retention, f"{kind}_keep"),
                 max_age=getattr(retention, f"{kind}_max_age"))


def prune_workspace(ws: Any, retention: Any) -> dict[str, int]:
    """All three directories at once; the number of files deleted in each."""
    return {kind: len(prune_kind(ws, kind, retention)) for kind in ("escalations", "reports", "failed")}
