"""The feed follower's behaviour in one process: idle CPU, cold start on a big file, paging back,
incomplete and over-long lines, batching, back-pressure, stopping, and the backwards scanner."""

from __future__ import annotations

import asyncio
import os
import shutil
import threading
import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from polylog_console.core.feed import follower as follower_module
from polylog_console.core.feed.follower import BackScanner, FeedFollower, count_newlines
from polylog_console.core.feed.records import Checkpoint, IngestError, LineSplitter
from polylog_console.core.model.events import FeedEvent
from polylog_console.demo.sample import write_big_feed
from tests.test_follower import Collector

CP = b'{"label": "cp-%d", "registry_digest": "%s"}\n'


def cp(i: int) -> bytes:
    return CP % (i, b"a" * 64)


def append(path: Path, data: bytes) -> None:
    with open(path, "ab") as handle:
        handle.write(data)


@pytest.mark.parametrize("poll", [False, True], ids=["inotify", "poll"])
async def test_no_cpu_while_the_feed_is_idle(tmp_path: Path, poll: bool) -> None:
    feed = tmp_path / "feed.jsonl"
    feed.write_bytes(b"".join(cp(i) for i in range(100)))
    collector = Collector(FeedFollower(feed, poll=poll))
    await collector.wait_for(lambda: "started" in collector.kinds())
    await asyncio.sleep(0.2)  # let the start settle
    before = time.process_time()
    await asyncio.sleep(3.0)
    used = time.process_time() - before
    assert used < 0.05, f"{used:.3f}s of CPU over 3 idle seconds"
    append(feed, cp(100))  # and it still hears the next append
    await collector.wait_for(lambda: collector.received() == 101, timeout=5)
    await collector.stop()
    assert collector.records[-1].data["label"] == "cp-100"


async def test_cold_start_on_a_big_file_reads_only_the_tail(tmp_path: Path) -> None:
    feed = tmp_path / "big.jsonl"
    total = write_big_feed(feed, lines=120_000)  # ~28 MB: more than the synchronous line-count limit
    size = feed.stat().st_size
    assert size > FeedFollower.SYNC_INDEX_BYTES
    follower = FeedFollower(feed, history=500)
    collector = Collector(follower)
    await collector.wait_for(lambda: "started" in collector.kinds())
    first = collector.batches[0]
    assert isinstance(first[-1], FeedEvent) and first[-1].kind == "started"
    history = first[:-1]
    assert [r.data["label"] for r in history] == [f"checkpoint-{n:08d}" for n in range(total - 500, total)]
    assert follower.bytes_read < 1_000_000 < size  # the tail, not the file
    assert first[-1].data["offset"] == history[0].offset and first[-1].data["lines_known"] is False
    assert all(r.line is None for r in history)  # not known yet: the prefix is being counted
    await collector.wait_for(lambda: "lines_indexed" in collector.kinds())
    indexed = collector.events[-1]
    assert indexed.data["base"] == total - 500 + 1
    assert [c.line for c in follower.recent] == list(range(total - 499, total + 1))
    assert follower.bytes_indexed == history[0].offset
    append(feed, cp(-1))  # records after the index carry absolute line numbers
    await collector.wait_for(lambda: collector.received() == 501)
    assert collector.records[-1].line == total + 1

    older = follower.page_back(history[0].offset, 300)
    assert [r.data["label"] for r in older] == [f"checkpoint-{n:08d}" for n in range(total - 800, total - 500)]
    assert [r.line for r in older] == list(range(total - 799, total - 499))
    oldest = follower.page_back(older[0].offset, 10_000)
    assert [r.line for r in oldest] == list(range(total - 10_799, total - 799))
    assert follower.page_back(0, 10) == []
    assert follower.bytes_read + follower.bytes_paged < size / 4
    await collector.stop()


