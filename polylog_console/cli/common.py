"""Helpers shared by the command modules: opening the workspace and config, output, exit codes."""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from polylog_console.core.infra import audit
from polylog_console.core.infra.text import dumps_json, safe_lines, safe_text
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
    audit.configure(config.audit.max_bytes, config.audit.keep)  # rotation limits of every audit writer
    return Context(ws, config, bool(getattr(args, "json", False)))


def fail(message: str) -> int:
    """One line on stderr, exit code 2."""
    sys.stderr.write(f"polylog-console: error: {safe_text(message)}\n")
    sys.stderr.flush()
    return EXIT_ERROR


def warn(message: str) -> None:
    """One warning line on stderr (the command goes on)."""
    sys.stderr.write(f"polylog-console: warning: {safe_text(message)}\n")
    sys.stderr.flush()


def report_faults(session: Any) -> None:
    """Say on stderr, one line each, what a running session cannot do with the disk: the alert
    outbox cannot be written (alerts go out from memory), can be written again, or is held by
    another running process (:class:`~polylog_console.core.alerts.delivery.OutboxStateEvent`);
    the audit log cannot be written (records wait in memory) or can be written again."""
    def on_events(events: list[Any]) -> None:
        for event in events:
            if getattr(event, "event", None) in ("outbox", "consumer_error"):  # consumer_error: a consumer raised
                warn(event.message)

    def on_audit(error: str | None) -> None:
        if error is not None:
            warn(f"{error}: records are kept in memory (up to {audit.BACKLOG}) and written once it can be")
        else:
            warn(f"audit log {session.ws.relative(session.audit.path)} can be written again: the records held "
                 "meanwhile are written")

    session.subscribe(on_events)
    session.audit.on_change = on_audit


def print_json(document: Any) -> None:
    """A command's JSON document, one line (:func:`~polylog_console.core.infra.text.dumps_json`:
    valid UTF-8 whatever the data holds, controls and bidi characters escaped)."""
    sys.stdout.buffer.write(dumps_json(document, newline=True))
    sys.stdout.flush()


def write_json_line(document: Any) -> None:
    """One JSON line, flushed at once (for ``watch --json`` piped into another program)."""
    out = sys.stdout.buffer
    out.write(dumps_json(document, newline=True))
    out.flush()


def write_json_lines(documents: Any) -> None:
    """Several JSON lines in one write, flushed (one batch of ``watch --json`` events)."""
    out = sys.stdout.buffer
    out.write(b"".join(dumps_json(d, newline=True) for d in documents))
    out.flush()


def say(text: str = "") -> None:
    """Print a line of human-readable output. Untrusted parts are made safe (and cut) by the caller
    (:func:`~polylog_console.core.infra.text.safe_text`); whatever slipped through anyway (a
    control, a bidi override, a lone surrogate that would end the command with
    ``UnicodeEncodeError``) is shown as an escape here (:func:`~polylog_console.core.infra.text.safe_lines`)."""
    sys.stdout.write(safe_lines(text) + "\n")


def diff_lines(diff, indent: str = "", label: str = "") -> list[str]:
    """Human-readable lines of a RegistryDiff: ``label`` and the totals, then counts per namespace."""
    lines = [f"{indent}{label}missing {diff.missing}, unexpected {diff.unexpected}, mismatched {diff.mismatched}"]
    for ns, counts in diff.per_namespace().items():
        lines.append(f"{indent}  {safe_text(ns, 30):<14} missing {counts['missing']}, "
                     f"unexpected {counts['unexpected']}, mismatched {counts['mismatched']}")
    return lines
