"""Putting text on a clipboard, locally (pyperclip) or through the terminal (OSC 52).

The console is mostly used over SSH, where the machine it runs on has no clipboard the operator
can paste from. Two ways exist and :func:`copy` tries both:

* **local**: pyperclip, when this machine has a clipboard tool (xclip/xsel/wl-copy, pbcopy,
  Windows). ``pyperclip.is_available()`` says True before pyperclip has looked, so
  :func:`copy_local` asks ``pyperclip.determine_clipboard()`` directly; with no mechanism it
  returns objects that are false and raise when called.
* **terminal**: the OSC 52 "set clipboard" escape sequence, written to the terminal, which puts
  the text on the clipboard of the machine the operator sits at (when the terminal allows it:
  most do; tmux needs ``set -g allow-passthrough on`` for the wrapped form, or handles OSC 52 itself
  with ``set-clipboard on``).

Textual-free: the console passes a ``write_terminal`` callable that writes to its driver.
"""

from __future__ import annotations

import base64
import os
from collections.abc import Callable

from polylog_console.core.infra.text import valid_unicode

ESC = "\x1b"
BEL = "\x07"
ST = ESC + "\\"
# Some terminals ignore OSC 52 payloads beyond about 100 kB (xterm's default limit is larger,
# others are smaller); beyond this the operator is told the copy may have been refused.
OSC52_SOFT_LIMIT = 100_000


def osc52_sequence(text: str, *, tmux: bool | None = None) -> str:
    """The OSC 52 sequence that sets the clipboard (selection ``c``) to ``text``.

    ``ESC ] 52 ; c ; <base64 of the UTF-8 bytes> BEL``. Inside tmux (``$TMUX`` set, unless ``tmux``
    says otherwise) it is wrapped for passthrough: ``ESC P tmux ; <sequence with every ESC doubled>
    ESC \\``. The payload is base64, so ``text`` cannot inject any other escape sequence.
    """
    payload = base64.b64encode(text.encode("utf-8")).decode("ascii")
    sequence = f"{ESC}]52;c;{payload}{BEL}"
    if tmux is None:
        tmux = bool(os.environ.get("TMUX"))
    if tmux:
        sequence = f"{ESC}Ptmux;{sequence.replace(ESC, ESC + ESC)}{ST}"
    return sequence


def _mechanism_name(copy_function: object) -> str:
    """``xclip`` for pyperclip's ``copy_xclip`` and so on (for messages)."""
    name = getattr(copy_function, "__name__", "") or type(copy_function).__name__
    return name.removeprefix("copy_").replace("_", " ") or "clipboard"


def copy_local(text: str) -> tuple[bool, str]:
    """Copy ``text`` to this machine's clipboard with pyperclip. Returns ``(ok, message)``;
    the message says clearly when no local clipboard exists (e.g. over SSH without X11/Wayland)."""
    try:
        import pyperclip
    except ImportError:  # pragma: no cover - a declared dependency
        return False, "no local clipboard: pyperclip is not installed"
    copy_function, _paste = pyperclip.determine_clipboard()
    if not copy_function:
        return False, ("no local clipboard on this machine (no X11/Wayland display with xclip, xsel or "
                       "wl-copy, no pbcopy): nothing was copied locally")
    mechanism = _mechanism_name(copy_function)
    try:
        copy_function(text)
    except Exception as exc:  # pyperclip raises PyperclipException, the tools OSError/CalledProcessError
        reason = " ".join(str(exc).split())[:200] or type(exc).__name__
        return False, f"local clipboard ({mechanism}) failed: {reason}"
    return True, f"copied {len(text):,} characters to the local clipboard ({mechanism})"


def copy_terminal(text: str, write_terminal: Callable[[str], None]) -> tuple[bool, str]:
    """Send ``text`` to the operator's terminal clipboard with OSC 52 (tmux-wrapped inside tmux).
    Returns ``(sent, message)``; whether the terminal honours OSC 52 cannot be known."""
    tmux = bool(os.environ.get("TMUX"))
    sequence = osc52_sequence(text, tmux=tmux)
    try:
        write_terminal(sequence)
    except OSError as exc:
        return False, f"terminal clipboard (OSC 52) failed: {exc.strerror or exc}"
    note = f"sent {len(text):,} characters to the terminal's clipboard (OSC 52{', via tmux' if tmux else ''})"
    if len(sequence) > OSC52_SOFT_LIMIT:
        note += f"; {len(sequence):,} bytes is more than some terminals accept"
    return True, note


def copy(text: str, *, write_terminal: Callable[[str], None] | None = None) -> list[str]:
    """Copy ``text`` every way available: the local clipboard, and OSC 52 through the terminal when
    ``write_terminal`` is given. Returns one message per way tried, for the operator's notification.
    Lone surrogates (a feed value may hold them) are copied as U+FFFD: no clipboard takes them."""
    text = valid_unicode(text)
    ok, message = copy_local(text)
    done = [message]
    if write_terminal is not None:
        done.append(copy_terminal(text, write_terminal)[1])
    elif not ok:
        done.append("no terminal to send OSC 52 to: the text was not copied")
    return done


def tmux_passthrough(timeout: float = 2.0) -> bool | None:
    """Inside tmux: whether ``allow-passthrough`` is on (the wrapped OSC 52 reaches the outer
    terminal only then); None outside tmux or when tmux cannot be asked."""
    if not os.environ.get("TMUX"):
        return None
    import subprocess

    try:
        proc = subprocess.run(["tmux", "show", "-gv", "allow-passthrough"], capture_output=True, text=True,
                              timeout=timeout, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    if proc.returncode != 0:
        return None
    return proc.stdout.strip().lower() in ("on", "all")
