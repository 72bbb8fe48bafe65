"""The Textual console (issue 6). Widgets only display; logic lives in :mod:`polylog_console.core`."""
