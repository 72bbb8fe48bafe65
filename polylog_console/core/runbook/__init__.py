"""runbook: see the README's architecture section."""
