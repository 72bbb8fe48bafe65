"""``polylog-console bundle [--copy]``: write the escalation bundle (runbook §6) into
``memory/escalations/`` and, with ``--copy``, put it on the clipboard.

The clipboard is this machine's (pyperclip) when one exists. Without one (typically over SSH)
the command says so clearly and, when its output is a terminal, sends the bundle to the
operator's terminal clipboard with OSC 52 instead. Exit 0 when the bundle is written (copying is
best effort and reported), 2 when it cannot be written. The run is recorded in the audit log.
"""

from __future__ import annotations

import argparse
import sys

from polylog_console.cli.common import EXIT_OK, open_context, print_json, say
from polylog_console.core.infra import clipboard
from polylog_console.core.infra.audit import AuditLog
from polylog_console.core.infra.text import safe_text
from polylog_console.core.model.errors import PolylogError
from polylog_console.core.runbook.bundle import write_bundle


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--copy", action="store_true",
                        help="also copy the bundle to the clipboard (local clipboard, else OSC 52 to a terminal)")


def _write_terminal(sequence: str) -> None:
    sys.stdout.write(sequence)
    sys.stdout.flush()


def run(args: argparse.Namespace) -> int:
    ctx = open_context(args)
    ws = ctx.workspace
    audit = AuditLog(ws.audit)
    audit.append("action_started", action="bundle")
    try:
        bundle = write_bundle(ws, ctx.config)
    except (PolylogError, OSError) as exc:
        message = str(exc) if isinstance(exc, PolylogError) else f"{exc.filename or ''}: {exc.strerror or exc}"
        message = f"cannot write the escalation bundle: {message.replace(': : ', ': ')}"
        audit.append("action_failed", action="bundle", message=message)
        raise PolylogError(message) from None

    copied: bool | None = None
    copy_messages: list[str] = []
    if args.copy:
        copied, message = clipboard.copy_local(bundle.markdown)
        copy_messages.append(message)
        if not copied and not ctx.json and sys.stdout.isatty():
            # No clipboard here (typically over SSH): the operator's terminal may take OSC 52.
            sent, message = clipboard.copy_terminal(bundle.markdown, _write_terminal)
            copy_messages.append(message)
            copied = None if sent else False  # whether the terminal honoured it cannot be known
    audit.append("action_finished", action="bundle", outcome="ok", path=ws.relative(bundle.path),
                 size=bundle.size, message=f"escalation bundle written to {ws.relative(bundle.path)}",
                 **({"copied": copied} if args.copy else {}))
    if ctx.json:
        document = {**bundle.to_json(), "relative_path": ws.relative(bundle.path)}
        if args.copy:
            document["copied"] = copied
            document["clipboard"] = copy_messages
        print_json(document)
        return EXIT_OK
    say(f"escalation bundle written: {safe_text(bundle.path)} ({bundle.size:,} bytes)")
    for message in copy_messages:
        say(f"clipboard: {safe_text(message)}")
    if args.copy and copied is False:
        say("clipboard: attach the file above instead, or use the console's bundle action (OSC 52 over SSH)")
    return EXIT_OK
