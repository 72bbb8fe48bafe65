"""``polylog_console/core`` type-checks with mypy (``py.typed`` is shipped, so its types are a
promise to importers). The configuration is ``[tool.mypy]`` in ``pyproject.toml``: strict for the
monitor and the model, checked bodies everywhere else."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def test_core_type_checks() -> None:
    try:
        import mypy  # noqa: F401
    except ImportError:  # pragma: no cover - the [test] extra installs it
        if shutil.which("mypy") is None:
            pytest.skip("mypy is not installed (pip install -e .[test])")
    proc = subprocess.run([sys.executable, "-m", "mypy", "polylog_console/core"], cwd=REPO, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-2000:]