async def test_small_file_history_with_entries_and_errors_and_known_lines(tmp_path: Path) -> None:
    feed = tmp_path / "feed.jsonl"
    lines = []
    for i in range(40):
        lines.append(cp(i))
        if i % 10 == 3:
            lines.append(b'{"kind": "note", "n": %d}\n' % i)
        if i % 10 == 6:
            lines.append(b"not json %d\n" % i)
    feed.write_bytes(b"".join(lines) + b"\n")  # a trailing blank line is no record
    follower = FeedFollower(feed, history=7)
    collector = Collector(follower)
    await collector.wait_for(lambda: "started" in collector.kinds())
    history = collector.batches[0][:-1]
    # the last 7 checkpoints (cp-33..cp-39) with the entry and the error among them; lines known at
    # once (small file)
    assert [r.raw + b"\n" for r in history] == lines[-9:]
    assert [r.line for r in history] == list(range(len(lines) - 8, len(lines) + 1))
    errors = [r for r in history if isinstance(r, IngestError)]
    assert errors[0].line == lines.index(b"not json 36\n") + 1 and errors[0].reason.startswith("invalid JSON")
    assert follower.ingest_errors == 1 and follower.checkpoints == 7 and follower.entries == 1
    assert collector.kinds() == ["started"]
    older = follower.page_back(history[0].offset, 4)
    assert [r.raw + b"\n" for r in older] == lines[-13:-9]
    assert [r.line for r in older] == list(range(len(lines) - 12, len(lines) - 8))
    await collector.stop()


async def test_history_starts_at_its_oldest_checkpoint(tmp_path: Path) -> None:
    """The backwards scan finds exactly ``history`` checkpoints in its first block, after many
    entries: the history starts at the oldest of them (entries before it are older history)."""
    feed = tmp_path / "feed.jsonl"
    notes = b"".join(b'{"kind": "note", "n": %d}\n' % i for i in range(4000))  # ~100 KB of entries
    tail = cp(1) + b'{"kind": "between"}\n' + cp(2) + cp(3)
    feed.write_bytes(b"".join(cp(i) for i in range(100, 1100)) + notes + tail)
    follower = FeedFollower(feed, history=3)
    collector = Collector(follower)
    await collector.wait_for(lambda: "started" in collector.kinds())
    await collector.stop()
    assert [r.raw + b"\n" for r in collector.batches[0][:-1]] == tail.splitlines(keepends=True)
    assert collector.batches[0][-1].data["offset"] == len(feed.read_bytes()) - len(tail)


async def test_incomplete_last_line_is_held_until_its_newline(tmp_path: Path) -> None:
    feed = tmp_path / "feed.jsonl"
    feed.write_bytes(cp(0) + cp(1)[:20])  # the engine is in the middle of writing line 2
    collector = Collector(FeedFollower(feed))
    await collector.wait_for(lambda: "started" in collector.kinds())
    assert [r.data["label"] for r in collector.records] == ["cp-0"]
    append(feed, cp(1)[20:40])
    await asyncio.sleep(0.3)
    assert collector.received() == 1
    append(feed, cp(1)[40:] + cp(2)[:5])
    await collector.wait_for(lambda: collector.received() == 2)
    assert collector.records[1].raw + b"\n" == cp(1) and collector.records[1].line == 2
    append(feed, cp(2)[5:])
    await collector.wait_for(lambda: collector.received() == 3)
    await collector.stop()
    assert [r.line for r in collector.records] == [1, 2, 3]


async def test_over_long_line_is_an_ingest_error_and_is_not_kept(tmp_path: Path) -> None:
    feed = tmp_path / "feed.jsonl"
    feed.write_bytes(cp(0))
    follower = FeedFollower(feed, max_line=1000)
    collector = Collector(follower)
    await collector.wait_for(lambda: "started" in collector.kinds())
    append(feed, b'{"registry_digest": "' + b"x" * 5000)
    append(feed, b'"}\n' + cp(2))
    await collector.wait_for(lambda: collector.received() == 3)
    await collector.stop()
    error = collector.records[1]
    assert isinstance(error, IngestError) and error.line == 2 and error.offset == len(cp(0))
    assert "longer than the limit of 1000 bytes" in error.reason and error.raw == b""
    assert collector.records[2].line == 3 and collector.records[2].offset == len(cp(0)) + 5024
    assert follower.ingest_errors == 1


async def test_no_paging_back_into_another_file(tmp_path: Path) -> None:
    """After a rotation the caller's oldest offset belongs to the old file: paging back in the new
    one would show its records as older history. The new file was read from its start anyway."""
    feed = tmp_path / "feed.jsonl"
    feed.write_bytes(b"".join(cp(i) for i in range(100)))
    follower = FeedFollower(feed, history=10)
    collector = Collector(follower)
    await collector.wait_for(lambda: "started" in collector.kinds())
    oldest = collector.records[0]
    assert [r.data["label"] for r in follower.page_back(oldest.offset, 2)] == ["cp-88", "cp-89"]
    os.rename(feed, tmp_path / "feed.jsonl.1")
    feed.write_bytes(b"".join(cp(i) for i in range(100, 200)))
    await collector.wait_for(lambda: collector.received() == 110)
    assert follower.page_back(oldest.offset, 2) == []
    assert follower.page_back(collector.records[-1].offset, 2) == []
    await collector.stop()


