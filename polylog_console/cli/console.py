"""No command: open the console."""

from __future__ import annotations

import argparse

from polylog_console.cli.common import fail


def run(args: argparse.Namespace) -> int:
    return fail("the console is not available yet")
