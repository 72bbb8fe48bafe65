"""Every key and what it does, generated from the action registry (the same data as the footer and
the command palette)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.content import Content
from textual.screen import ModalScreen
from textual.widgets import Static

from polylog_console.core.model.actions import ActionSpec

GROUPS = (("navigation", "Navigation"), ("runbook", "Runbook"), ("view", "View"), ("app", "Console"))
NAVIGATION = (  # the table keys (fixed, as in less, vim, k9s and lazygit)
    ("j k ↑ ↓", "move in the focused table (the top of the checkpoints pages in older history)"),
    ("g G Home End", "first row / newest row"),
    ("^d ^u PgUp PgDn", "half a page / a page"),
    ("Tab / Shift+Tab", "move the focus between panels (▶ marks the focused one)"),
    ("esc", "leave a box, a filter or a screen (never cancels an action)"),
    ("^p", "command palette: every action by name"),
)


class HelpScreen(ModalScreen[None]):
    DEFAULT_CSS = """
    HelpScreen { align: center middle; }
    HelpScreen > VerticalScroll { width: 96; max-width: 98%; height: 90%; border: thick $primary;
                                  background: $surface; padding: 0 1; }
    """
    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape,q,question_mark", "dismiss(None)", "Close")]

    def __init__(self, rows: Sequence[tuple[ActionSpec, str, str | None]], read_only: bool) -> None:
        """``rows``: (action, key display, why unavailable or None) for every action in the registry."""
        super().__init__()
        self._rows = rows
        self._read_only = read_only

    def compose(self) -> ComposeResult:
        with VerticalScroll() as box:
            box.border_title = "Help: keys"
            box.border_subtitle = "esc close"
            yield Static(self.text(), id="help-text")

    def text(self) -> Content:
        parts: list[Content | str | tuple[str, str]] = []
        if self._read_only:
            parts += [("READ-ONLY: actions that change the workspace are hidden and refused.\n", "bold $warning")]
        for group, heading in GROUPS:
            parts += ["\n", (heading, "bold underline"), "\n"]
            if group == "navigation":
                for keys, what in NAVIGATION:
                    parts += [(f" {keys:>15} ", "bold $accent"), f" {what}\n"]
            for spec, key, why in self._rows:
                if spec.group != group:
                    continue
                parts += [(f" {key:>15} ", "bold $accent"), " ", (spec.title, "bold"), "  ", spec.description]
                if spec.mutates:
                    parts.append(("  (changes the workspace)", "$text-muted"))
                if why:
                    parts.append((f"  [{why}]", "$warning"))
                parts.append("\n")
        parts += ["\nTimes are UTC. Status badges: ✔ IN SYNC, ✘ DRIFT, ◷ STALE, ∅ NO DATA. "
                  "Keys are remapped in monitoring.toml under [ui.keys] (action = \"key\").\n"]
        return Content.assemble(*parts)
