"""One row in full: a checkpoint's raw JSON as the feed holds it, an ingest error with its raw line, an
activity event with its audit record, a replica's answer (every line made safe), with a key to copy it."""

from __future__ import annotations

import json
from typing import ClassVar

from textual import events
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.content import Content
from textual.screen import ModalScreen
from textual.widgets import Static

from polylog_console.ui.safe import clean, literal


def pretty(raw: bytes) -> str:
    """The line pretty-printed when it is JSON, else as text (undecodable bytes replaced)."""
    text = raw.decode("utf-8", errors="replace")
    try:
        return json.dumps(json.loads(text), indent=2, ensure_ascii=False)
    except (ValueError, RecursionError):
        return text


def safe_lines(text: str) -> Content:
    """Multi-line untrusted text: every line through the safe-text helper, newlines kept."""
    return Content("\n".join(clean(line) for line in text.split("\n")))


class DetailScreen(ModalScreen[None]):
    DEFAULT_CSS = """
    DetailScreen { align: center middle; }
    DetailScreen > VerticalScroll { width: 100; max-width: 98%; height: 90%; border: thick $primary;
                                    background: $surface; padding: 0 1; }
    """
    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape,q", "dismiss(None)", "Close")]

    def __init__(self, title: str, raw: bytes | str, copy_key: str | None, copy_display: str | None = None,
                 *, copy_text: str | None = None, what: str = "checkpoint JSON") -> None:
        """``raw``: bytes (pretty-printed when JSON) or text shown as it is; ``copy_text``: what the
        copy key copies (default: the raw text)."""
        super().__init__()
        self._title = title
        self.raw = raw if isinstance(raw, bytes) else raw.encode("utf-8", errors="replace")
        self._text = pretty(raw) if isinstance(raw, bytes) else raw
        self._copy_text = copy_text
        self.what = what
        self.copy_key = copy_key  # the registry's key for "copy" (it may be remapped)
        self.copy_display = copy_display

    def on_key(self, event: events.Key) -> None:
        if self.copy_key is not None and event.key == self.copy_key:
            event.stop()
            self.app.action_run("copy")  # type: ignore[attr-defined]

    def compose(self) -> ComposeResult:
        with VerticalScroll() as box:
            box.border_title = literal(self._title, limit=60)
            box.border_subtitle = (f"{self.copy_display} copy · " if self.copy_display else "") + "esc close"
            yield Static(safe_lines(self._text), id="detail-json")

    @property
    def raw_text(self) -> str:
        """What the copy key copies."""
        if self._copy_text is not None:
            return self._copy_text
        return self.raw.decode("utf-8", errors="replace")
