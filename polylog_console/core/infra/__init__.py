"""infra: see the README's architecture section."""
