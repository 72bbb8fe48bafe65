"""``polylog-console rehydrate``: rebuild ``catalogs/`` from the source, atomically (runbook step 3).

Exit 0 when the catalogs were rebuilt, 1 when the source is invalid (nothing written; the problems
are listed, in full with ``--json``), 2 on an I/O, lock or configuration error (one line on
stderr; the previous catalogs are unchanged). ``--wait SECONDS`` waits for another action holding
the workspace lock instead of failing at once. SIGTERM cancels cleanly, like Ctrl-C.
"""

from __future__ import annotations

import argparse
import signal

from polylog_console.cli.common import EXIT_OK, EXIT_PROBLEM, fail, open_context, print_json, say
from polylog_console.cli.validate import TerminalProgress, workers_arg
from polylog_console.core.infra.lock import LockHeld
from polylog_console.core.infra.text import safe_text
from polylog_console.core.model.progress import Cancelled
from polylog_console.core.runbook.rehydrate import rehydrate
from polylog_console.core.runbook.validate import ValidationFailed


def seconds_arg(value: str) -> float:
    try:
        seconds = float(value)
    except ValueError:
        seconds = -1.0
    if not seconds >= 0:  # also refuses NaN
        raise argparse.ArgumentTypeError(f"expected a number of seconds >= 0, got {value!r}")
    return seconds


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--workers", metavar="auto|N", type=workers_arg, default="auto",
                        help="worker processes (default auto: parallel for large sources)")
    parser.add_argument("--wait", metavar="SECONDS", type=seconds_arg, default=0.0,
                        help="wait up to SECONDS for another action holding the workspace lock (default: fail at once)")


def run(args: argparse.Namespace) -> int:
    ctx = open_context(args)
    progress = TerminalProgress()
    previous = signal.signal(signal.SIGTERM, lambda _sig, _frame: progress.cancel())
    try:
        result = rehydrate(ctx.workspace, ctx.config, workers=args.workers, progress=progress, lock_wait=args.wait)
    except ValidationFailed as exc:
        progress.clear()
        if ctx.json:
            print_json({"rehydrated": False, **exc.report.to_json()})
        else:
            say("rehydrate: the source is invalid; nothing was written")
            say(exc.report.render_text())
        return EXIT_PROBLEM
    except LockHeld as exc:
        progress.clear()
        hint = "" if args.wait else " (use --wait SECONDS to wait for it)"
        return fail(f"{exc}{hint}")
    except Cancelled:
        progress.clear()
        return fail("rehydrate cancelled; the catalogs are unchanged")
    finally:
        signal.signal(signal.SIGTERM, previous)
        progress.clear()
    if ctx.json:
        print_json({"rehydrated": True, **result.to_json()})
        return EXIT_OK
    workers = f"{result.workers} worker processes" if result.workers > 1 else "in-process"
    say(f"rehydrated      {result.polyforms:,} polyforms from stable_polyforms.jsonl in {result.duration:.2f}s "
        f"({workers})")
    say(f"registry digest {result.registry_digest} ({result.scheme}, {result.symbols:,} symbols)")
    say(f"source checksum {result.source_checksum}")
    for info in result.artifacts.values():
        say(f"  {safe_text(info['path'], 40):<32} {info['bytes']:>14,} bytes  sha256 {info['checksum'][:16]}")
    return EXIT_OK