async def test_incomplete_line_of_a_rotated_file_is_delivered_not_lost(tmp_path: Path) -> None:
    feed = tmp_path / "feed.jsonl"
    feed.write_bytes(cp(0))
    collector = Collector(FeedFollower(feed))
    await collector.wait_for(lambda: "started" in collector.kinds())
    append(feed, cp(1)[:30])  # the engine died mid-line, then the file was rotated
    os.rename(feed, tmp_path / "feed.jsonl.1")
    feed.write_bytes(cp(2))
    await collector.wait_for(lambda: collector.received() == 3)
    await collector.stop()
    assert collector.kinds() == ["started", "rotated", "created"]
    cut = collector.records[1]
    assert isinstance(cut, IngestError) and cut.raw == cp(1)[:30] and cut.line == 2
    assert collector.records[2].line == 1


async def test_truncate_and_regrow_between_two_looks_is_caught_by_the_fingerprint(tmp_path: Path) -> None:
    """Polling: between two looks the file is truncated and regrown past the old offset, so its
    size alone says "grew". The bytes before the offset changed: reported as truncated."""
    feed = tmp_path / "feed.jsonl"
    feed.write_bytes(b"".join(cp(i) for i in range(10)))
    collector = Collector(FeedFollower(feed, poll=True, poll_interval=0.5))
    await collector.wait_for(lambda: "started" in collector.kinds())
    regrown = b"".join(cp(i) for i in range(100, 130))
    await asyncio.sleep(0.1)  # past the look taken right after the start: the next one is ~0.4 s away
    with open(feed, "r+b") as handle:
        handle.truncate(0)
        handle.write(regrown)
    await collector.wait_for(lambda: collector.received() == 40)
    await collector.stop()
    truncated = collector.events[-1]
    assert truncated.kind == "truncated"
    assert truncated.data["size"] > truncated.data["previous_offset"]  # the size grew: only the fingerprint knew
    assert [r.data["label"] for r in collector.records[10:]] == [f"cp-{i}" for i in range(100, 130)]
    assert [r.line for r in collector.records[10:12]] == [1, 2]


async def test_a_burst_is_one_batch_and_a_flood_comes_in_bounded_batches(tmp_path: Path) -> None:
    feed = tmp_path / "feed.jsonl"
    feed.write_bytes(b"")
    collector = Collector(FeedFollower(feed, poll=True, poll_interval=0.5))
    await collector.wait_for(lambda: "started" in collector.kinds())
    pieces = [b"".join(cp(k) for k in range(i, i + 100)) for i in range(0, 3000, 100)]
    await asyncio.sleep(0.1)  # past the look taken right after the start: the next one is ~0.4 s away
    for piece in pieces:  # 30 writes, between two looks
        append(feed, piece)
    await collector.wait_for(lambda: collector.received() == 3000)
    assert len(collector.batches) == 2 and len(collector.batches[1]) == 3000
    flood = b"".join(cp(k) for k in range(3000, 60_000))  # ~5.6 MB at once
    append(feed, flood)
    await collector.wait_for(lambda: collector.received() == 60_000)
    await collector.stop()
    sizes = [sum(len(r.raw) + 1 for r in batch) for batch in collector.batches[2:]]
    assert len(sizes) >= 4 and max(sizes) <= follower_module.BATCH_BYTES + follower_module.READ_BYTES
    assert [r.data["label"] for r in collector.records[2990:3010]] == [f"cp-{k}" for k in range(2990, 3010)]


async def test_a_slow_consumer_holds_the_reader_back(tmp_path: Path) -> None:
    """Back-pressure: the follower does not read (and keep) the feed faster than it is consumed."""
    feed = tmp_path / "feed.jsonl"
    feed.write_bytes(b"")
    follower = FeedFollower(feed)
    iterator = follower.__aiter__()
    first = await iterator.__anext__()
    assert first[-1].kind == "started"
    append(feed, b"".join(cp(k) for k in range(120_000)))  # ~11 MB
    await asyncio.sleep(1.0)  # nobody consumes meanwhile
    assert follower.bytes_read <= follower_module.PENDING_BYTES + 2 * follower_module.BATCH_BYTES
    received = 0
    while received < 120_000:
        received += len(await iterator.__anext__())
    assert received == 120_000 and follower.bytes_read == feed.stat().st_size
    follower.stop()
    with pytest.raises(StopAsyncIteration):
        await iterator.__anext__()


