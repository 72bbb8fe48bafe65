"""registry: see the README's architecture section."""
