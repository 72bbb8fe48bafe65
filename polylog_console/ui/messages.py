"""What worker threads tell the console: Textual messages, posted from any thread
(``post_message`` is thread-safe) and handled on the event loop. Workers never touch widgets or
the monitor; they compute from what was handed to them and post one of these."""

from __future__ import annotations

from typing import Any

from textual.message import Message

from polylog_console.core.model.progress import ProgressUpdate
from polylog_console.core.monitor.timeline import Row
from polylog_console.core.registry.diff_view import DiffView


class DiffReady(Message):
    """The diff (or filtered diff) for ``key`` (the situation it was computed for); ``result``:
    (cache key, diff, error) of a freshly computed diff, for the monitor's cache."""

    def __init__(self, key: tuple[Any, ...] | None, state: DiffView, result: tuple[Any, Any, Any] | None = None
                 ) -> None:
        super().__init__()
        self.key = key
        self.state = state
        self.result = result


class HistoryPaged(Message):
    """Older checkpoints read from the feed (oldest first), or why not."""

    def __init__(self, rows: list[Row], error: str | None) -> None:
        super().__init__()
        self.rows = rows
        self.error = error


class ActionProgressed(Message):
    """Progress of a running action. Bursts coalesce: a newer update replaces one not yet shown."""

    def __init__(self, action_id: str, update: ProgressUpdate) -> None:
        super().__init__()
        self.action_id = action_id
        self.update = update

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, ActionProgressed) and message.action_id == self.action_id


class ActionDone(Message):
    """An action ended (finished, failed or cancelled); it is audited already."""

    def __init__(self, done: Any) -> None:
        super().__init__()
        self.done = done


class Notice(Message):
    """A one-line notification a worker wants shown (e.g. what the clipboard copy did)."""

    def __init__(self, message: str, title: str = "", severity: str = "information", timeout: float = 6) -> None:
        super().__init__()
        self.message = message
        self.title = title
        self.severity = severity
        self.timeout = timeout
