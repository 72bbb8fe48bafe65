"""Every use of a private Textual API, in one place (issue 11), each with a public fallback or a
reason; ``tests/test_ui_compat.py`` checks each one against the installed Textual, which
``pyproject.toml`` pins to the versions tested.

* :func:`character_key`: Textual's spelling of a one-character key (``"?"`` is
  ``question_mark``) is ``textual.keys._character_to_key``; without it, the same rule (the
  character's Unicode name) is applied here.
* :func:`write_to_terminal`: OSC 52 wrapped for tmux (``App.copy_to_clipboard`` writes the bare
  sequence, which tmux drops) needs the driver, ``App._driver``; no driver (headless): nothing.
* :func:`set_scroll_extent`: a :class:`~polylog_console.ui.widgets.linetable.LineTable` sets its
  scroll extent without a layout pass of the whole screen (``Widget._scroll_update``); without it,
  assigning ``virtual_size`` (public, ~30 ms more per frame under a busy feed).
"""

from __future__ import annotations

import contextlib
import unicodedata
from typing import Any

import textual.keys as _keys
from textual.geometry import Size


def character_key(character: str) -> str:
    """Textual's key name for one printable character, as ``Binding`` and key events spell it."""
    private = getattr(_keys, "_character_to_key", None)
    if private is not None:
        return str(private(character))
    key = character
    if not character.isalnum():
        with contextlib.suppress(ValueError):
            key = unicodedata.name(character).lower().replace("-", "_").replace(" ", "_")
    return str(_keys.KEY_NAME_REPLACEMENTS.get(key, key))


def write_to_terminal(app: Any, data: str) -> bool:
    """Write ``data`` (an escape sequence) straight to the terminal; False when there is none."""
    driver = getattr(app, "_driver", None)
    if driver is None:
        return False
    with contextlib.suppress(OSError):
        driver.write(data)
        driver.flush()
        return True
    return False


def set_scroll_extent(widget: Any, size: Size) -> None:
    """Set ``widget``'s virtual size and scrollbars without re-laying the screen."""
    update = getattr(widget, "_scroll_update", None)
    if update is None:
        widget.virtual_size = size
        return
    widget.set_reactive(type(widget).virtual_size, size)
    update(size)
