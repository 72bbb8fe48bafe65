"""demo: see the README's architecture section."""
