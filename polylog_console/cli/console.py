"""No command: open the console on the workspace (SPEC §11)."""

from __future__ import annotations

import argparse
import sys

from polylog_console.cli.common import fail, open_context


def run(args: argparse.Namespace) -> int:
    ctx = open_context(args)
    if not (sys.stdin.isatty() and sys.stdout.isatty()):
        return fail("the console needs a terminal (stdin and stdout); use watch, validate, digest... in scripts")
    from polylog_console.ui.app import run_console

    return run_console(ctx.workspace, ctx.config, theme=getattr(args, "theme", None),
                       read_only=bool(getattr(args, "read_only", False)), poll=bool(getattr(args, "poll", False)))