@pytest.mark.parametrize("poll", [False, True], ids=["inotify", "poll"])
async def test_stop_ends_promptly_from_any_thread_without_leftover_threads(tmp_path: Path, poll: bool) -> None:
    feed = tmp_path / "feed.jsonl"
    write_big_feed(feed, lines=120_000)
    baseline = threading.active_count()
    follower = FeedFollower(feed, poll=poll, poll_interval=5.0)
    collector = Collector(follower)
    await collector.wait_for(lambda: "started" in collector.kinds())
    assert threading.active_count() > baseline  # the reader (and the line indexer)
    started = time.monotonic()
    stopper = threading.Thread(target=follower.stop)  # e.g. from a Textual thread worker
    stopper.start()
    await asyncio.wait_for(collector.task, 2)
    assert time.monotonic() - started < 1.0
    follower.stop()  # idempotent
    stopper.join(1.0)
    # the follower's threads are gone (given a moment to return from their last call)
    deadline = time.monotonic() + 1.0
    while threading.active_count() > baseline and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    assert threading.active_count() == baseline, [t.name for t in threading.enumerate()]
    with pytest.raises(RuntimeError, match="only once"):
        follower.__aiter__()


async def test_a_directory_where_the_feed_should_be_is_an_error_not_a_crash(tmp_path: Path) -> None:
    feed = tmp_path / "feed.jsonl"
    feed.mkdir()
    collector = Collector(FeedFollower(feed))
    await collector.wait_for(lambda: "started" in collector.kinds())
    assert collector.kinds() == ["error", "started"]
    assert "not a regular file" in collector.events[0].detail
    feed.rmdir()
    feed.write_bytes(cp(1))
    await collector.wait_for(lambda: collector.received() == 1)
    await collector.stop()
    assert collector.kinds() == ["error", "started", "created"]


def inotify_only(follower: FeedFollower) -> FeedFollower:
    """No periodic safety-net check: only inotify events can make this follower read."""
    follower.ACTIVE_TIMEOUT_MS = follower.IDLE_TIMEOUT_MS = 600_000
    return follower


async def test_feed_directory_removed_and_recreated(tmp_path: Path) -> None:
    """The re-created directory may even get the old one's inode number: the follower watches the
    new directory (the old watch is dead) and reads the new feed from its start."""
    directory = tmp_path / "coordination"
    directory.mkdir()
    feed = directory / "feed.jsonl"
    feed.write_bytes(cp(0))
    collector = Collector(inotify_only(FeedFollower(feed)))
    await collector.wait_for(lambda: "started" in collector.kinds())
    for round_ in range(1, 3):
        shutil.rmtree(directory)
        await collector.wait_for(lambda n=round_: collector.kinds().count("deleted") == n)
        directory.mkdir()  # now it often gets the old directory's inode number
        feed.write_bytes(cp(round_ * 10))
        await collector.wait_for(lambda n=round_: collector.received() == 2 * n)
        append(feed, cp(round_ * 10 + 1))  # and appends to the new file are heard
        await collector.wait_for(lambda n=round_: collector.received() == 2 * n + 1)
    await collector.stop()
    assert [r.data["label"] for r in collector.records] == ["cp-0", "cp-10", "cp-11", "cp-20", "cp-21"]
    assert collector.kinds() == ["started", "deleted", "created", "deleted", "created"]


async def test_feed_that_is_a_symlink_into_another_directory(tmp_path: Path) -> None:
    (tmp_path / "engine").mkdir()
    (tmp_path / "coordination").mkdir()
    target = tmp_path / "engine" / "brief-1.jsonl"
    target.write_bytes(cp(0))
    feed = tmp_path / "coordination" / "context-brief.jsonl"
    feed.symlink_to(target)
    collector = Collector(inotify_only(FeedFollower(feed)))
    await collector.wait_for(lambda: "started" in collector.kinds())
    # Each pause lets the reader arm its watch; an append made before that would be read by the
    # look it takes right after arming, and this test would not show that engine/ is watched.
    await asyncio.sleep(0.3)
    append(target, cp(1))  # an event in engine/, not in coordination/
    await collector.wait_for(lambda: collector.received() == 2)
    newer = tmp_path / "engine" / "brief-2.jsonl"
    newer.write_bytes(cp(2))
    (tmp_path / "coordination" / "next").symlink_to(newer)
    os.replace(tmp_path / "coordination" / "next", feed)  # the link now points at a new file
    await collector.wait_for(lambda: collector.received() == 3)
    await asyncio.sleep(0.3)
    append(newer, cp(3))
    await collector.wait_for(lambda: collector.received() == 4)
    await collector.stop()
    assert [r.data["label"] for r in collector.records] == ["cp-0", "cp-1", "cp-2", "cp-3"]
    assert collector.kinds() == ["started", "rotated", "created"]  # brief-1 is still there: rotated


