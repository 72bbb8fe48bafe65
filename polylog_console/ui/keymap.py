"""Key names for the action registry (:mod:`polylog_console.core.model.actions`), in Textual's terms.

The registry and the clash rules are core data; this module only knows how Textual spells keys:
``"?"`` is ``question_mark``, ``"F5"`` is ``f5``, ``"ctrl+R"`` is ``ctrl+r``.
"""

from __future__ import annotations

import string
from collections.abc import Mapping

from textual.keys import Keys, format_key, key_to_character

from polylog_console.core.model.actions import ACTIONS, Keymap, resolve_keys
from polylog_console.ui.compat import character_key

MODIFIERS = ("ctrl", "shift", "alt", "meta", "super", "hyper")


def _character_key(character: str) -> str:
    # Textual's own spelling of a one-character key, as Binding uses it ("?" -> "question_mark").
    return character_key(character)


_NAMED = ({key.value for key in Keys} | {"space", "enter", "tab", "backspace", "escape"}
          | {_character_key(c) for c in string.punctuation})


def normalize_key(text: str) -> str | None:
    """The canonical Textual key for ``text`` (``"?"``, ``"R"``, ``"ctrl+r"``, ``"f5"``), or None."""
    if not isinstance(text, str):
        return None
    text = text.strip()
    if not text:
        return None
    if len(text) == 1:
        return _character_key(text) if text.isprintable() and not text.isspace() else None
    parts = text.split("+")
    if "" in parts:  # "ctrl+" or "ctrl++"
        return None
    *mods, last = parts
    mods = [m.lower() for m in mods]
    if any(m not in MODIFIERS for m in mods) or len(set(mods)) != len(mods):
        return None
    if len(last) == 1:
        if not last.isprintable() or last.isspace():
            return None
        # Textual reports ctrl+letter in lower case; a bare letter keeps its case (R is shift+r).
        name = _character_key(last.lower() if mods else last)
    else:
        name = last.lower()
        if name not in _NAMED and key_to_character(name) is None:
            return None
    ordered = [m for m in MODIFIERS if m in mods]
    return "+".join([*ordered, name])


def build_keymap(overrides: Mapping[str, str]) -> Keymap:
    """Registry defaults with ``[ui.keys]`` overrides applied (problems reported in ``.problems``)."""
    return resolve_keys(overrides, normalize_key, ACTIONS)


def key_display(key: str | None) -> str:
    """How a key is shown in the footer, palette and help (``?``, ``/``, ``esc``, ``^r``)."""
    if not key:
        return "—"
    return format_key(key)
