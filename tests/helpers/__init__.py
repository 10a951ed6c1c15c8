"""Test helpers: events built through the real ingest → sessionize path."""
