"""The header line: status badge, stored digest, follow state, latest checkpoint, workspace."""

from __future__ import annotations

from dataclasses import dataclass

from rich.cells import cell_len
from textual.content import Content
from textual.widget import Widget

from polylog_console.core.model.events import Status
from polylog_console.ui.badges import status_badge
from polylog_console.ui.safe import clean, literal


@dataclass(frozen=True)
class HeaderState:
    status: Status = Status.NO_DATA
    stale: bool = False
    age: str | None = None  # the latest checkpoint's age as shown ("45s", "12m"): the header
    # repaints only when what it shows changes, so an idle console repaints it once a minute
    stored_digest: str | None = None
    stored_error: str | None = None
    latest_label: str | None = None
    checkpoints: int = 0
    following: bool = True
    workspace: str = ""
    read_only: bool = False
    loading: bool = True
    feed_note: str | None = None  # e.g. "feed missing"


def badge_content(text: str, style_name: str) -> Content:
    return Content.styled(f" {text} ", f"bold $badge-{style_name}-fg on $badge-{style_name}-bg")


class StatusHeader(Widget):
    DEFAULT_CSS = "StatusHeader { height: 1; background: $panel; }"

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.state = HeaderState()

    def show(self, state: HeaderState) -> None:
        if state != self.state:
            self.state = state
            self.refresh()

    def render(self) -> Content:
        s = self.state
        width = self.size.width or 80
        badge = badge_content("… LOADING", "none") if s.loading else badge_content(*status_badge(s.status))
        parts: list[Content | str | tuple[str, str]] = [badge]
        if s.status is Status.DRIFT and s.stale:
            parts.append(badge_content(f"◷ stale {s.age or '?'}", "stale"))
        if s.read_only:
            parts += [" ", ("READ-ONLY", "bold reverse")]
        if s.stored_error:
            parts += [" stored ", literal("unreadable", "bold $error")]
        else:
            parts += [(" stored ", "$text-muted"), (s.stored_digest or "—")[:12]]
        parts += [("  │ ", "$text-muted"), ("▶ following" if s.following else "⏸ paused",
                                             "bold $success" if s.following else "bold $warning")]
        if s.latest_label is not None:
            age = f" {s.age} ago" if s.age is not None else ""
            parts += [("  │ ", "$text-muted"), literal(s.latest_label, limit=28), (age, "$text-muted")]
        if s.feed_note:
            parts += [("  │ ", "$text-muted"), literal(s.feed_note, "bold $warning", limit=40)]
        left = Content.assemble(*parts)
        room = width - left.cell_length - 3
        ws = clean(s.workspace)
        if room >= 8 and ws:
            if cell_len(ws) > room:
                ws = "…" + ws[-(room - 1):]
            gap = width - left.cell_length - cell_len(ws) - 1
            left = Content.assemble(left, " " * max(1, gap), literal(ws, "$text-muted"))
        return left
