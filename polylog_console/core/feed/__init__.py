"""feed: see the README's architecture section."""
