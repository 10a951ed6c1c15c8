"""closeconv: analytics pipeline and dashboard for closed support conversations."""

__version__ = "0.1.0"
