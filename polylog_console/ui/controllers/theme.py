"""The console's theme: chosen at start (before the first styling pass), switched from the
palette or the theme key; a missing or broken theme falls back to the default, said aloud."""

from __future__ import annotations

import contextlib
from functools import partial
from typing import Any

from polylog_console.core.infra.text import safe_text
from polylog_console.ui.themes import DEFAULT_THEME, FALLBACK, ThemeCatalog, ThemeError


def no_markup(text: str) -> str:
    """Untrusted text for places that parse markup (the command palette): made safe, with every
    ``[`` escaped so that it shows as itself (issue 11: ``[`` ``]`` were shown as ``(`` ``)``)."""
    from textual.markup import escape

    return escape(safe_text(text))


class ThemeController:
    def __init__(self, app: Any, root: Any, request: str) -> None:
        self.app = app
        self.catalog = ThemeCatalog(root)
        self.request = request
        self.problem: str | None = None

    def fallback_for(self, name: str) -> Any:
        fallback = FALLBACK
        if name != DEFAULT_THEME:
            with contextlib.suppress(ThemeError):
                fallback = self.catalog.get(DEFAULT_THEME)
        return fallback

    def resolve(self, name: str) -> Any:
        """The theme ``name``, or the default with :attr:`problem` saying why."""
        try:
            return self.catalog.get(name)
        except ThemeError as exc:
            fallback = self.fallback_for(name)
            self.problem = f"{exc}; using the {fallback.name} theme"
            return fallback

    def apply_at_start(self) -> None:
        """The theme in place before the first styling pass (switching later restyles every widget)."""
        app = self.app
        theme = self.resolve(self.request)
        app.register_theme(theme)
        app.set_reactive(type(app).theme, theme.name)
        app.stylesheet.set_variables(app.get_css_variables())
        app.add_class(f"-theme-{theme.name}")
        app.set_class(theme.dark, "-dark-mode")
        app.set_class(not theme.dark, "-light-mode")

    def switch(self, name: str, *, announce: bool = True) -> None:
        app = self.app
        try:
            theme = self.catalog.get(name)
        except ThemeError as exc:
            fallback = self.fallback_for(name)
            app.register_theme(fallback)
            app.theme = fallback.name
            app.say(f"{exc}; using the {fallback.name} theme", title="Theme", severity="error", timeout=15)
            return
        app.register_theme(theme)
        app.theme = theme.name
        if announce:
            app.say(f"theme: {self.catalog.title(theme.name)}")

    def choose(self) -> None:
        from textual.command import SimpleCommand  # the palette's module, loaded when first needed

        commands = [SimpleCommand(no_markup(self.catalog.title(theme_id)), partial(self.switch, theme_id),
                                  f"themes/{theme_id}.toml") for theme_id in self.catalog.ids()]
        self.app.search_commands(commands, placeholder="Choose a theme…")
