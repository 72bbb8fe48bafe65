"""monitor: see the README's architecture section."""
