"""``polylog-console replicas``: not built yet."""

from __future__ import annotations

import argparse

from polylog_console.cli.common import fail


def add_arguments(parser: argparse.ArgumentParser) -> None:
    pass


def run(args: argparse.Namespace) -> int:
    return fail("replicas: not available yet")
