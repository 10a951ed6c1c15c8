"""Errors shared across the domain (a leaf module: it imports nothing of closeconv)."""


class ConfigError(ValueError):
    """A setting is wrong. The message says which, where it came from, and the fix."""
