"""polylog-console: a terminal console for polylog6 registry-drift incidents."""

__version__ = "0.1.0"
