"""No command: open the console on the workspace (SPEC §11)."""

from __future__ import annotations

import argparse
import sys

from polylog_console.cli.common import fail, open_context
from polylog_console.core.registry.stored import StoredRegistry, start_digest_primer


def run(args: argparse.Namespace) -> int:
    ctx = open_context(args)
    if not (sys.stdin.isatty() and sys.stdout.isatty()):
        return fail("the console needs a terminal (stdin and stdout); use watch, validate, digest... in scripts")
    # A big registry never digested before is digested by a child process while Textual loads
    # and the screen opens (forked now, before any thread exists).
    primer = start_digest_primer(StoredRegistry.for_workspace(ctx.workspace, ctx.config.scheme))
    from polylog_console.ui.app import run_console

    return run_console(ctx.workspace, ctx.config, theme=getattr(args, "theme", None),
                       read_only=bool(getattr(args, "read_only", False)), poll=bool(getattr(args, "poll", False)),
                       primer=primer)
