"""How a workspace names itself in fleet views (SPEC §12): ``[fleet] name``, by default
``<hostname>:<workspace path>``. The same name labels its metrics (``polylog_workspace_info``) and
its Alertmanager alerts (``workspace``), so one silence matcher finds both."""

from __future__ import annotations

import socket
from pathlib import Path

from polylog_console import __version__
from polylog_console.core.model.config import Config


def hostname() -> str:
    return socket.gethostname()


def workspace_name(config: Config) -> str:
    """``[fleet] name``, else ``<hostname>:<workspace path>``."""
    return config.fleet.name or f"{hostname()}:{Path(config.workspace)}"


def workspace_info(config: Config) -> dict[str, str]:
    """The labels of ``polylog_workspace_info`` (and ``path``, for ``polylog_workspace_path_info``)."""
    return {"workspace": workspace_name(config), "host": hostname(), "scheme": config.scheme,
            "version": __version__, "path": str(Path(config.workspace))}
