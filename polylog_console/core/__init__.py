"""The Textual-free core of polylog-console.

Nothing under ``polylog_console.core`` imports Textual: the console (``polylog_console.ui``)
and the command line (``polylog_console.cli``) are thin layers over these modules.
"""
