"""Helpers shared by the command modules: opening the workspace and config, output, exit codes."""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from polylog_console.core.infra.text import safe_text
from polylog_console.core.model.config import Config, load_config
from polylog_console.core.model.workspace import Workspace

EXIT_OK = 0
EXIT_PROBLEM = 1
EXIT_ERROR = 2


@dataclass(frozen=True)
class Context:
    workspace: Workspace
    config: Config
    json: bool


def open_context(args: argparse.Namespace) -> Context:
    ws = Workspace.open(args.workspace)
    config = load_config(ws.root, Path(args.config) if args.config else None)
    return Context(ws, config, bool(getattr(args, "json", False)))


def fail(message: str) -> int:
    """One line on stderr, exit code 2."""
    sys.stderr.write(f"polylog-console: error: {safe_text(message)}\n")
    sys.stderr.flush()
    return EXIT_ERROR


def print_json(document: Any) -> None:
    sys.stdout.buffer.write(orjson.dumps(document, option=orjson.OPT_NON_STR_KEYS | orjson.OPT_APPEND_NEWLINE))
    sys.stdout.flush()


def write_json_line(document: Any) -> None:
    """One JSON line, flushed at once (for ``watch --json`` piped into another program)."""
    out = sys.stdout.buffer
    out.write(orjson.dumps(document, option=orjson.OPT_NON_STR_KEYS | orjson.OPT_APPEND_NEWLINE))
    out.flush()


def say(text: str = "") -> None:
    """Print a line of human-readable output (already made safe by the caller)."""
    sys.stdout.write(text + "\n")


def diff_lines(diff, indent: str = "", label: str = "") -> list[str]:
    """Human-readable lines of a RegistryDiff: ``label`` and the totals, then counts per namespace."""
    lines = [f"{indent}{label}missing {diff.missing}, unexpected {diff.unexpected}, mismatched {diff.mismatched}"]
    for ns, counts in diff.per_namespace().items():
        lines.append(f"{indent}  {safe_text(ns, 30):<14} missing {counts['missing']}, "
                     f"unexpected {counts['unexpected']}, mismatched {counts['mismatched']}")
    return lines
