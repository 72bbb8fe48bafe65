"""Console themes from TOML files (``themes/NAME.toml``; the format is documented at the top of each
shipped file) turned into Textual :class:`~textual.theme.Theme` objects.

Themes are looked for in ``WORKSPACE/themes/`` first (an operator's own), then in the ``themes/``
directory shipped with the console. A file that cannot be used raises :class:`ThemeError` with a
one-line reason; the app then falls back to :data:`FALLBACK` and shows the reason.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path

from textual.color import Color, ColorParseError
from textual.theme import Theme

from polylog_console.core.infra.text import safe_text
from polylog_console.core.model.errors import PolylogError

SHIPPED = Path(__file__).resolve().parents[2] / "themes"
DEFAULT_THEME = "dark"
COLOR_KEYS = ("primary", "secondary", "accent", "foreground", "background", "surface", "panel", "boost",
              "warning", "error", "success")
BADGES = ("ok", "drift", "stale", "none")

# Used when no theme file can be read at all (and for the CSS variables' defaults).
BADGE_DEFAULTS = {
    "ok": ("#0d2110", "#57ab5a"),
    "drift": ("#ffffff", "#c93c37"),
    "stale": ("#1f1600", "#e6a23c"),
    "none": ("#15171a", "#8b949e"),
}


def badge_variables(badges: dict[str, tuple[str, str]]) -> dict[str, str]:
    out = {}
    for name, (fg, bg) in badges.items():
        out[f"badge-{name}-fg"] = fg
        out[f"badge-{name}-bg"] = bg
    return out


FALLBACK = Theme(
    name="polylog-default", primary="#4f9fe6", secondary="#2d5b87", accent="#e6a23c", foreground="#e4e6eb",
    background="#121417", surface="#1b1e23", panel="#262a31", warning="#e6a23c", error="#e5534b",
    success="#57ab5a", dark=True, variables=badge_variables(BADGE_DEFAULTS),
)


class ThemeError(PolylogError):
    """A theme file is missing or broken (one-line reason)."""


@dataclass(frozen=True)
class ThemeInfo:
    id: str
    title: str
    path: Path


def theme_dirs(workspace: Path | None) -> list[Path]:
    dirs = []
    if workspace is not None:
        dirs.append(Path(workspace) / "themes")
    if SHIPPED not in dirs:
        dirs.append(SHIPPED)
    return dirs


def discover(workspace: Path | None) -> dict[str, Path]:
    """``{theme id: file}`` of every ``*.toml`` theme file, the workspace's own first."""
    found: dict[str, Path] = {}
    for directory in theme_dirs(workspace):
        try:
            files = sorted(directory.glob("*.toml"))
        except OSError:
            continue
        for path in files:
            found.setdefault(path.stem, path)
    return found


def _color(value: object, where: str) -> str:
    if not isinstance(value, str):
        raise ThemeError(f"{where}: expected a colour string")
    try:
        Color.parse(value)
    except ColorParseError:
        raise ThemeError(f'{where}: "{safe_text(value, 40)}" is not a colour') from None
    return value


def load_theme(path: Path, theme_id: str | None = None) -> tuple[Theme, str]:
    """Parse one theme file; returns (Textual theme, title). Raises ThemeError."""
    path = Path(path)
    theme_id = theme_id or path.stem
    label = safe_text(path.name)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ThemeError(f"theme {safe_text(theme_id)}: {label} not found") from None
    except OSError as exc:
        raise ThemeError(f"theme {label}: cannot read: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise ThemeError(f"theme {label}: not UTF-8 text") from None
    except tomllib.TOMLDecodeError as exc:
        raise ThemeError(f"theme {label}: invalid TOML: {safe_text(exc)}") from None

    unknown = set(data) - {"theme", "colors", "badges"}
    if unknown:
        raise ThemeError(f'theme {label}: unknown section "{safe_text(sorted(unknown)[0])}" '
                         f"(known: theme, colors, badges)")
    for section in ("theme", "colors", "badges"):
        if section in data and not isinstance(data[section], dict):
            raise ThemeError(f"theme {label}: [{section}] must be a table")
    meta = data.get("theme", {})
    colors = data.get("colors", {})
    badges_raw = data.get("badges", {})
    for key in meta:
        if key not in ("title", "dark"):
            raise ThemeError(f'theme {label}: unknown key "theme.{safe_text(key)}" (known: title, dark)')
    for key in colors:
        if key not in COLOR_KEYS:
            raise ThemeError(f'theme {label}: unknown key "colors.{safe_text(key)}" '
                             f"(known: {', '.join(COLOR_KEYS)})")
    for key in badges_raw:
        if key not in BADGES:
            raise ThemeError(f'theme {label}: unknown key "badges.{safe_text(key)}" (known: {", ".join(BADGES)})')
    title = meta.get("title", theme_id)
    if not isinstance(title, str):
        raise ThemeError(f"theme {label}: theme.title must be a string")
    dark = meta.get("dark", True)
    if not isinstance(dark, bool):
        raise ThemeError(f"theme {label}: theme.dark must be true or false")
    if "primary" not in colors:
        raise ThemeError(f"theme {label}: colors.primary is required")
    checked = {key: _color(value, f"theme {label}: colors.{key}") for key, value in colors.items()}
    badges = dict(BADGE_DEFAULTS)
    for key, value in badges_raw.items():
        where = f"theme {label}: badges.{key}"
        if not isinstance(value, str) or " on " not in value:
            raise ThemeError(f'{where}: expected "FOREGROUND on BACKGROUND"')
        fg, bg = (part.strip() for part in value.split(" on ", 1))
        badges[key] = (_color(fg, where), _color(bg, where))
    theme = Theme(name=theme_id, dark=dark, variables=badge_variables(badges), **checked)
    try:
        theme.to_color_system()
    except Exception as exc:  # Textual's own checks of the combination
        raise ThemeError(f"theme {label}: {safe_text(exc, 200)}") from None
    return theme, title


class ThemeCatalog:
    """The themes this console can offer, loaded lazily; broken files are remembered with their reason."""

    def __init__(self, workspace: Path | None) -> None:
        self.files = discover(workspace)
        self.titles: dict[str, str] = {}
        self.errors: dict[str, str] = {}
        self._loaded: dict[str, Theme] = {}

    def ids(self) -> list[str]:
        return sorted(self.files, key=lambda t: (t != DEFAULT_THEME, t))

    def get(self, name: str) -> Theme:
        """The theme ``name`` (an id from :meth:`ids`, or a path to a ``.toml`` file). Raises ThemeError."""
        if name in self._loaded:
            return self._loaded[name]
        path = self.files.get(name)
        theme_id = name
        if path is None:
            candidate = Path(name).expanduser()
            if candidate.suffix == ".toml" and candidate.is_file():
                path, theme_id = candidate, candidate.stem
            else:
                known = ", ".join(self.ids()) or "none found"
                raise ThemeError(f'theme "{safe_text(name, 60)}" not found (available: {known})')
        try:
            theme, title = load_theme(path, theme_id)
        except ThemeError as exc:
            self.errors[name] = str(exc)
            raise
        self._loaded[name] = theme
        self.titles[theme_id] = title
        if theme_id != name:
            self._loaded[theme_id] = theme
        return theme

    def title(self, theme_id: str) -> str:
        if theme_id not in self.titles:
            try:
                self.get(theme_id)
            except ThemeError:
                return theme_id
        return self.titles.get(theme_id, theme_id)
