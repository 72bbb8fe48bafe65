"""Workspace layout (SPEC §1) and path confinement.

Every path the console opens on behalf of untrusted input (a ``registry_snapshot`` named in the
feed, a replica ``path`` from the config) goes through :meth:`Workspace.confine`, which refuses
anything that resolves outside the workspace root (``..``, absolute paths, symlinks pointing out).
"""

from __future__ import annotations

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


@dataclass(frozen=True)
class Workspace:
    """A workspace directory. ``root`` is absolute and resolved."""

    root: Path

    @classmethod
    def open(cls, directory: str | os.PathLike[str] | None = None) -> Workspace:
        """Open ``directory`` (default: ``$POLYLOG_WORKSPACE`` or the current directory)."""
        raw = directory if directory is not None else os.environ.get("POLYLOG_WORKSPACE") or "."
        root = Path(raw).expanduser()
        try:
            root = root.resolve(strict=True)
        except FileNotFoundError:
            raise WorkspaceError(f"workspace {raw}: no such directory") from None
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
        try:
            return path.resolve().relative_to(self.root).as_posix()
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
        resolved = Path(os.path.realpath(candidate))
        if resolved != self.root and self.root not in resolved.parents:
            raise WorkspaceError(f"{what} {untrusted!r}: outside the workspace, refused")
        return resolved
