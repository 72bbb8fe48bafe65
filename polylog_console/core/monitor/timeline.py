"""The checkpoints the console's table shows: a bounded window over an endless feed.

New checkpoints are appended at the end (the oldest fall off past ``capacity``); older history is
paged in at the front on demand (``FeedFollower.page_back``) until the window is full. Every row has
a *sequence number* that never changes while the row is held, so a screen can keep its cursor and
scroll position on the same checkpoint while rows arrive and leave: ``seq(row i) = first_seq + i``.

The table renders only the rows in view (``row(seq)``), so holding 10,000 rows costs nothing per
frame. Nothing here knows about Textual.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from polylog_console.core.feed.records import Checkpoint
from polylog_console.core.model.events import CheckpointEvent


@dataclass(slots=True)
class Row:
    """One checkpoint as the table shows it. ``live``: seen arriving while the console ran (its
    detection latency was measured); history rows read at start or paged in have no latency."""

    checkpoint: Checkpoint
    match: bool | None
    scheme_mismatch: bool = False
    latency_ms: float | None = None
    live: bool = False

    @classmethod
    def from_event(cls, event: CheckpointEvent, live: bool) -> Row:
        return cls(event.checkpoint, event.registry_match, event.scheme_mismatch,
                   event.latency_ms if live else None, live)


def _rechecked(old: Row, new: Row) -> Row:
    return Row(old.checkpoint, new.match, new.scheme_mismatch, old.latency_ms, old.live)


def classify(cp: Checkpoint, stored_digest: str | None, other_digest: str | None = None) -> Row:
    """A history row (paged in): compared with the stored registry as it is now."""
    if stored_digest is None:
        return Row(cp, None)
    if cp.digest == stored_digest:
        return Row(cp, True)
    return Row(cp, False, scheme_mismatch=other_digest is not None and cp.digest == other_digest)


class Timeline:
    def __init__(self, capacity: int = 5000) -> None:
        self.capacity = max(1, capacity)
        self._rows: deque[Row] = deque()
        self.first_seq = 0  # seq of the oldest row held
        self.evicted = 0  # rows dropped at the front so far
        self.reached_start = False  # paging back found the beginning of the feed

    def __len__(self) -> int:
        return len(self._rows)

    @property
    def end_seq(self) -> int:
        """One past the newest row's seq."""
        return self.first_seq + len(self._rows)

    def row(self, seq: int) -> Row | None:
        index = seq - self.first_seq
        if 0 <= index < len(self._rows):
            return self._rows[index]
        return None

    def rows(self, start: int, stop: int) -> list[Row]:
        """Rows with ``start <= seq < stop`` (clipped to what is held)."""
        lo = max(start, self.first_seq) - self.first_seq
        hi = min(stop, self.end_seq) - self.first_seq
        rows = self._rows
        return [rows[i] for i in range(lo, hi)] if hi > lo else []

    @property
    def latest(self) -> Row | None:
        return self._rows[-1] if self._rows else None

    @property
    def oldest(self) -> Row | None:
        return self._rows[0] if self._rows else None

    def same_checkpoint(self, row: Row) -> bool:
        """``row`` is the newest held row compared again (a recompute or a rehydrate re-evaluates
        the latest checkpoint: the same line of the same file, not a new checkpoint)."""
        latest = self._rows[-1] if self._rows else None
        if latest is None:
            return False
        a, b = latest.checkpoint, row.checkpoint
        return a is b or (a.offset == b.offset and a.raw == b.raw)

    def add(self, rows: Iterable[Row]) -> tuple[int, bool]:
        """New rows from the monitor, in order: a row that re-compares the newest held checkpoint
        replaces that row's result (keeping its latency and liveness) instead of adding a copy.
        Returns (rows dropped at the front, whether a held row changed in place)."""
        fresh: list[Row] = []
        updated = False
        for row in rows:
            if fresh:
                if fresh[-1].checkpoint is row.checkpoint:
                    fresh[-1] = _rechecked(fresh[-1], row)
                    continue
            elif self.same_checkpoint(row):
                self._rows[-1] = _rechecked(self._rows[-1], row)
                updated = True
                continue
            fresh.append(row)
        return (self.extend(fresh) if fresh else 0), updated

    def extend(self, rows: Iterable[Row]) -> int:
        """Append new rows; returns how many old rows fell off the front."""
        self._rows.extend(rows)
        dropped = len(self._rows) - self.capacity
        if dropped > 0:
            for _ in range(dropped):
                self._rows.popleft()
            self.first_seq += dropped
            self.evicted += dropped
            self.reached_start = False
            return dropped
        return 0

    def room(self) -> int:
        """How many rows may still be paged in at the front."""
        return max(0, self.capacity - len(self._rows))

    def prepend(self, rows: list[Row]) -> int:
        """Put older rows (oldest first) in front; returns how many were taken (bounded by :meth:`room`)."""
        take = min(len(rows), self.room())
        if take <= 0:
            return 0
        for row in reversed(rows[len(rows) - take:]):
            self._rows.appendleft(row)
        self.first_seq -= take
        return take

    def clear(self) -> None:
        """The feed was truncated or replaced: start over (seqs keep increasing)."""
        self.first_seq = self.end_seq
        self._rows.clear()
        self.reached_start = False

    def find_back(self, predicate: Any, limit: int | None = None) -> Row | None:
        """The newest row for which ``predicate(row)`` holds, looking at most ``limit`` rows back."""
        for count, row in enumerate(reversed(self._rows)):
            if limit is not None and count >= limit:
                break
            if predicate(row):
                return row
        return None