async def test_counters_and_bounded_ring(tmp_path: Path) -> None:
    feed = tmp_path / "feed.jsonl"
    feed.write_bytes(b"")
    follower = FeedFollower(feed, history=50)
    collector = Collector(follower)
    await collector.wait_for(lambda: "started" in collector.kinds())
    for i in range(0, 2000, 250):
        append(feed, b"".join(cp(k) for k in range(i, i + 250)) + b"[1]\n")
    await collector.wait_for(lambda: collector.received() == 2008)
    await collector.stop()
    assert len(follower.recent) == 50 and follower.recent.maxlen == 50
    assert [c.data["label"] for c in follower.recent] == [f"cp-{k}" for k in range(1950, 2000)]
    stats = follower.stats()
    assert stats["checkpoints"] == 2000 and stats["ingest_errors"] == 8 and stats["bytes_read"] == feed.stat().st_size
    assert all(r.observed_ns > 0 for r in collector.records)
    errors = [r for r in collector.records if isinstance(r, IngestError)]
    assert [e.line for e in errors] == [251 * k for k in range(1, 9)]
    assert errors[0].reason == "not a JSON object (got array)"


# -- the backwards scanner ----------------------------------------------------------------------

def forward_lines(data: bytes, max_line: int) -> list[tuple[int, bytes | int]]:
    """The reference: the forward splitter, every line longer than ``max_line`` as its length."""
    splitter = LineSplitter(0, max_line)
    first, lines = splitter.feed(data)
    lines = [x if type(x) is int or len(x) <= max_line else len(x) for x in lines]
    out = []
    offset = first
    for line in lines:
        out.append((offset, line))
        offset += (line if type(line) is int else len(line)) + 1
    return out


def backward_lines(path: Path, end: int, max_line: int, block: int) -> tuple[list[tuple[int, bytes | int]], int]:
    fd = os.open(path, os.O_RDONLY)
    try:
        scanner = BackScanner(fd, end, max_line, first_block=block, max_block=block * 4)
        regions = list(scanner)
    finally:
        os.close(fd)
    out = []
    for offset, lines in reversed(regions):
        for line in lines:
            out.append((offset, line))
            offset += (line if type(line) is int else len(line)) + 1
    return out, scanner.boundary or 0


@settings(max_examples=300, deadline=None)
@given(data=st.lists(st.sampled_from([b"a", b"bc", b"\n", b"\n\n", b"0123456789" * 3]), max_size=80),
       block=st.integers(1, 40), max_line=st.integers(1, 60), cut=st.integers(0, 10_000))
def test_backwards_scanner_agrees_with_the_forward_splitter(tmp_path_factory, data, block, max_line, cut) -> None:
    content = b"".join(data)
    end = min(cut, len(content))
    path = tmp_path_factory.getbasetemp() / "backscan.bin"  # one file, rewritten per example
    path.write_bytes(content)
    got, boundary = backward_lines(path, end, max_line, block)
    prefix = content[:end]
    assert boundary == prefix.rfind(b"\n") + 1
    assert got == forward_lines(prefix[:boundary], max_line)


def test_count_newlines_in_chunks(tmp_path: Path) -> None:
    path = tmp_path / "f"
    content = b"x\n" * 1000 + b"tail"
    path.write_bytes(content)
    fd = os.open(path, os.O_RDONLY)
    try:
        assert count_newlines(fd, 0, len(content), buffer=bytearray(7)) == 1000
        assert count_newlines(fd, 3, 11, buffer=bytearray(3)) == content[3:11].count(b"\n")
    finally:
        os.close(fd)


def test_checkpoint_records_are_real_checkpoints(tmp_path: Path) -> None:
    """Sanity for the helpers above: cp() lines are checkpoints to the parser."""
    from polylog_console.core.feed.records import parse_line

    assert isinstance(parse_line(cp(3)[:-1]), Checkpoint)
