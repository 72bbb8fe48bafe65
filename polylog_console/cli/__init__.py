"""Command line (SPEC §11): ``polylog-console [COMMAND] [--workspace DIR] [--config FILE]``.

Each command lives in its own module with ``add_arguments(parser)`` and ``run(args) -> int``;
this module only parses and dispatches. Exit codes: 0 all is well, 1 a problem was found,
2 a usage, configuration or I/O error (one line on stderr).
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from typing import NoReturn

from polylog_console import __version__
from polylog_console.cli.common import fail
from polylog_console.core.model.errors import PolylogError

COMMANDS = {
    "validate": "check stable_polyforms.jsonl against the schema (runbook step 2)",
    "rehydrate": "rebuild catalogs/ from the source, atomically (runbook step 3)",
    "digest": "recompute the stored digest and compare it with a checkpoint (runbook step 4)",
    "replicas": "check digest parity of every configured replica (runbook step 5)",
    "watch": "headless monitor: follow the feed, alerts, audit, metrics",
    "bundle": "write the escalation bundle (runbook §6)",
    "demo": "a scratch workspace with a simulated engine and replicas, opened in the console",
    "fleet": "every workspace's drift from Prometheus and Alertmanager (SPEC §12)",
    "ack": "acknowledge a workspace's drift as an Alertmanager silence (SPEC §12)",
    "report": "post-incident report: timeline, derived times, alerts, actions (SPEC §13)",
}


class Parser(argparse.ArgumentParser):
    """A usage error is one line on stderr, naming where to look (SPEC §11), exit 2."""

    def error(self, message: str) -> NoReturn:  # type: ignore[override]
        from polylog_console.core.infra.text import safe_text

        self.exit(2, f"polylog-console: error: {safe_text(message)} (see {self.prog} --help)\n")


def _common(json_flag: bool) -> argparse.ArgumentParser:
    # SUPPRESS keeps a value given before the command from being reset by the subparser.
    parent = Parser(add_help=False)
    parent.add_argument("--workspace", "-w", metavar="DIR", default=argparse.SUPPRESS,
                        help="workspace directory (env POLYLOG_WORKSPACE, default: current directory)")
    parent.add_argument("--config", "-c", metavar="FILE", default=argparse.SUPPRESS,
                        help="configuration file (default: WORKSPACE/monitoring.toml)")
    if json_flag:
        parent.add_argument("--json", action="store_true", help="print one JSON document on stdout")
    return parent


def build_parser(wanted: set[str] | None = None) -> argparse.ArgumentParser:
    """The full parser; with ``wanted``, only those commands' modules are imported for their
    arguments (the others still list in --help): opening the console imports no command module."""
    parser = Parser(
        prog="polylog-console",
        description="Console for polylog6 registry-drift incidents. With no command, opens the console.",
        parents=[_common(False)],
    )
    parser.add_argument("--version", action="version", version=f"polylog-console {__version__}")
    parser.add_argument("--theme", metavar="NAME", help="console theme (themes/NAME.toml)")
    parser.add_argument("--read-only", action="store_true", help="observer mode: no action changes the workspace")
    parser.add_argument("--poll", action="store_true", help="follow the feed by polling (network file systems)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, help_text in COMMANDS.items():
        command = sub.add_parser(name, help=help_text, description=help_text,
                                 parents=[_common(name != "demo")])
        if wanted is None or name in wanted:
            importlib.import_module(f"polylog_console.cli.{name}").add_arguments(command)
    return parser


def main(argv: list[str] | None = None) -> int:
    tokens = sys.argv[1:] if argv is None else argv
    parser = build_parser({token for token in tokens if token in COMMANDS})
    args = parser.parse_args(argv)
    for name in ("workspace", "config"):
        if not hasattr(args, name):
            setattr(args, name, None)
    command = args.command or "console"
    try:
        module = importlib.import_module(f"polylog_console.cli.{command}")
        return module.run(args)
    except PolylogError as exc:
        return fail(str(exc))
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader went away (e.g. `| head`): not an error of ours. Point stdout at devnull so
        # that the interpreter's final flush does not fail again.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0
    except OSError as exc:
        return fail(f"{getattr(exc, 'filename', None) or ''}: {exc.strerror or exc}".lstrip(": "))
