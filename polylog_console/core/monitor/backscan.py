"""Finding where an incident began when it began before the loaded history (SPEC §6).

The follower loads only the feed's last ``feed.history`` checkpoints; when the first of them
already drifts, the incident's true start lies earlier in the file. :func:`find_start` walks the
feed backwards from that checkpoint, a page of records at a time (the follower's
:meth:`~polylog_console.core.feed.follower.FeedFollower.page_back`: bounded memory, nothing kept),
and stops at the first checkpoint that does not drift (it matches the stored digest under either
scheme: a scheme mismatch is not drift) or at the start of the file. It is bounded by a number
of checkpoints and a time; it runs on a worker thread and touches no monitor state: the session
hands its answer to :meth:`Monitor.restart_incident` on the event loop.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from polylog_console.core.feed.records import Checkpoint

MAX_CHECKPOINTS = 1_000_000  # checkpoints examined at most
MAX_SECONDS = 30.0  # wall time at most
PAGE = 4096  # records per page read backwards


@dataclass(frozen=True, slots=True)
class ScanResult:
    start: Checkpoint | None  # the earliest drifting checkpoint found before the history (None: none)
    complete: bool  # True: a non-drifting checkpoint or the start of the feed was reached
    scanned: int  # checkpoints examined
    reason: str  # "parity", "start of feed", "limit", "file replaced"

    @property
    def drifting(self) -> int:
        """Drifting checkpoints found before the history (the matching one that ended the scan excluded)."""
        return self.scanned - 1 if self.reason == "parity" else self.scanned

    @property
    def detail(self) -> str:
        where = f"start found at {self.start.display_label}" if self.start is not None else "no earlier drift"
        return f"{where} ({self.reason}, {self.scanned} checkpoints scanned backwards)"


def find_start(page_back: Callable[[int, int], list[Any]], before: int, digests: tuple[str, ...], *,
               max_checkpoints: int = MAX_CHECKPOINTS, max_seconds: float = MAX_SECONDS, page: int = PAGE,
               clock: Callable[[], float] = time.monotonic) -> ScanResult:
    """Scan backwards from byte ``before`` for the first checkpoint of the drift that reaches it;
    ``digests`` are the stored digest under both schemes (a checkpoint carrying one of them is
    not drifting). ``page_back(offset, count)`` returns up to ``count`` records ending before
    ``offset``, in file order ([] at the start of the file or when the file was replaced)."""
    deadline = clock() + max_seconds
    earliest: Checkpoint | None = None
    scanned = 0
    offset = before
    while True:
        if offset <= 0:
            return ScanResult(earliest, True, scanned, "start of feed")
        if scanned >= max_checkpoints or clock() > deadline:
            return ScanResult(earliest, False, scanned, "limit")
        records = page_back(offset, page)
        if not records:
            return ScanResult(earliest, False, scanned, "file replaced")
        for record in reversed(records):
            if record.__class__ is not Checkpoint:
                continue
            scanned += 1
            if record.digest in digests:
                return ScanResult(earliest, True, scanned, "parity")
            earliest = record
        offset = records[0].offset
