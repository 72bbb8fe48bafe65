"""``watch`` without ``--once``: not built yet."""

from __future__ import annotations

from polylog_console.cli.common import fail


def run_follow(ctx, args) -> int:
    return fail("watch: following the feed is not available yet; use --once")
