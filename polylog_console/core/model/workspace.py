"""Workspace layout (SPEC §1) and path confinement.

Every path the console opens on behalf of untrusted input (a ``registry_snapshot`` named in the
feed, a replica ``path`` from the config) goes through :meth:`Workspace.confine`, which refuses
anything that resolves outside the workspace root (``..``, absolute paths, symlinks pointing out).
"""

from __future__ import annotations

import errno
import os
from dataclasses import dataclass
from pathlib import Path

from polylog_console.core.infra.text import has_surrogates
from polylog_console.core.model.errors import WorkspaceError

SOURCE = "stable_polyforms.jsonl"
CATALOGS = "catalogs"
REGISTRY = "catalogs/registry.json"
ATTACHMENT_GRAPH = "catalogs/attachment_graph.json"
SCALER_TABLES = "catalogs/scaler_tables.json"
METADATA = "catalogs/metadata.json"
FEED = "memory/coordination/context-brief.jsonl"
AUDIT = "memory/audit/events.jsonl"
OUTBOX = "memory/outbox"
ESCALATIONS = "memory/escalations"
LOCKS = "memory/locks"
DIGEST_CACHE = "memory/cache/registry-digest.json"
CONFIG = "monitoring.toml"

#: The real path of every workspace opened by this process: :func:`check_contained` refuses a path
#: lexically inside one of them whose symbolic links lead outside it (or loop).
_ROOTS: set[str] = set()


class ContainmentError(OSError):
    """A workspace path whose symbolic links lead outside the workspace, or loop.

    An ``OSError`` so that every writer (audit log, outbox, locks) reports it as the write error it
    is; ``strerror`` is the one-line reason without the file's name."""


def _inside(real: str, root: str) -> bool:
    return real == root or real.startswith(root.rstrip(os.sep) + os.sep)


def check_contained(path: str | os.PathLike[str]) -> None:
    """Refuse (:class:`ContainmentError`) a path inside an opened workspace that resolves outside it.

    Every file the console opens under a workspace (stored registry, metadata, source, feed, audit
    log, outbox, escalations, reports, cache, incidents index, locks) is checked here, by the bounded
    reader, the atomic writer, the audit log and the lock, before it is opened: a symbolic link
    (of the file or of a parent directory) pointing outside the workspace is refused, so nothing is
    read from or written to a file outside it; a symlink loop is refused as ``symlink loop``. A path
    outside every workspace (an absolute path from the configuration) is not this function's business.
    """
    if not _ROOTS:
        return
    absolute = os.path.abspath(os.fspath(path))
    root = next((r for r in _ROOTS if _inside(absolute, r)), None)
    if root is None:
        return
    try:
        real = os.path.realpath(absolute, strict=True)
    except FileNotFoundError:
        real = os.path.realpath(absolute)  # not there yet (a write): its existing parents decide
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise ContainmentError(errno.ELOOP, "symlink loop", os.fspath(path)) from None
        return  # any other error is the open's to report
    if not _inside(real, root):
        raise ContainmentError(errno.EPERM, "symbolic link leads outside the workspace, refused", os.fspath(path))


@dataclass(frozen=True)
class Workspace:
    """A workspace directory. ``root`` is absolute and resolved."""

    root: Path

    def __post_init__(self) -> None:
        _ROOTS.add(str(self.root))

    @classmethod
    def open(cls, directory: str | os.PathLike[str] | None = None) -> Workspace:
        """Open ``directory`` (default: ``$POLYLOG_WORKSPACE`` or the current directory)."""
        raw = directory if directory is not None else os.environ.get("POLYLOG_WORKSPACE") or "."
        root = Path(raw).expanduser()
        try:
            root = root.resolve(strict=True)
        except FileNotFoundError:
            raise WorkspaceError(f"workspace {raw}: no such directory") from None
        except RuntimeError:  # Path.resolve's "Symlink loop" before Python 3.13
            raise WorkspaceError(f"workspace {raw}: symlink loop") from None
        except OSError as exc:
            raise WorkspaceError(f"workspace {raw}: {exc.strerror or exc}") from None
        if not root.is_dir():
            raise WorkspaceError(f"workspace {raw}: not a directory")
        return cls(root)

    def path(self, relative: str) -> Path:
        return self.root / relative

    @property
    def source(self) -> Path:
        return self.root / SOURCE

    @property
    def catalogs(self) -> Path:
        return self.root / CATALOGS

    @property
    def registry(self) -> Path:
        return self.root / REGISTRY

    @property
    def metadata(self) -> Path:
        return self.root / METADATA

    @property
    def feed(self) -> Path:
        return self.root / FEED

    @property
    def audit(self) -> Path:
        return self.root / AUDIT

    @property
    def outbox(self) -> Path:
        return self.root / OUTBOX

    @property
    def escalations(self) -> Path:
        return self.root / ESCALATIONS

    @property
    def locks(self) -> Path:
        return self.root / LOCKS

    @property
    def digest_cache(self) -> Path:
        return self.root / DIGEST_CACHE

    @property
    def config_file(self) -> Path:
        return self.root / CONFIG

    def relative(self, path: Path) -> str:
        """``path`` relative to the root when inside it, else the path as given."""
        try:  # realpath, not Path.resolve: a symlink loop must not raise (RuntimeError) here
            return Path(os.path.realpath(path)).relative_to(self.root).as_posix()
        except (ValueError, OSError):
            try:
                return Path(os.path.abspath(path)).relative_to(self.root).as_posix()
            except ValueError:
                return str(path)

    def confine(self, untrusted: str, *, what: str = "path") -> Path:
        """Resolve ``untrusted`` (relative to the root) and refuse it unless it stays inside.

        Symlinks are resolved before the check, so a link pointing outside is refused too.
        """
        # A lone surrogate (valid JSON: "\\ud800") names no file: no OS call can encode it.
        if not isinstance(untrusted, str) or not untrusted or "\x00" in untrusted or has_surrogates(untrusted):
            raise WorkspaceError(f"{what} {untrusted!r}: not a usable path")
        candidate = Path(untrusted)
        if not candidate.is_absolute():
            candidate = self.root / candidate
        try:
            resolved = Path(os.path.realpath(candidate, strict=True))
        except FileNotFoundError:
            resolved = Path(os.path.realpath(candidate))
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise WorkspaceError(f"{what} {untrusted!r}: symlink loop") from None
            resolved = Path(os.path.realpath(candidate))
        if resolved != self.root and self.root not in resolved.parents:
            raise WorkspaceError(f"{what} {untrusted!r}: outside the workspace, refused")
        return resolved
