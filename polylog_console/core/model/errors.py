"""Error types shared by the core. Each carries a one-line, operator-readable message."""

from __future__ import annotations


class PolylogError(Exception):
    """Base class: ``str(exc)`` is a complete one-line message for an operator."""


class ConfigError(PolylogError):
    """monitoring.toml or an environment override is invalid (exit code 2)."""


class WorkspaceError(PolylogError):
    """A path escapes the workspace, a file is missing or unreadable (exit code 2)."""


class RegistryError(PolylogError):
    """The stored registry cannot be read or is malformed (alert ``registry_provider_error``)."""
