"""Shared fixtures: generated workspaces and a way to run the real command line."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from polylog_console.demo.sample import Incident, write_workspace

REPO = Path(__file__).resolve().parents[1]
VECTORS = REPO.parent / "shared" / "vectors" / "registry_digests.jsonl"
if not VECTORS.exists():  # a clone elsewhere: the vectors travel with the tests
    VECTORS = Path(__file__).parent / "data" / "registry_digests.jsonl"


@dataclass
class Workspace:
    root: Path
    incident: Incident

    @property
    def feed(self) -> Path:
        return self.root / "memory" / "coordination" / "context-brief.jsonl"

    @property
    def registry(self) -> Path:
        return self.root / "catalogs" / "registry.json"


@pytest.fixture
def sample_ws(tmp_path: Path) -> Workspace:
    """A fresh copy of the sample incident workspace (2,000 polyforms, 200 checkpoints)."""
    root = tmp_path / "ws"
    incident = write_workspace(root)
    return Workspace(root, incident)


@pytest.fixture
def small_ws(tmp_path: Path) -> Workspace:
    """A small workspace (200 polyforms, 20 checkpoints, drift from 15)."""
    root = tmp_path / "small"
    incident = write_workspace(root, polyforms=200, checkpoints=20, drift_from=15)
    return Workspace(root, incident)


@dataclass
class Result:
    code: int
    out: str
    err: str


def run_cli(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None, timeout: float = 120,
            input: str | None = None) -> Result:
    """Run the installed ``polylog-console`` as a real process."""
    full_env = {**os.environ, "NO_COLOR": "1", **(env or {})}
    full_env.pop("POLYLOG_WORKSPACE", None) if env is None or "POLYLOG_WORKSPACE" not in env else None
    proc = subprocess.run(
        [sys.executable, "-m", "polylog_console", *args],
        cwd=cwd, env=full_env, capture_output=True, text=True, timeout=timeout, input=input,
    )
    return Result(proc.returncode, proc.stdout, proc.stderr)


@pytest.fixture
def cli():
    return run_cli
