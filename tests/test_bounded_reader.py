"""The bounded, non-blocking reader (core/infra/reader.py) with real files, FIFOs, sockets,
directories and devices."""

from __future__ import annotations

import os
import socket
import threading

import pytest

from polylog_console.core.infra import reader
from polylog_console.core.infra.reader import UnreadableFile, check_regular, open_regular, read_bytes, read_fd


def test_reads_a_regular_file_up_to_its_limit(tmp_path):
    path = tmp_path / "f.json"
    path.write_bytes(b"x" * 1000)
    assert read_bytes(path, 1000) == b"x" * 1000
    with pytest.raises(UnreadableFile) as caught:
        read_bytes(path, 999, label="catalogs/f.json", what="stored registry")
    assert str(caught.value) == "catalogs/f.json: stored registry larger than 999 bytes, refused"


def test_a_fifo_is_refused_at_once_without_a_writer(tmp_path):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with pytest.raises(UnreadableFile) as caught:
        read_bytes(fifo, 100, label="memory/fifo")
    assert str(caught.value) == "memory/fifo: not a regular file (FIFO)"
    assert not caught.value.missing


@pytest.mark.timeout(10)
def test_a_fifo_swapped_in_after_the_stat_does_not_block_the_open(tmp_path, monkeypatch):
    """The race: the path was a regular file when stat-ed and is a FIFO when opened. The open is
    non-blocking and the descriptor's fstat refuses it."""
    regular = tmp_path / "regular"
    regular.write_bytes(b"{}")
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    real_stat = os.stat
    monkeypatch.setattr(reader.os, "stat", lambda path, *a, **k: real_stat(regular if str(path) == str(fifo) else path))
    with pytest.raises(UnreadableFile, match="not a regular file \\(FIFO\\)"):
        open_regular(fifo)


@pytest.mark.parametrize(("target", "kind"), [("/dev/zero", "character device"), ("/dev/null", "character device")])
def test_a_link_to_a_device_is_refused_for_what_it_points_at(tmp_path, target, kind):
    link = tmp_path / "registry.json"
    link.symlink_to(target)
    with pytest.raises(UnreadableFile) as caught:
        read_bytes(link, 1 << 20, label="catalogs/registry.json")
    assert str(caught.value) == f"catalogs/registry.json: not a regular file ({kind})"


def test_a_link_to_a_regular_file_is_followed(tmp_path):
    (tmp_path / "real.json").write_bytes(b'{"a": 1}')
    (tmp_path / "link.json").symlink_to("real.json")
    assert read_bytes(tmp_path / "link.json", 100) == b'{"a": 1}'


def test_directories_and_sockets_are_refused(tmp_path):
    with pytest.raises(UnreadableFile, match=r": not a regular file \(directory\)$"):
        read_bytes(tmp_path, 100)
    path = tmp_path / "sock"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        server.bind(str(path))
        with pytest.raises(UnreadableFile, match=r": not a regular file \(socket\)$"):
            read_bytes(path, 100)
    finally:
        server.close()


def test_a_missing_file_says_so(tmp_path):
    with pytest.raises(UnreadableFile) as caught:
        read_bytes(tmp_path / "nope.json", 100, label="nope.json", what="registry snapshot")
    assert caught.value.missing
    assert str(caught.value) == "nope.json: registry snapshot not found"
    with pytest.raises(UnreadableFile) as caught:
        read_bytes(tmp_path / "nope.json" / "deeper", 100)
    assert caught.value.missing


@pytest.mark.timeout(10)
def test_endless_data_is_cut_at_the_limit():
    """/dev/zero-like growth: an endless stream costs at most limit + 1 bytes, then is refused."""
    fd = os.open("/dev/zero", os.O_RDONLY)
    try:
        with pytest.raises(UnreadableFile, match="larger than 4 MB, refused"):
            read_fd(fd, 0, 4 << 20, "zero")
        assert os.lseek(fd, 0, os.SEEK_CUR) in (0, (4 << 20) + 1)  # /dev/zero has no offset to speak of
    finally:
        os.close(fd)


def test_a_file_that_grows_while_read_is_bounded(tmp_path):
    path = tmp_path / "growing"
    path.write_bytes(b"a" * 100)
    fd, st = open_regular(path)
    try:
        with open(path, "ab") as handle:  # grows after the fstat
            handle.write(b"b" * (3 << 20))
        with pytest.raises(UnreadableFile, match="larger than 1 MB"):
            read_fd(fd, st.st_size, 1 << 20, "growing")
    finally:
        os.close(fd)
    fd, st = open_regular(path)
    try:  # within the limit, the growth is read too
        assert len(read_fd(fd, 100, 4 << 20, "growing")) == 100 + (3 << 20)
    finally:
        os.close(fd)


def test_a_file_larger_than_its_limit_is_refused_before_reading(tmp_path):
    path = tmp_path / "big"
    with open(path, "wb") as handle:
        handle.truncate(600 << 20)  # sparse: 600 MB that cost no disk
    with pytest.raises(UnreadableFile, match="larger than 512 MB, refused"):
        read_bytes(path, reader.LIMITS["stored registry"])


def test_check_regular_on_a_descriptor_and_a_path(tmp_path):
    path = tmp_path / "f"
    path.write_bytes(b"1")
    assert check_regular(path).st_size == 1
    read_end, write_end = os.pipe()
    try:
        with pytest.raises(UnreadableFile, match=r"feed: not a regular file \(FIFO\)"):
            check_regular(read_end, "feed")
    finally:
        os.close(read_end)
        os.close(write_end)


@pytest.mark.timeout(10)
def test_a_fifo_with_a_writer_is_still_refused(tmp_path):
    """Even when something is writing into it (an open would not block), a FIFO is not read."""
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    opened = threading.Event()

    def writer() -> None:
        fd = os.open(fifo, os.O_RDWR)  # a writer that never blocks
        opened.set()
        os.write(fd, b"x" * 100)
        os.close(fd)

    thread = threading.Thread(target=writer)
    thread.start()
    opened.wait(5)
    with pytest.raises(UnreadableFile, match="FIFO"):
        read_bytes(fifo, 1 << 20)
    thread.join(5)


def test_non_utf8_text_is_one_line(tmp_path):
    path = tmp_path / "t"
    path.write_bytes(b"ok\xff")
    with pytest.raises(UnreadableFile) as caught:
        reader.read_text(path, 100, label="t")
    assert str(caught.value) == "t: not valid UTF-8 at byte 2"
