"""Follow the live feed (``context-brief.jsonl``): millisecond latency, no loss, bounded memory.

:class:`FeedFollower` is an async iterator of *batches*: each batch is a list of records
(:class:`~polylog_console.core.feed.records.Checkpoint`, ``Entry``, ``IngestError``) and
:class:`~polylog_console.core.model.events.FeedEvent`\\ s, in feed order. Data flows one way:
feed -> follower -> monitor -> events.

How it works, and why:

* **One reader thread** does all file work (stat, read, parse) so that the event loop (the
  Textual console, ``watch``) stays responsive; batches reach the loop through a small bounded
  channel (back-pressure: the reader waits when the consumer is behind, so memory stays bounded).
* **Start**: the last ``history`` checkpoints are found by reading the file *backwards* from its
  end in growing blocks (never a scan of a huge file); they come as the first batch, with the
  entries and ingest errors among them, followed by ``FeedEvent("started")``. When that skips a
  prefix, absolute line numbers are not known yet: records carry ``line=None`` while a second
  thread counts the prefix's newlines (1 MiB at a time), then the ring's checkpoints get their
  numbers and ``FeedEvent("lines_indexed", data={"base": N})`` says the line at the start offset is
  line N. A small prefix (:attr:`FeedFollower.SYNC_INDEX_BYTES`) is counted at once instead.
* **Notifications** come from watchfiles' Rust backend (inotify) watching the feed's *parent
  directory*, non-recursively: a watch on the file itself goes deaf after rotation, deletion or an
  atomic replace. watchfiles' ``watch()`` sleeps ``step`` ms between looks at its change set and
  returns once a step passes without new changes, so the latency is about two steps. A step of
  1 ms answers in ~2 ms but wakes the thread 1,000 times a second, which costs ~2 % of a CPU even
  when nothing happens; so the step adapts: 1 ms while the feed is active (a relevant change in
  the last :attr:`ACTIVE_WINDOW` seconds), :attr:`IDLE_STEP_MS` when it has been quiet (measured:
  ~0.02 s of CPU per 3 idle seconds; the first append after a quiet spell is seen within about two
  idle steps, ~10-20 ms), and :attr:`DEEP_IDLE_STEP_MS` once quiet for :attr:`DEEP_IDLE_AFTER`
  seconds (an idle console then wakes 25 times a second; the first append after a long quiet
  spell is seen within ~40-80 ms; a steady stream is back at 1 ms steps at once). watchfiles' Rust
  binding is driven directly, through :mod:`polylog_console.core.feed.backends` (the one place that
  touches that private API), because ``awatch`` fixes the step per generator and runs each wait
  in a fresh anyio worker thread; if the binding is ever unusable, the follower polls (a ``mode``
  event says why).
* **Polling mode** (``poll=True``, for network file systems) never looks at mtimes (watchfiles'
  own polling misses appends made within the same second): every ``poll_interval`` it compares
  the file's size and (device, inode) with what it has read. The wait is a timed wait on an
  event, not a busy loop.
* **Identity and offsets**: the follower tracks (st_dev, st_ino) and its read offset.
  A different inode at the path means rotation (the old file was renamed away: ``rotated``) or
  replacement (the old file has no links left: ``deleted``); either way the old descriptor is
  read to its end first, then the new file is read from offset 0 (``created``), so no record is
  skipped or delivered twice. A file smaller than the offset is ``truncated``; so is a file whose
  bytes just before the offset changed (a fingerprint of the last :data:`FINGERPRINT` bytes read
  catches truncate-then-regrow, which inotify reports only as "modified"). A missing file gives
  ``missing`` (at start) or ``deleted``, then ``created`` when it appears.
* **Lines**: an incomplete last line is held until its newline arrives; when its file is rotated
  or deleted it is delivered as it is (nothing is lost: it usually becomes an ingest error).
* **Safety net**: with inotify, a cheap stat + fingerprint check also runs every second or so of
  silence, which recovers from an overflowed inotify queue. A watched directory that is removed
  (even if a new one gets its inode number) or a symlinked feed that is repointed is watched anew.
* **Memory** is bounded by the batch and history sizes, never by the feed: a batch holds at most
  :data:`BATCH_RECORDS` records (or :data:`BATCH_BYTES` of lines), at most :data:`PENDING_RECORDS`
  records (or :data:`PENDING_BYTES`) wait for the consumer, after which the reader waits; the
  start-up history keeps its checkpoints and the latest :data:`HISTORY_OTHERS` entries and ingest
  errors (the ``started`` event counts the others: ``history_dropped``). A burst of 3,000,000 ``{}``
  lines peaks at ~130 MB RSS in ``watch --json`` (``tests/bench/bench_memory.py``).
* **Limits**: a file that lives shorter than one look (rotated twice, or created and removed,
  before the follower gets to it; in polling mode, within one interval) cannot be read; a writer
  that keeps writing to a renamed file after the follower moved on to the new one is not read
  either. Line numbers that are unknown at start are set later only on the checkpoints still in
  :attr:`FeedFollower.recent`.

Feed event kinds: ``started``, ``missing``, ``created``, ``rotated``, ``deleted``, ``truncated``,
``lines_indexed``, ``error`` (an I/O problem; the follower keeps trying) and ``mode`` (inotify is
unavailable, the follower fell back to polling).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import errno
import os
import stat as stat_module
import threading
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

from polylog_console.core.feed import records
from polylog_console.core.feed.backends import BackendUnavailable, open_notifier
from polylog_console.core.feed.records import Checkpoint, Entry, LineSplitter, Record, parse_lines
from polylog_console.core.model.events import FeedEvent
from polylog_console.core.model.workspace import check_contained

FINGERPRINT = 128  # bytes just before the read offset, re-checked to detect truncate-then-regrow
READ_BYTES = 1 << 20  # one pread
BATCH_BYTES = 1 << 20  # a batch is cut once it holds this many bytes of lines...
BATCH_RECORDS = records.BATCH_RECORDS  # ... or this many (tiny lines: ~200 bytes of objects per 3-byte line)
PENDING_BYTES = 4 << 20  # the reader waits while this much is delivered but not yet taken...
PENDING_RECORDS = 4 * BATCH_RECORDS  # ... or this many records
HISTORY_OTHERS = 2048  # entries and ingest errors kept in the start-up history (the rest are counted)
INDEX_CHUNK = 1 << 20  # the line indexer's buffer
TAIL_MAX_BYTES = 64 << 20  # the backwards start scan stops here even with fewer checkpoints than asked
ANCHOR_SCAN = 16 << 20  # page_back counts newlines up to this far to number lines


def _span(lines: list[bytes | int]) -> int:
    """Bytes that ``lines`` (from a splitter: bytes, or an over-long line's length) cover, newlines included."""
    try:
        return sum(map(len, lines)) + len(lines)  # type: ignore[arg-type]
    except TypeError:
        return sum(x if isinstance(x, int) else len(x) for x in lines) + len(lines)


def _thin(recs: list[Any], quota: int) -> tuple[list[Any], int]:
    """Keep every checkpoint and the last ``quota`` other records of ``recs`` (file order); runs of
    dropped records become their count. Returns (the list, others kept)."""
    out: list[Any] = []
    kept = 0
    for r in reversed(recs):
        if type(r) is int:
            if out and type(out[-1]) is int:
                out[-1] += r
            else:
                out.append(r)
        elif r.__class__ is Checkpoint or kept < quota:
            if r.__class__ is not Checkpoint:
                kept += 1
            out.append(r)
        elif out and type(out[-1]) is int:
            out[-1] += 1
        else:
            out.append(1)
    out.reverse()
    return out, kept


class _Signal:
    """The ``stop_event`` handed to watchfiles: its Rust loop calls ``is_set()`` every step, so
    setting ``wake`` (line index ready) or ``stop`` makes ``watch()`` return at the next step."""

    __slots__ = ("stop", "wake")

    def __init__(self) -> None:
        self.stop = False
        self.wake = False

    def is_set(self) -> bool:
        return self.stop or self.wake


class _Channel:
    """Reader thread -> event loop hand-off, bounded by bytes and by records (back-pressure on the
    reader: memory is bounded by these sizes, never by how fast the feed grows).

    Items are ``[records, rels, nbytes, mergeable]``. Consecutive batches are merged while the
    consumer has not taken them (so a slow consumer gets fewer, larger batches, never more than
    ``BATCH_BYTES`` or ``BATCH_RECORDS`` each). ``put`` blocks while ``PENDING_BYTES`` or
    ``PENDING_RECORDS`` are waiting, until :meth:`close`. :attr:`peak_records` is the largest
    backlog seen (records waiting, the batch being put included), :attr:`peak_batch` the largest
    batch handed out.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._space = threading.Condition(self._lock)
        self._items: collections.deque[list[Any]] = collections.deque()
        self._pending = 0
        self._pending_records = 0
        self.peak_records = 0
        self.peak_batch = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._ready: asyncio.Event | None = None
        self._waiting = False
        self.closed = False  # stop() was called: deliver nothing more
        self.finished = False  # the reader thread ended
        self.error: BaseException | None = None

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._ready = asyncio.Event()

    def _notify_consumer(self) -> None:
        loop, ready = self._loop, self._ready
        if loop is None or ready is None:
            return
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody is waiting any more
            loop.call_soon_threadsafe(ready.set)

    def put(self, batch: list[Any], rels: list[int] | None, nbytes: int, mergeable: bool = True) -> bool:
        """Queue a batch; False once the channel is closed."""
        with self._lock:
            while (self._pending >= PENDING_BYTES or self._pending_records >= PENDING_RECORDS) and not self.closed:
                self._space.wait()
            if self.closed:
                return False
            last = self._items[-1] if self._items else None
            if (mergeable and last is not None and last[3] and last[2] + nbytes <= BATCH_BYTES
                    and len(last[0]) + len(batch) <= BATCH_RECORDS and (last[1] is None) == (rels is None)):
                last[0].extend(batch)
                if rels is not None:
                    last[1].extend(rels)
                last[2] += nbytes
            else:
                self._items.append([batch, rels, nbytes, mergeable])
            self._pending += nbytes
            self._pending_records += len(batch)
            self.peak_records = max(self.peak_records, self._pending_records)
            notify = self._waiting
            self._waiting = False
        if notify:
            self._notify_consumer()
        return True

    def finish(self, error: BaseException | None = None) -> None:
        with self._lock:
            self.finished = True
            self.error = error
            self._waiting = False
        self._notify_consumer()

    def close(self) -> None:
        with self._lock:
            self.closed = True
            self._items.clear()
            self._pending = 0
            self._pending_records = 0
            self._space.notify_all()
        self._notify_consumer()

    async def get(self) -> list[Any] | None:
        """The next item, or None when the channel is closed or the reader has ended."""
        assert self._ready is not None
        while True:
            with self._lock:
                if self.closed:
                    return None
                if self._items:
                    item = self._items.popleft()
                    self._pending -= item[2]
                    self._pending_records -= len(item[0])
                    self.peak_batch = max(self.peak_batch, len(item[0]))
                    self._space.notify_all()
                    return item
                if self.finished:
                    if self.error is not None:
                        raise self.error
                    return None
                self._ready.clear()
                self._waiting = True
            await self._ready.wait()


class BackScanner:
    """Reads a file backwards from ``end`` in growing blocks; iterating yields ``(offset, lines)``
    regions, latest first, each a list of consecutive complete lines (without ``\\n``) in file
    order starting at ``offset``. A line longer than ``max_line`` comes as an ``int`` (its length),
    as from :class:`~polylog_console.core.feed.records.LineSplitter`.

    Bytes after the last newline before ``end`` (an incomplete line) are not yielded;
    :attr:`boundary` is the offset just past the last complete line (0 if there is none).
    Memory: one block (at most ``max_block``) plus one carried line (at most ``max_line``).
    """

    def __init__(self, fd: int, end: int, max_line: int = records.MAX_LINE, *, first_block: int = 64 * 1024,
                 max_block: int = 4 << 20) -> None:
        self.fd = fd
        self.end = end
        self.max_line = max_line
        self.first_block = first_block
        self.max_block = max_block
        self.boundary: int | None = None
        self.bytes_read = 0
        self.exhausted = False  # reached offset 0
        self.shrunk = False  # the file became shorter while being read

    def __iter__(self) -> Iterator[tuple[int, list[bytes | int]]]:
        pos = self.end
        carry: bytes | None = None  # end of a line that starts before ``pos`` (without its newline)
        long = -1  # when that line is over-long: its length so far (its bytes are dropped)
        block = self.first_block
        max_line = self.max_line
        while pos > 0:
            n = min(block, pos)
            block = min(block * 2, self.max_block)
            pos -= n
            data = os.pread(self.fd, n, pos)
            self.bytes_read += len(data)
            if len(data) != n:
                self.shrunk = True
                return
            if self.boundary is None:
                k = data.rfind(b"\n")
                if k < 0:
                    if pos == 0:
                        self.boundary = 0
                    continue
                self.boundary = pos + k + 1
                data = data[: k + 1]
            parts = data.split(b"\n")
            if len(parts) == 1:  # no newline: the whole block belongs to the carried line
                if long >= 0:
                    long += n
                elif carry is not None and len(carry) + n > max_line:
                    long = len(carry) + n
                    carry = b""
                else:
                    carry = data + (carry or b"")
                if pos == 0:
                    self.exhausted = True
                    yield 0, [long if long >= 0 else carry]  # type: ignore[list-item]
                    return
                continue
            lines: list[bytes | int] = parts[1:-1]  # type: ignore[assignment]
            if carry is not None:
                if long >= 0:
                    lines.append(len(parts[-1]) + long)
                    long = -1
                else:
                    lines.append(parts[-1] + carry)
            if pos == 0:
                lines.insert(0, parts[0])
                first = 0
                carry = None
            else:
                first = pos + len(parts[0]) + 1
                carry = parts[0]
                if len(carry) > max_line:
                    long, carry = len(carry), b""
            lines = [x if isinstance(x, int) or len(x) <= max_line else len(x) for x in lines]
            if pos == 0:
                self.exhausted = True
            if lines:
                yield first, lines
        self.exhausted = True


def count_newlines(fd: int, start: int, end: int, stop: _Signal | None = None,
                   buffer: bytearray | None = None) -> int | None:
    """Newlines in ``[start, end)`` of ``fd``, reading ``INDEX_CHUNK`` bytes at a time (bounded
    memory). None when stopped or when the file became shorter than ``end``."""
    buf = buffer if buffer is not None else bytearray(INDEX_CHUNK)
    view = memoryview(buf)
    count = 0
    offset = start
    while offset < end:
        if stop is not None and stop.stop:
            return None
        want = min(len(buf), end - offset)
        got = os.preadv(fd, [view[:want]], offset)
        if got <= 0:
            return None
        count += buf.count(b"\n", 0, got)
        offset += got
    return count


class FeedFollower:
    """Follows one feed file; see the module docstring. Iterate it once (``async for batch in
    follower``); :meth:`stop` ends the iteration from any thread."""

    ACTIVE_STEP_MS = 1  # watchfiles step while the feed is active: ~2 ms latency
    IDLE_STEP_MS = 10  # ... and when it has been quiet for ACTIVE_WINDOW seconds
    DEEP_IDLE_STEP_MS = 40  # ... and after DEEP_IDLE_AFTER quiet seconds: 25 wake-ups a second
    ACTIVE_WINDOW = 2.0
    DEEP_IDLE_AFTER = 15.0
    DEBOUNCE_MS = 10  # upper bound on how long watchfiles groups a continuous stream of changes
    ACTIVE_TIMEOUT_MS = 250  # watch() returns this often when nothing happens (step re-evaluation)
    IDLE_TIMEOUT_MS = 1000  # ... and the safety-net check runs this often when idle
    RETRY_SECONDS = 0.25  # re-arm interval when the parent directory is missing or inotify fails
    SYNC_INDEX_BYTES = 16 << 20  # a skipped prefix up to this size is line-counted before the first batch
    MIN_POLL = 0.01

    def __init__(self, path: Path, *, poll: bool = False, poll_interval: float = 0.25, history: int = 500,
                 max_line: int = records.MAX_LINE) -> None:
        self.path = Path(os.path.abspath(path))
        self._path_str = str(self.path)
        self._dir_str = str(self.path.parent)
        self._name = self.path.name
        self.poll = poll
        self.poll_interval = max(self.MIN_POLL, float(poll_interval))
        self.history = max(1, int(history))
        self.max_line = max_line
        self.mode = "poll" if poll else "inotify"
        # counters (written by the reader thread; read anywhere)
        self.checkpoints = 0
        self.entries = 0
        self.ingest_errors = 0
        self.bytes_read = 0  # bytes read to make records (start tail + follow), not counting the indexer
        self.bytes_indexed = 0  # bytes read by the background line indexer
        self.bytes_paged = 0  # bytes read by page_back
        self.rotations = 0
        self.truncations = 0
        self.deletions = 0
        self.batches = 0
        self.history_dropped = 0  # entries and ingest errors of the start-up history beyond HISTORY_OTHERS
        # consumer-side state (event loop thread)
        self._recent: collections.deque[Checkpoint] = collections.deque(maxlen=self.history)
        self._recent_rel: collections.deque[int | None] = collections.deque(maxlen=self.history)
        # reader-thread state
        self._signal = _Signal()
        self._wake = threading.Event()  # timed waits (polling, retries) end early on stop/wake
        self._channel = _Channel()
        self._lock = threading.Lock()  # guards _fd swaps and the line anchors (page_back)
        self._fd: int | None = None
        self._ident: tuple[int, int] | None = None
        self._pos = 0  # bytes of the current file handed to the splitter
        self._splitter = LineSplitter(0, max_line)
        self._fp = b""  # the last FINGERPRINT bytes before _pos
        self._line: int | None = 1  # line number of the next line, None while unknown
        self._rel = 0  # index of the next line counted from _start_offset
        self._start_offset = 0
        self._generation = 0  # +1 per file opened and per truncation (changed under _lock)
        self._history_generation = -1  # the generation the start-up history was read from
        self._anchors: dict[int, int] = {}  # offset -> line number (current file)
        self._out: list[Any] = []
        self._out_rels: list[int] = []
        self._out_bytes = 0
        self._index_thread: threading.Thread | None = None
        self._index_result: tuple[int, int] | None = None  # (generation, newline count)
        self._error_shown: str | None = None
        self._open_failed = False
        self._live: tuple[int, int | None] = (0, 1)  # (offset, line number) of the next line, one consistent pair
        self._thread: threading.Thread | None = None
        self._iterated = False

    # -- public API -------------------------------------------------------------------------

    @property
    def recent(self) -> collections.deque:
        """The most recent checkpoints delivered (at most ``history``), oldest first."""
        return self._recent

    @property
    def lines_known(self) -> bool:
        return self._line is not None

    def stats(self) -> dict[str, Any]:
        """Counters, for status bars, metrics and tests."""
        return {
            "mode": self.mode, "checkpoints": self.checkpoints, "entries": self.entries,
            "ingest_errors": self.ingest_errors, "bytes_read": self.bytes_read, "bytes_indexed": self.bytes_indexed,
            "bytes_paged": self.bytes_paged, "rotations": self.rotations, "truncations": self.truncations,
            "deletions": self.deletions, "batches": self.batches, "offset": self._pos,
            "history_dropped": self.history_dropped, "peak_batch": self._channel.peak_batch,
            "peak_pending": self._channel.peak_records,
        }

    def stop(self) -> None:
        """End the iteration promptly. Thread-safe and idempotent."""
        self._signal.stop = True
        self._wake.set()
        self._channel.close()

    def __aiter__(self) -> AsyncIterator[list[Any]]:
        if self._iterated:
            raise RuntimeError("a FeedFollower can be iterated only once")
        self._iterated = True
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[list[Any]]:
        self._channel.bind(asyncio.get_running_loop())
        if self._signal.stop:
            return
        self._thread = threading.Thread(target=self._run, name=f"feed-follower:{self._name}", daemon=True)
        self._thread.start()
        try:
            while True:
                item = await self._channel.get()
                if item is None:
                    return
                batch, rels, _nbytes, mergeable = item
                if not mergeable and batch and isinstance(batch[0], FeedEvent) and batch[0].kind == "lines_indexed":
                    self._apply_lines(batch[0].data["base"])
                else:
                    self._remember(batch, rels)
                yield batch
        finally:
            self.stop()
            self._join()

    def page_back(self, before_offset: int, count: int) -> list[Record]:
        """Up to ``count`` records that end before ``before_offset`` in the current file, in file
        order (older history, read on demand; nothing is kept). Line numbers are set when known.
        Callable from any thread.

        Only the file the start-up history came from has older history: a file that replaced it
        (rotation, re-creation) or a truncated file was read from its start, and an offset the
        caller holds may belong to the previous file; then the answer is ``[]``."""
        if count <= 0:
            return []
        with self._lock:
            fd = self._fd
            generation = self._generation
            if fd is None or generation != self._history_generation:
                return []
            fd = os.dup(fd)  # the reader may swap files meanwhile; this copy stays valid
        try:
            before = max(0, min(int(before_offset), self._pos))
            scanner = BackScanner(fd, before, self.max_line, max_block=READ_BYTES)
            chunks: list[list[Record]] = []
            below = 0
            found = 0
            now = time.monotonic_ns()
            for offset, lines in scanner:
                below += len(lines)
                end = len(lines)
                while end > 0 and found < count:  # only as many lines as needed, from the region's end
                    begin = max(0, end - max(count - found, 64))
                    recs = parse_lines(lines[begin:end], begin - below, offset + _span(lines[:begin]), now,
                                       self.max_line)
                    chunks.append(recs)
                    found += len(recs)
                    end = begin
                if found >= count:
                    break
            self.bytes_paged += scanner.bytes_read
            out = [r for chunk in reversed(chunks) for r in chunk][-count:]
            boundary = scanner.boundary if scanner.boundary is not None else 0
            line_at_boundary = self._line_at(fd, boundary)
            for r in out:
                r.line = None if line_at_boundary is None else line_at_boundary + r.line  # type: ignore[operator]
            if self._generation != generation:  # truncated while we read: what we read may be anything
                return []
            if out and line_at_boundary is not None:
                with self._lock:
                    if len(self._anchors) > 256:
                        self._anchors.clear()
                    self._anchors[out[0].offset] = out[0].line  # type: ignore[assignment]
            return out
        finally:
            os.close(fd)

    # -- consumer side ------------------------------------------------------------------------

    def _remember(self, batch: list[Any], rels: list[int] | None) -> None:
        cps = [r for r in batch if r.__class__ is Checkpoint]
        if not cps:
            return
        self._recent.extend(cps)
        if rels is None:
            self._recent_rel.extend([None] * len(cps))
        else:
            self._recent_rel.extend(rels)

    def _apply_lines(self, base: int) -> None:
        for cp, rel in zip(self._recent, self._recent_rel):
            if rel is not None and cp.line is None:
                cp.line = base + rel
        count = len(self._recent_rel)
        self._recent_rel.clear()
        self._recent_rel.extend([None] * count)

    def _join(self) -> None:
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=10)

    # -- reader thread ------------------------------------------------------------------------

    def _run(self) -> None:
        error: BaseException | None = None
        try:
            self._cold_start()
            if self.poll:
                self._poll_loop()
            else:
                self._notify_loop()
        except BaseException as exc:  # a bug: hand it to the consumer rather than die silently
            error = exc
        finally:
            self._signal.stop = True
            index = self._index_thread
            if index is not None:
                index.join(timeout=10)
            with self._lock:
                if self._fd is not None:
                    os.close(self._fd)
                    self._fd = None
            self._channel.finish(error)

    def _event(self, kind: str, detail: str = "", **data: Any) -> None:
        self._out.append(FeedEvent(kind, self._path_str, detail, data))

    def _flush(self, mergeable: bool = True) -> None:
        if not self._out:
            return
        batch, self._out = self._out, []
        rels: list[int] | None = None
        if self._line is None:
            rels, self._out_rels = self._out_rels, []
        nbytes, self._out_bytes = self._out_bytes, 0
        self.batches += 1
        self._channel.put(batch, rels, max(nbytes, 1), mergeable)

    def _error(self, what: str, exc: OSError) -> None:
        """An I/O problem: one ``error`` event per distinct message, then keep trying."""
        message = f"{what}: {exc.strerror or exc}"
        if message != self._error_shown:
            self._error_shown = message
            self._event("error", message)

    def _open(self) -> os.stat_result | None:
        """Open the feed; sets _fd/_ident and resets the read state. None if it is not there."""
        self._open_failed = False
        try:
            # O_NONBLOCK: a FIFO put in the feed's place opens at once (and is refused below)
            # instead of blocking this thread, and the stop, until a writer appears.
            fd = os.open(self._path_str, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK | os.O_NOCTTY)
        except FileNotFoundError:
            return None
        except OSError as exc:
            self._open_failed = True
            self._error("cannot open the feed", OSError(exc.errno, "symlink loop") if exc.errno == errno.ELOOP else exc)
            return None
        st = os.fstat(fd)
        if not stat_module.S_ISREG(st.st_mode):
            os.close(fd)
            self._open_failed = True
            self._error("cannot follow the feed", OSError(0, "not a regular file"))
            return None
        try:
            check_contained(self._path_str)  # a feed linked outside the workspace: refused, not read
        except OSError as exc:
            os.close(fd)
            self._open_failed = True
            self._error("cannot follow the feed", exc)
            return None
        with self._lock:
            self._fd = fd
            self._ident = (st.st_dev, st.st_ino)
        self._read_from_start()
        self._error_shown = None
        return st

    def _read_from_start(self) -> None:
        """Reset the read state to offset 0, line 1 of the file now open (a new generation:
        page_back refuses offsets of the previous one)."""
        with self._lock:
            self._anchors = {0: 1}
            self._generation += 1
        self._pos = 0
        self._splitter.reset(0)
        self._fp = b""
        self._line = 1
        self._rel = 0
        self._start_offset = 0
        self._live = (0, 1)

    def _cold_start(self) -> None:
        """Deliver the recent history (the first batch), ending with ``started``."""
        for _attempt in range(5):
            st = self._open()
            if st is None:
                if not self._open_failed:
                    self._event("missing", "the feed does not exist yet; waiting for it")
                self._event("started", offset=0, size=None, checkpoints=0, records=0, lines_known=True,
                            mode=self.mode)
                self._flush(mergeable=False)
                return
            if self._read_tail(st.st_size):
                return
            with self._lock:  # the file shrank while we read it: start again
                os.close(self._fd)  # type: ignore[arg-type]
                self._fd = None
        # It kept shrinking: start without history; following reads it from its start ("created").
        self._event("error", "the feed kept shrinking while its history was read")
        self._event("started", offset=0, size=None, checkpoints=0, records=0, lines_known=True, mode=self.mode)
        self._flush(mergeable=False)

    def _read_tail(self, size: int) -> bool:
        fd = self._fd
        assert fd is not None
        now = time.monotonic_ns()
        scanner = BackScanner(fd, size, self.max_line, max_block=READ_BYTES)
        chunks: list[list[Any]] = []
        below = 0
        found = 0
        others = HISTORY_OTHERS  # entries and ingest errors still to keep (the latest ones)
        for offset, lines in scanner:
            below += len(lines)
            recs, kept = self._history_region(lines, -below, offset, now, others)
            others -= kept
            chunks.append(recs)
            found += sum(1 for r in recs if r.__class__ is Checkpoint)
            if found >= self.history or scanner.bytes_read >= TAIL_MAX_BYTES:
                break
        self.bytes_read += scanner.bytes_read
        if scanner.shrunk:
            return False
        boundary = scanner.boundary or 0
        recs = [r for chunk in reversed(chunks) for r in chunk]
        whole = scanner.exhausted and found <= self.history  # a small file: all of it
        if not whole and found >= self.history:  # start at the history-th checkpoint from the end
            seen = 0
            for i in range(len(recs) - 1, -1, -1):
                if recs[i].__class__ is Checkpoint:
                    seen += 1
                    if seen == self.history:
                        recs = recs[i:]
                        break
        # Records dropped from the history (beyond HISTORY_OTHERS) stand as counts: drop those too.
        dropped = sum(r for r in recs if type(r) is int)
        if dropped:
            recs = [r for r in recs if type(r) is not int]
        self.history_dropped = dropped
        if whole:
            start, rel_start = 0, -below
        elif recs:
            start, rel_start = recs[0].offset, recs[0].line
        else:  # nothing parseable in what was scanned
            start, rel_start = boundary, 0
        self._start_offset = start
        base: int | None = None
        if start == 0:
            base = 1
        elif start <= self.SYNC_INDEX_BYTES:
            newlines = count_newlines(fd, 0, start)
            self.bytes_indexed += start
            base = None if newlines is None else newlines + 1
        rels: list[int] = []
        for r in recs:
            rel = r.line - rel_start  # type: ignore[operator]
            if base is not None:
                r.line = base + rel
            else:
                if r.__class__ is Checkpoint:
                    rels.append(rel)
                r.line = None
        self._count(recs)
        self._pos = boundary
        self._splitter.reset(boundary)
        self._fp = os.pread(fd, min(FINGERPRINT, boundary), boundary - min(FINGERPRINT, boundary))
        self._rel = -rel_start
        self._line = None if base is None else base + self._rel
        self._live = (boundary, self._line)
        with self._lock:
            self._anchors = {start: base} if base is not None else {}
            self._history_generation = self._generation
        self._out.extend(recs)
        self._out_rels.extend(rels)
        self._out_bytes += size - start
        detail = (f"{dropped:,} older entries and ingest errors of the start-up history are not shown "
                  f"(the last {HISTORY_OTHERS:,} are)" if dropped else "")
        self._event("started", detail, offset=start, size=size, checkpoints=min(found, self.history),
                    records=len(recs), history_dropped=dropped, lines_known=base is not None, mode=self.mode)
        self._flush(mergeable=False)
        if base is None:
            self._start_indexer(start)
        return True

    def _history_region(self, lines: list[bytes | int], rel: int, offset: int, now: int,
                        quota: int) -> tuple[list[Any], int]:
        """Parse one region of the start-up scan in slices of ``BATCH_RECORDS`` lines, keeping its
        checkpoints and only its latest ``quota`` entries and ingest errors: older ones become a
        count (an ``int`` in their place), so a feed of millions of tiny lines costs no more than
        the history. Returns (records and counts in file order, others kept)."""
        kept: list[Any] = []
        others = 0
        for i in range(0, len(lines), BATCH_RECORDS):
            part = lines[i:i + BATCH_RECORDS]
            recs = parse_lines(part, rel + i, offset, now, self.max_line)
            offset += _span(part)
            others += sum(1 for r in recs if r.__class__ is not Checkpoint)
            kept.extend(recs)
            if others > quota + BATCH_RECORDS:
                kept, others = _thin(kept, quota)
        if others > quota:
            kept, others = _thin(kept, quota)
        return kept, others

    def _count(self, recs: list[Any]) -> None:
        checkpoints = entries = 0
        for r in recs:
            cls = r.__class__
            if cls is Checkpoint:
                checkpoints += 1
            elif cls is Entry:
                entries += 1
        self.checkpoints += checkpoints
        self.entries += entries
        self.ingest_errors += len(recs) - checkpoints - entries

    # -- line indexing --------------------------------------------------------------------------

    def _start_indexer(self, end: int) -> None:
        fd = os.dup(self._fd)  # type: ignore[arg-type]
        generation = self._generation

        def index() -> None:
            try:
                buf = bytearray(INDEX_CHUNK)
                total = 0
                offset = 0
                while offset < end and not self._signal.stop:
                    piece = min(end - offset, 64 * INDEX_CHUNK)
                    counted = count_newlines(fd, offset, offset + piece, self._signal, buf)
                    if counted is None:
                        return
                    total += counted
                    offset += piece
                    self.bytes_indexed += piece
                    if generation != self._generation:
                        return  # the file was rotated or truncated: these numbers no longer matter
                if offset >= end:
                    self._index_result = (generation, total)
                    self._signal.wake = True
                    self._wake.set()
            except OSError:
                return
            finally:
                os.close(fd)

        self._index_thread = threading.Thread(target=index, name=f"feed-indexer:{self._name}", daemon=True)
        self._index_thread.start()

    def _take_wake(self) -> None:
        """Handle a wake-up from the indexer (lines known): number the lines from now on."""
        self._signal.wake = False
        self._wake.clear()
        result, self._index_result = self._index_result, None
        if result is None or result[0] != self._generation or self._line is not None:
            return
        base = result[1] + 1
        self._flush()
        self._line = base + self._rel
        self._live = (self._splitter.consumed, self._line)
        with self._lock:
            self._anchors[self._start_offset] = base
        self._event("lines_indexed", f"line numbers known: the line at offset {self._start_offset} is line {base}",
                    base=base, offset=self._start_offset)
        self._flush(mergeable=False)

    def _line_at(self, fd: int, offset: int) -> int | None:
        """Line number of the line starting at ``offset`` in the current file, from the nearest
        known anchor at or after it (counting the newlines between), or None."""
        with self._lock:
            anchors = dict(self._anchors)
        consumed, line = self._live
        if line is not None:
            anchors.setdefault(consumed, line)
        if offset in anchors:
            return anchors[offset]
        after = [a for a in anchors if a > offset and a - offset <= ANCHOR_SCAN]
        if not after:
            return None
        anchor = min(after)
        between = count_newlines(fd, offset, anchor)
        if between is None:
            return None
        self.bytes_paged += anchor - offset
        return anchors[anchor] - between

    # -- following ------------------------------------------------------------------------------

    def _read_more(self) -> None:
        """Read the current file from _pos to its end, in batches."""
        fd = self._fd
        assert fd is not None
        max_line = self.max_line
        while not self._signal.stop:
            try:
                data = os.pread(fd, READ_BYTES, self._pos)
            except OSError as exc:
                self._error("cannot read the feed", exc)
                break
            if not data:
                break
            now = time.monotonic_ns()
            n = len(data)
            self._pos += n
            self.bytes_read += n
            self._fp = data[-FINGERPRINT:] if n >= FINGERPRINT else (self._fp + data)[-FINGERPRINT:]
            held = self._splitter.partial
            first, lines = self._splitter.feed(data)
            if lines and held + n > max_line:
                # The splitter only limits a line still incomplete at a chunk's end; a line that
                # both starts and ends within what was just read can be as long: same rule for it.
                lines = [x if isinstance(x, int) or len(x) <= max_line else len(x) for x in lines]
            accounted = 0
            if len(lines) > BATCH_RECORDS:  # many short lines: parse and hand them over a batch at a time
                for i in range(0, len(lines), BATCH_RECORDS):
                    part = lines[i:i + BATCH_RECORDS]
                    self._parse(part, first, now, max_line)
                    span = _span(part)
                    first += span
                    if len(self._out) >= BATCH_RECORDS:
                        self._out_bytes += span
                        accounted += span
                        self._flush()  # waits while the consumer is behind (back-pressure)
                        if self._signal.stop:
                            return
            elif lines:
                self._parse(lines, first, now, max_line)
            self._out_bytes += max(0, n - accounted)
            if self._out_bytes >= BATCH_BYTES or len(self._out) >= BATCH_RECORDS:
                self._flush()
            if n < READ_BYTES:
                break

    def _parse(self, lines: list[bytes | int], first: int, now: int, max_line: int) -> None:
        if self._line is not None:
            recs = parse_lines(lines, self._line, first, now, max_line)
            self._line += len(lines)
        else:
            recs = parse_lines(lines, self._rel, first, now, max_line)
            for r in recs:
                if r.__class__ is Checkpoint:
                    self._out_rels.append(r.line)  # type: ignore[arg-type]
                r.line = None
        self._rel += len(lines)
        self._live = (self._splitter.consumed, self._line)
        self._count(recs)
        self._out.extend(recs)

    def _fingerprint_ok(self) -> bool:
        fp = self._fp
        if not fp:
            return True
        try:
            return os.pread(self._fd, len(fp), self._pos - len(fp)) == fp  # type: ignore[arg-type]
        except OSError:
            return True

    def _finish_old(self, st: os.stat_result | None) -> None:
        """The path no longer names the file we read: read the old one to its end (its last
        incomplete line included), then report ``rotated`` or ``deleted``."""
        self._read_more()
        if self._splitter.partial:
            first, lines = self._splitter.feed(b"\n")
            self._parse(lines, first, time.monotonic_ns(), self.max_line)
        fd = self._fd
        assert fd is not None
        try:
            links = os.fstat(fd).st_nlink
        except OSError:
            links = 0
        with self._lock:
            os.close(fd)
            self._fd = None
            self._ident = None
            self._anchors = {}
        if links > 0:
            self.rotations += 1
            self._event("rotated", "the feed was renamed away; reading the new file from its start",
                        previous_offset=self._pos)
        else:
            self.deletions += 1
            self._event("deleted", "the feed was deleted" + ("" if st is None else " and replaced"),
                        previous_offset=self._pos)
        self._flush()

    def _truncated(self, size: int) -> None:
        self.truncations += 1
        self._flush()
        self._event("truncated", "the feed was truncated; reading it again from its start",
                    previous_offset=self._pos, size=size, discarded_partial=self._splitter.partial)
        self._read_from_start()

    def _check(self) -> None:
        """Compare the path with what has been read and read whatever is new."""
        try:
            st: os.stat_result | None = os.stat(self._path_str)
        except FileNotFoundError:
            st = None
        except OSError as exc:
            self._error("cannot stat the feed", exc)
            self._flush()
            return
        if self._fd is not None:
            if st is not None and (st.st_dev, st.st_ino) == self._ident:
                if st.st_size < self._pos or not self._fingerprint_ok():
                    self._truncated(st.st_size)
                self._read_more()
                self._flush()
                return
            self._finish_old(st)
            if st is None:
                return
        if st is not None:
            st = self._open()
            if st is not None:
                self._event("created", "the feed appeared; reading it from its start", size=st.st_size)
                self._read_more()
        self._flush()

    def _handle_wake(self) -> None:
        if self._index_result is not None:
            self._take_wake()
        else:
            self._signal.wake = False
            self._wake.clear()

    def _wait(self, seconds: float) -> None:
        self._wake.wait(seconds)
        if not self._signal.stop:
            self._handle_wake()

    def _poll_loop(self) -> None:
        while not self._signal.stop:
            self._check()
            self._wait(self.poll_interval)

    def _watch_plan(self) -> tuple[list[str], tuple[Any, ...]]:
        """The directories to watch, and a key that changes when they must be watched anew: the
        feed's directory and, when the feed is a symlink into another directory, the target's
        directory too (appends to the target are not events in the link's directory)."""
        real = os.path.realpath(self._path_str)
        dirs = [self._dir_str]
        if os.path.dirname(real) != self._dir_str:
            dirs.append(os.path.dirname(real))
        key: list[Any] = [real]
        existing = []
        for directory in dirs:
            try:
                st = os.stat(directory)
            except OSError:
                key.append(None)
                continue
            key.append((st.st_dev, st.st_ino))
            existing.append(directory)
        return existing, tuple(key)

    def _make_watcher(self) -> tuple[Any, tuple[Any, ...], frozenset[str], frozenset[str]] | None:
        """A non-recursive inotify watch on the feed's directory (and its target's), or None when
        the directory does not exist (yet) or inotify is unavailable (then: polling)."""
        dirs, key = self._watch_plan()
        if self._dir_str not in dirs:
            return None
        try:
            watcher = open_notifier(dirs)
        except FileNotFoundError:
            return None
        except (OSError, BackendUnavailable) as exc:
            # e.g. the inotify watch limit: fall back to polling rather than go deaf
            self._event("mode", f"inotify unavailable ({exc}); polling every {self.poll_interval:g}s",
                        mode="poll")
            self.mode = "poll"
            self._flush()
            return None
        return watcher, key, frozenset([self._path_str, key[0], *dirs]), frozenset(dirs)

    def _notify_loop(self) -> None:
        watcher = None
        key: tuple[Any, ...] = ()
        relevant: frozenset[str] = frozenset()
        watched: frozenset[str] = frozenset()
        last_change = -self.ACTIVE_WINDOW  # start quiet: only appends make the follower "active"
        while not self._signal.stop:
            if self.mode == "poll":
                self._poll_loop()
                return
            if watcher is None:
                made = self._make_watcher()
                if made is None:
                    self._check()
                    self._wait(self.RETRY_SECONDS)
                    continue
                watcher, key, relevant, watched = made
                self._check()  # whatever happened before the watch was in place
            quiet = time.monotonic() - last_change
            active = quiet < self.ACTIVE_WINDOW
            idle_step = self.IDLE_STEP_MS if quiet < self.DEEP_IDLE_AFTER else self.DEEP_IDLE_STEP_MS
            try:
                result = watcher.wait(self.DEBOUNCE_MS, self.ACTIVE_STEP_MS if active else idle_step,
                                      self.ACTIVE_TIMEOUT_MS if active else self.IDLE_TIMEOUT_MS, self._signal)
            except BackendUnavailable as exc:
                watcher.close()
                self._event("mode", f"inotify unavailable ({exc}); polling every {self.poll_interval:g}s", mode="poll")
                self.mode = "poll"
                self._flush()
                continue
            except (OSError, RuntimeError) as exc:
                self._error("watching the feed directory failed", OSError(0, str(exc)))
                self._flush()
                watcher.close()
                watcher = None
                self._wait(self.RETRY_SECONDS)
                continue
            if result == "stop":
                if self._signal.stop:
                    break
                self._handle_wake()
                self._check()  # watch() dropped its pending changes when it returned
            elif result == "timeout" or result == "signal":
                if self._watch_plan()[1] != key:  # a directory was removed or replaced, a link repointed
                    watcher.close()
                    watcher = None
                    continue
                self._check()
            else:
                if any(changed in relevant for _change, changed in result):
                    last_change = time.monotonic()
                    self._check()
                if any(changed in watched for _change, changed in result) or (
                        key[0] != self._path_str and any(changed == self._path_str for _change, changed in result)
                        and self._watch_plan()[1] != key):
                    # A watched directory itself changed (removed, renamed): its watch may be dead
                    # even if a new directory with the same inode number stands there now. Or the
                    # feed is a symlink that now points elsewhere.
                    watcher.close()
                    watcher = None
        if watcher is not None:
            watcher.close()
