"""Intake from the platforms and other exports: webhooks, the respond.io API backfill, declared mappings."""
