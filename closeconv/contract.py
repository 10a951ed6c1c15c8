"""The event contract (v1) and the warehouse tables, as data.

One place that names every event type, source and column, so that validation, the
generator, the docs and the checks cannot drift apart.
"""

from __future__ import annotations

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

ALLOWED_SOURCES: dict[str, tuple[str, ...]] = {
    "conversation.opened": ("user", "contact", "workflow", "api", "zapier", "make", "ctc_ads"),
    "conversation.closed": ("user", "workflow", "api", "zapier", "bot", "make", "auto_close"),
    "message.sent": ("user", "workflow", "api", "zapier", "bot", "echo", "make", "broadcast"),
    "message.received": ("contact",),
    "contact.assignee.updated": ("user", "workflow", "api", "zapier", "make", "bot"),
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

REJECTED_EVENTS_COLUMNS: dict[str, str] = {
    "file": "VARCHAR",
    "line": "BIGINT",
    "raw_record": "VARCHAR",
    "event_id": "VARCHAR",
    "reason_code": "VARCHAR",
    "reason": "VARCHAR",
    "ingested_at": "TIMESTAMPTZ",
}
