"""model: see the README's architecture section."""
