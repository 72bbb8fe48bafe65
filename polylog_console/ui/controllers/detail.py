"""The selected row of any panel, in full (Enter) and on the clipboard (the copy key).

Each panel's row has its own detail: a checkpoint's raw JSON; a diff row; a replica's answer; an
activity event with its full audit record; an ingest error with its line number, full reason and
the raw line, shown safely (issue 11: Enter on an Errors or Activity row opened the latest
checkpoint instead, and a truncated reason could not be read anywhere).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from polylog_console.core.feed.records import IngestError
from polylog_console.ui.keymap import key_display
from polylog_console.ui.screens.detail import DetailScreen
from polylog_console.ui.widgets.checkpoints import clock_time


@dataclass(frozen=True)
class RowDetail:
    title: str
    body: bytes | str  # bytes: a feed line (pretty-printed when JSON); str: shown as it is
    copy_text: str
    what: str  # what is copied, for the notification


def _json(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False, default=str)


def checkpoint_detail(cp: Any) -> RowDetail:
    where = f"line {cp.line:,}" if cp.line is not None else f"offset {cp.offset:,}"
    return RowDetail(f"{cp.display_label} ({where})", cp.raw, cp.raw.decode("utf-8", errors="replace"),
                     f"{cp.display_label} JSON")


def error_detail(item: Any) -> RowDetail:
    line = "unknown" if item.line is None else f"{item.line:,}"
    if isinstance(item, IngestError):
        raw = item.raw.decode("utf-8", errors="replace")
        body = (f"ingest error at line {line} (byte offset {item.offset:,})\n\nreason:\n{item.reason}\n\n"
                f"raw line ({len(item.raw):,} bytes):\n{raw}")
        return RowDetail(f"ingest error, line {line}", body, raw, f"line {line}")
    body = f"field warning at line {line}\n\nfield: {item.field}\nreason:\n{item.reason}"
    return RowDetail(f"field warning, line {line}", body, body, f"the warning at line {line}")


def activity_detail(item: Any) -> RowDetail:
    record = item.record
    text = _json(record) if record is not None else item.message
    body = f"{clock_time(item.at)}Z  {item.kind}  {item.level}\n\n{item.message}"
    if record is not None:
        body += f"\n\nrecord:\n{text}"
    return RowDetail(f"{item.kind}: {item.message}", body, text, "the activity record")


def replica_detail(result: Any) -> RowDetail:
    doc = result.to_json() if hasattr(result, "to_json") else {"name": getattr(result, "name", "?")}
    text = _json(doc)
    return RowDetail(f"replica {result.name}", text, text, f"replica {result.name}'s answer")


def diff_detail(row: Any) -> RowDetail:
    kind, ns, sig, stored, live = row
    doc = {"kind": kind, "namespace": ns, "signature": sig, "stored": stored, "live": live}
    text = _json(doc)
    return RowDetail(f"{kind} {ns}/{sig}", text, text, f"the {kind} row")


class Detail:
    def __init__(self, app: Any) -> None:
        self.app = app

    def selected(self, panel: str | None = None) -> RowDetail | None:
        """The detail of the selected row of ``panel`` (default: the focused or shown panel);
        for the checkpoints, the latest one when no row is selected."""
        app = self.app
        panel = panel or app.panels.current()
        table = app.panels.table(panel)
        index = table.selected_index if table is not None else -1
        if panel == "checkpoints":
            cp = app.selected_checkpoint()
            return checkpoint_detail(cp) if cp is not None else None
        items: Any = {"errors": lambda t: t.items, "activity": lambda t: t.items, "replicas": lambda t: t.results,
                      "diff": lambda t: t.rows}[panel](table) if table is not None else ()
        if not items:
            return None
        if not 0 <= index < len(items):
            index = len(items) - 1  # nothing selected: the newest
        item = items[index]
        maker = {"errors": error_detail, "activity": activity_detail, "replicas": replica_detail,
                 "diff": diff_detail}[panel]
        return maker(item)

    def open(self) -> None:
        app = self.app
        detail = self.selected()
        if detail is None:
            app.say(f"nothing to show in {app.panels.current()} yet")
            return
        key = app.keymap.key_for("copy")
        app.push_screen(DetailScreen(detail.title, detail.body, key, key_display(key) if key else None,
                                     copy_text=detail.copy_text, what=detail.what))

    def copy(self) -> None:
        app = self.app
        screen = app.screen
        if isinstance(screen, DetailScreen):
            text, what = screen.raw_text, screen.what
        else:
            detail = self.selected()
            if detail is None:
                app.say("nothing to copy yet")
                return
            text, what = detail.copy_text, detail.what
        app.copier.copy(text, what)
