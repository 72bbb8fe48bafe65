"""``polylog-console demo``: a scratch workspace with a live simulated engine and HTTP replicas,
opened in the console (SPEC §11). The story and its timing are described in
:mod:`polylog_console.demo.engine`.

``--headless`` (or a build without the console) plays the same story without the console,
narrated on stdout, with an automatic operator running the runbook's commands. The scratch
workspace is removed when the demo ends unless ``--keep``.
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from typing import Any

from polylog_console.cli.common import EXIT_OK, EXIT_PROBLEM, fail, say
from polylog_console.core.infra.text import safe_text
from polylog_console.demo.engine import MAX_SPEED, SCENARIOS, Demo, DemoSettings, run_headless


def _speed(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not 0 < value <= MAX_SPEED:
        raise argparse.ArgumentTypeError(f"must be above 0 and at most {MAX_SPEED:g}, got {text}")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.epilog = ("--workspace DIR puts the scratch workspace in DIR (new or empty) instead of a temporary "
                     "directory; the demo never touches POLYLOG_WORKSPACE.")
    parser.add_argument("--keep", action="store_true", help="keep the scratch workspace when the demo ends")
    parser.add_argument("--speed", type=_speed, default=1.0, metavar="X",
                        help=f"play X times faster (engine at 3*X checkpoints/s; default 1, at most {MAX_SPEED:g})")
    parser.add_argument("--scenario", choices=SCENARIOS, default="fixable",
                        help="fixable: a rehydrate resolves the drift (default); persistent: drift remains "
                             "after rehydrate and escalates")
    parser.add_argument("--headless", action="store_true",
                        help="no console: narrate the story on stdout, with an automatic operator")


def _console() -> Callable[..., int] | None:
    """The console's entry point, or None when this build has no console."""
    try:
        from polylog_console.ui.app import run_console
    except ModuleNotFoundError as exc:
        if exc.name and (exc.name == "polylog_console.ui" or exc.name.startswith("polylog_console.ui.")):
            return None
        raise
    return run_console


@contextlib.contextmanager
def _ending_signals(on_signal: Callable[[int, Any], None]) -> Iterator[None]:
    """Route SIGTERM and SIGHUP (terminal gone) to ``on_signal`` so that the demo always stops its
    engine and removes its scratch workspace; restores the previous handlers afterwards."""
    previous: dict[int, Any] = {}
    if threading.current_thread() is threading.main_thread():
        for signum in (signal.SIGTERM, signal.SIGHUP):
            previous[signum] = signal.signal(signum, on_signal)
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _leave_console(signum: int, frame: Any) -> None:
    """SIGTERM/SIGHUP while the console demo runs.

    Once the console is up it handles SIGHUP itself (a graceful exit, see
    :mod:`polylog_console.ui.terminal`); SIGTERM is treated the same way by handing it to that
    handler. Raising out of Textual's event loop instead would leave its threads running. Before
    the console is up (or after it), leave through an exception so that ``finally`` cleans up.
    """
    hangup = signal.getsignal(signal.SIGHUP)
    if callable(hangup) and hangup is not _leave_console:
        hangup(signal.SIGHUP, frame)
        return
    raise SystemExit(128 + signum)


def run(args: argparse.Namespace) -> int:
    if args.config:
        return fail("demo: --config is not used: the demo writes its own monitoring.toml into its scratch workspace")
    settings = DemoSettings(scenario=args.scenario, speed=args.speed)
    run_console = None if args.headless else _console()
    if run_console is None and not args.headless:
        sys.stderr.write("polylog-console: the console is not available in this build; playing the demo headless "
                         "(Ctrl-C to stop)\n")
        sys.stderr.flush()
    demo = Demo(settings, directory=args.workspace, keep=args.keep)
    code = EXIT_OK
    stop = threading.Event()
    try:
        if run_console is not None:
            from polylog_console.ui.terminal import before_hard_exit

            # A hangup whose graceful exit overruns ends the process hard: remove the scratch then too.
            with _ending_signals(_leave_console), before_hard_exit(lambda: demo.close(timeout=0.3)):
                demo.start()
                code = run_console(demo.workspace, demo.config(), theme=getattr(args, "theme", None),
                                   read_only=bool(getattr(args, "read_only", False)),
                                   poll=bool(getattr(args, "poll", False)))
        else:
            with _ending_signals(lambda _signum, _frame: stop.set()):
                demo.start()
                try:
                    result = run_headless(demo, lambda line: say(line), stop=stop)
                except KeyboardInterrupt:
                    result, code = None, 130
                expected_ok = settings.scenario == "fixable"
                if result is not None and result.finished and result.resolved != expected_ok:
                    code = EXIT_PROBLEM  # the story did not play as designed (e.g. a step failed)
    finally:
        stopped = demo.stop()
        removed = demo.close()
        if demo.root is not None:
            if args.keep:
                say(f"demo workspace kept: {safe_text(str(demo.root))} "
                    f"(open it with: polylog-console --workspace {safe_text(str(demo.root))})")
            elif not removed:
                sys.stderr.write(f"polylog-console: demo workspace {safe_text(str(demo.root))} could not be removed\n")
        if demo.error is not None:
            sys.stderr.write(f"polylog-console: the demo's engine failed: {safe_text(demo.error, 200)}\n")
        if not stopped:
            sys.stderr.write("polylog-console: the demo's engine did not stop within 5 s\n")
    return code
