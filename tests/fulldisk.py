"""A directory on a disk with no space left, for the fault tests (issue 10, item 4).

Two real ways, chosen at run time:

* ``tmpfs`` (needs the privilege to mount, e.g. root in a container): a small tmpfs mounted on a
  temporary directory and filled to its last page by a filler file. Creating empty files and
  directories still works there (tmpfs counts pages), every write of data fails with ``ENOSPC``.
  :meth:`FullDisk.free` deletes the filler; :meth:`FullDisk.read_only` remounts it read-only
  (``EROFS`` for every write, even opening an existing file for writing).
* ``rlimit`` (anywhere): the process under test is started with ``RLIMIT_FSIZE`` = 0 (soft; the
  hard limit stays unlimited), so any write that grows a regular file fails with ``EFBIG``
  (CPython ignores ``SIGXFSZ``). :meth:`FullDisk.free` raises the running process's limit with
  ``prlimit(2)``: space "returns" without a restart.
"""

from __future__ import annotations

import contextlib
import os
import resource
import shutil
import subprocess
from pathlib import Path


def can_mount() -> bool:
    return os.geteuid() == 0 and shutil.which("mount") is not None


class FullDisk:
    FILLER = ".filler"

    def __init__(self, base: Path, mode: str = "tmpfs", size: str = "16m") -> None:
        self.dir = Path(base) / f"disk-{mode}"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.mode = mode
        self.mounted = False
        if mode == "tmpfs":
            done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(self.dir)],
                                  capture_output=True, text=True, timeout=30)
            if done.returncode != 0:
                raise OSError(f"cannot mount a tmpfs: {done.stderr.strip()}")
            self.mounted = True
        elif mode != "rlimit":
            raise ValueError(mode)

    # -- making it full ----------------------------------------------------------------------

    def fill(self) -> int:
        """tmpfs: write the filler until the disk refuses a single byte. Returns bytes written."""
        if self.mode != "tmpfs":
            return 0
        written = 0
        with open(self.dir / self.FILLER, "ab", buffering=0) as handle:
            for chunk in (1 << 20, 1 << 12, 1):
                block = b"\0" * chunk
                while True:
                    try:
                        handle.write(block)
                    except OSError:
                        break
                    written += chunk
        probe = self.dir / ".probe"
        try:
            probe.write_bytes(b"x")
        except OSError:
            pass
        else:
            raise AssertionError("the tmpfs still takes writes after filling")
        finally:
            with contextlib.suppress(OSError):
                probe.unlink()
        return written

    def fill_running(self, pid: int) -> None:
        """Make the disk full for a process already running (tmpfs: fill it; rlimit: lower its limit)."""
        if self.mode == "tmpfs":
            self.fill()
        else:
            _, hard = resource.prlimit(pid, resource.RLIMIT_FSIZE)
            resource.prlimit(pid, resource.RLIMIT_FSIZE, (0, hard))

    def preexec(self):
        """For ``subprocess.Popen(preexec_fn=...)``: the child can write nothing (rlimit mode)."""
        if self.mode != "rlimit":
            return None

        def limit() -> None:
            _, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
            resource.setrlimit(resource.RLIMIT_FSIZE, (0, hard))

        return limit

    # -- making it usable again --------------------------------------------------------------

    def free(self, pid: int | None = None) -> None:
        if self.mode == "tmpfs":
            (self.dir / self.FILLER).unlink(missing_ok=True)
        elif pid is not None:
            _, hard = resource.prlimit(pid, resource.RLIMIT_FSIZE)
            resource.prlimit(pid, resource.RLIMIT_FSIZE, (hard, hard))

    def read_only(self, on: bool = True) -> None:
        """Remount the tmpfs read-only (or back read-write)."""
        assert self.mounted
        subprocess.run(["mount", "-o", f"remount,{'ro' if on else 'rw'}", str(self.dir)], check=True,
                       capture_output=True, timeout=30)

    def close(self) -> None:
        if self.mounted:
            subprocess.run(["umount", "-l", str(self.dir)], capture_output=True, timeout=30)
            self.mounted = False

    def __enter__(self) -> FullDisk:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
