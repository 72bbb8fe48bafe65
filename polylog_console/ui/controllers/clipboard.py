"""Copying to the operator's clipboard: OSC 52 through the terminal (wrapped for tmux), and the
local clipboard where this machine has one. What the notification says is what happened: inside a
tmux whose ``allow-passthrough`` is off, the wrapped sequence never leaves tmux, so the console says
it may not have reached the clipboard and how to enable it (issue 11)."""

from __future__ import annotations

from typing import Any

from polylog_console.core.infra.text import safe_text
from polylog_console.ui.compat import write_to_terminal
from polylog_console.ui.messages import Notice

PASSTHROUGH_HINT = "tmux's allow-passthrough is off, so it may not have reached the clipboard " \
                   "(enable it: tmux set -g allow-passthrough on)"


def terminal_note(sent: bool, passthrough: bool | None) -> str:
    """What the OSC 52 copy did, as the notification says it."""
    if not sent:
        return "no terminal to send OSC 52 to"
    if passthrough is False:
        return f"sent with OSC 52 through tmux, but {PASSTHROUGH_HINT}"
    return "OSC 52" + (", through tmux" if passthrough else "")


class Clipboard:
    def __init__(self, app: Any) -> None:
        self.app = app
        self.writes: list[str] = []  # OSC 52 sequences written to the terminal (tests read this)

    def emit(self, text: str) -> bool:
        """Put ``text`` on the terminal's clipboard with OSC 52; True when written to a terminal."""
        from polylog_console.core.infra.clipboard import osc52_sequence

        sequence = osc52_sequence(text)
        self.writes.append(sequence)
        return write_to_terminal(self.app, sequence)

    def copy(self, text: str, what: str, *, local: bool = True, prefix: str = "") -> None:
        """Copy ``text`` (OSC 52 now; the local clipboard and tmux's setting asked in a worker
        thread) and notify what happened; ``prefix`` starts the message (e.g. "wrote …")."""
        sent = self.emit(text)
        runner = self.app.runner

        def work() -> None:
            from polylog_console.core.infra.clipboard import copy_local, tmux_passthrough

            parts = []
            if local:
                ok, how = copy_local(text)
                if ok and how:
                    parts.append(how)
            passthrough = tmux_passthrough() if sent else None
            parts.insert(0, terminal_note(sent, passthrough))
            severity = "warning" if passthrough is False or not (sent or parts[1:]) else "information"
            message = f"{prefix}copied {what} ({'; '.join(parts)})"
            runner.tell(Notice(safe_text(message, 400), "Clipboard", severity, 12 if severity == "warning" else 6))

        self.app.run_worker(work, thread=True, group="clipboard", exit_on_error=False)
