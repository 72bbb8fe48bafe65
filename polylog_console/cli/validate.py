"""``polylog-console validate``: check ``stable_polyforms.jsonl`` against the schema (runbook step 2).

Exit 0 when the source is valid, 1 when it is not (every problem listed with line, field and
message; ``--json`` carries them all), 2 when it cannot be read. A progress line is drawn on
stderr when stderr is a terminal.
"""

from __future__ import annotations

import argparse
import sys

from polylog_console.cli.common import EXIT_OK, EXIT_PROBLEM, open_context, print_json, say
from polylog_console.core.infra.text import safe_text
from polylog_console.core.model.progress import Progress, ProgressUpdate
from polylog_console.core.runbook.validate import validate_workspace


def workers_arg(value: str) -> int | str:
    """argparse type for ``--workers auto|N``."""
    if value == "auto":
        return value
    try:
        n = int(value)
    except ValueError:
        n = 0
    if n < 1:
        raise argparse.ArgumentTypeError(f"expected 'auto' or a positive integer, got {value!r}")
    return n


class TerminalProgress(Progress):
    """A Progress that redraws one status line on stderr, only when stderr is a terminal."""

    def __init__(self) -> None:
        self.tty = sys.stderr.isatty()
        super().__init__(self._draw if self.tty else None, min_interval=0.1)
        self._drawn = False

    def _draw(self, update: ProgressUpdate) -> None:
        pct = f" {100 * update.done / update.total:5.1f}%" if update.total else ""
        sys.stderr.write(f"\r\x1b[2K{safe_text(update.message, 70)}{pct}")
        sys.stderr.flush()
        self._drawn = True

    def clear(self) -> None:
        if self._drawn:
            sys.stderr.write("\r\x1b[2K")
            sys.stderr.flush()
            self._drawn = False


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--workers", metavar="auto|N", type=workers_arg, default="auto",
                        help="worker processes (default auto: parallel for large sources)")
    parser.add_argument("--limit", metavar="N", type=int, default=50,
                        help="problems listed in the text output (default 50; --json lists them all)")


def run(args: argparse.Namespace) -> int:
    ctx = open_context(args)
    progress = TerminalProgress()
    try:
        report = validate_workspace(ctx.workspace, progress=progress, workers=args.workers)
    finally:
        progress.clear()
    if ctx.json:
        print_json(report.to_json())
    else:
        say(report.render_text(args.limit))
    return EXIT_OK if report.valid else EXIT_PROBLEM
