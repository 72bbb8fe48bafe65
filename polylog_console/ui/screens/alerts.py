"""Every active alert, most severe first (key ``A``, or a click on the banner's "+N more"):
code, since when (a drift: the incident's first mismatching checkpoint), consecutive count, the
sinks that delivered it and who acknowledged it."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.content import Content
from textual.screen import ModalScreen
from textual.widgets import Static

from polylog_console.ui.safe import literal
from polylog_console.ui.widgets.banner import DRIFT_CODES, _since, since_age


class AlertsScreen(ModalScreen[None]):
    DEFAULT_CSS = """
    AlertsScreen { align: center middle; }
    AlertsScreen > VerticalScroll { width: 110; max-width: 98%; height: auto; max-height: 90%;
                                    border: thick $primary; background: $surface; padding: 0 1; }
    """
    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape,q,A", "dismiss(None)", "Close")]

    def __init__(self, banners: Sequence[Any], incident: Any, now: float,
                 delivered: Mapping[str, Sequence[str]] | None = None) -> None:
        super().__init__()
        self.banners = list(banners)
        self.incident = incident
        self.now = now
        self.delivered = dict(delivered or {})

    def compose(self) -> ComposeResult:
        with VerticalScroll() as box:
            box.border_title = f"Active alerts ({len(self.banners)})"
            box.border_subtitle = "esc close"
            yield Static(self.text(), id="alerts-text")

    def rows(self) -> list[dict[str, Any]]:
        out = []
        for b in self.banners:
            since, label = b.since, None
            consecutive = b.consecutive_mismatches
            if b.code in DRIFT_CODES and self.incident is not None:
                since, label = self.incident.started_at, self.incident.started_label
                consecutive = self.incident.consecutive_mismatches
            out.append({"code": b.code, "severity": str(b.severity), "since": since, "label": label,
                        "consecutive": consecutive, "sinks": list(self.delivered.get(b.dedup_key, ())),
                        "acknowledged_by": b.acknowledged_by, "summary": b.summary})
        return out

    def text(self) -> Content:
        if not self.banners:
            return Content.styled("no active alert", "$text-muted")
        lines: list[Content] = []
        for row in self.rows():
            when = _since(row["since"], self.now) + (f" ({row['label']})" if row["label"] else "")
            sinks = ", ".join(row["sinks"]) if row["sinks"] else "dashboard"
            ack = row["acknowledged_by"] or "not acknowledged"
            lines.append(Content.assemble(
                literal(row["code"], "bold"), (f"  {row['severity']}", "$text-muted"),
                ("  since ", "$text-muted"), literal(when), (" for ", "$text-muted"),
                since_age(self.now - row["since"]),
                ("  · ", "$text-muted"), f"{row['consecutive']} consecutive",
                ("\n  delivered: ", "$text-muted"), literal(sinks),
                ("  · acknowledged by: ", "$text-muted"), literal(ack),
                ("\n  ", ""), literal(row["summary"], "$text-muted"), "\n"))
        return Content("\n").join(lines)
