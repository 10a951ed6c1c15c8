"""The event contract (v1.1) and the warehouse tables, as data.

One place that names every event type, source and column, so that validation, the
generator, the docs and the checks cannot drift apart.
"""

from __future__ import annotations

# v1.1 (intake from the platforms) only added sources and optional fields: a v1 file is a v1.1 file.
CONTRACT_VERSION = "1.1"

EVENT_TYPES: tuple[str, ...] = (
    "conversation.opened",
    "conversation.closed",
    "message.received",
    "message.sent",
    "contact.assignee.updated",
)

# Sessionization order of events that share a timestamp (spec §4).
EVENT_KIND_RANK: dict[str, int] = {
    "conversation.opened": 0,
    "message.received": 1,
    "message.sent": 2,
    "contact.assignee.updated": 3,
    "conversation.closed": 4,
}
# The same rank as SQL over `events.event_type`. `events.event_order` is a position within the
# contact; the global event order is `ORDER BY occurred_at, <this>, event_id` (docs/warehouse.md).
EVENT_KIND_RANK_SQL = "CASE event_type " + " ".join(f"WHEN '{t}' THEN {r}" for t, r in EVENT_KIND_RANK.items()) + " END"

# v1.1 added what respond.io really sends: `n8n` and `ai_agent` (automations, never a human
# response: only source `user` is) wherever an automation can act, `growth_widget` as an opener.
ALLOWED_SOURCES: dict[str, tuple[str, ...]] = {
    "conversation.opened": ("user", "contact", "workflow", "api", "zapier", "make", "ctc_ads", "growth_widget"),
    "conversation.closed": ("user", "workflow", "api", "zapier", "bot", "make", "auto_close", "n8n", "ai_agent"),
    "message.sent": ("user", "workflow", "api", "zapier", "bot", "echo", "make", "broadcast", "n8n", "ai_agent"),
    "message.received": ("contact",),
    "contact.assignee.updated": ("user", "workflow", "api", "zapier", "make", "bot", "n8n", "ai_agent"),
}

DEFAULT_SOURCE: dict[str, str] = {"message.received": "contact"}

# Event types whose source `user` requires a user_id.
USER_ID_REQUIRED_FOR_USER_SOURCE: tuple[str, ...] = ("message.sent", "conversation.closed")

# Contract fields in their canonical order; everything else on a record is ignored.
EVENT_FIELDS: tuple[str, ...] = (
    "event_id",
    "event_type",
    "occurred_at",
    "contact_id",
    "conversation_id",
    "channel_id",
    "source",
    "user_id",
    "team_id",
    "assignee_id",
    "category",
    "summary",
)
REQUIRED_FIELDS: tuple[str, ...] = ("event_id", "event_type", "occurred_at", "contact_id")

# v1.1 optional fields on `conversation.closed`: the platform's own figures for the conversation,
# kept beside closeconv's so the warehouse can show where they differ. name -> DuckDB type.
PLATFORM_FIELDS: dict[str, str] = {
    "platform_first_response_time_s": "DOUBLE",
    "platform_resolution_time_s": "DOUBLE",
    "platform_incoming_message_count": "BIGINT",
    "platform_outgoing_message_count": "BIGINT",
    "platform_opened_by_source": "VARCHAR",
    "platform_assignee_team": "VARCHAR",
}

FRT_BUCKETS: tuple[tuple[str, float | None], ...] = (
    # label, exclusive upper bound in seconds (None = unbounded)
    ("<30s", 30.0),
    ("30s–2m", 120.0),
    ("2–5m", 300.0),
    ("5–10m", 600.0),
    ("10–30m", 1800.0),
    ("30m–1h", 3600.0),
    (">1h", None),
)

# Columns of the `events` table, with their DuckDB types (warehouse contract, spec §7).
EVENTS_COLUMNS: dict[str, str] = {
    "event_id": "VARCHAR",
    "event_type": "VARCHAR",
    "occurred_at": "TIMESTAMPTZ",
    "contact_id": "VARCHAR",
    "conversation_id": "VARCHAR",
    "given_conversation_id": "VARCHAR",  # as it arrived; never rewritten (spec §4)
    "conversation_id_conflict": "VARCHAR",  # why the given id is not conversation_id, else null
    "channel_id": "VARCHAR",
    "source": "VARCHAR",
    "user_id": "VARCHAR",
    "team_id": "VARCHAR",
    "assignee_id": "VARCHAR",
    "category": "VARCHAR",
    "summary": "VARCHAR",
    "event_order": "BIGINT",
    "source_file": "VARCHAR",
    "source_line": "BIGINT",
}
# The published `events` table has the PLATFORM_FIELDS columns (v1.1) after these; code that
# builds an events table from EVENTS_COLUMNS alone (workflows.testing) still works, because
# the conversation metrics read those columns as null when they are absent.

REJECTED_EVENTS_COLUMNS: dict[str, str] = {
    "file": "VARCHAR",
    "line": "BIGINT",
    "raw_record": "VARCHAR",
    "event_id": "VARCHAR",
    "reason_code": "VARCHAR",
    "reason": "VARCHAR",
    "ingested_at": "TIMESTAMPTZ",
}
