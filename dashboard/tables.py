"""Data frames made readable: durations as `4m 10s`, timestamps in the workspace timezone,
sources and columns with human labels."""

from __future__ import annotations

import polars as pl

from closeconv.reports.format import format_duration, source_label

COLUMN_LABELS = {
    "conversation_id": "Conversation", "contact_id": "Contact", "status": "Status",
    "opened_at": "Opened", "closed_at": "Closed", "category": "Category", "summary": "Summary",
    "closed_by_source": "Closed by source", "closed_by": "Closed by", "closed_by_user": "Closed by",
    "closed_by_user_id": "Closed by", "team": "Team", "closed_by_team": "Team", "closed_by_team_id": "Team",
    "assignee": "Assignee at close", "assignee_at_close": "Assignee at close", "first_assignee": "First assignee",
    "first_assignee_id": "First assignee", "channel": "Channel", "channel_id": "Channel",
    "opened_by_source": "Opened by", "first_response_time_s": "First response", "resolution_time_s": "Resolution",
    "average_response_time_s": "Avg response", "frt_bucket": "FRT bucket",
    "first_response_by": "First response by", "first_response_by_user_id": "First response by",
    "incoming_message_count": "Incoming", "outgoing_message_count": "Outgoing",
    "human_outgoing_message_count": "Human replies", "reopened_within_24h": "Reopen noise",
    "closed_by_user_name": "Closed by", "closed_by_team_name": "Team", "assignee_at_close_name": "Assignee at close",
    "first_assignee_name": "First assignee", "opened_by_user_name": "Opened by user",
    "first_response_by_user_name": "First response by", "user_name": "User", "assignee_name": "Assignee",
    "kind": "Event", "workflow_id": "Workflow", "from_assignee_name": "From", "to_assignee_name": "To",
    "occurred_at": "Time", "event_type": "Event", "expected_unassigned_at": "Should have been unassigned at",
    "replayed_from_assignee_name": "Should have unassigned", "recorded_assignee_name": "Still assigned (recorded)",
    "recorded_assignee_since": "Assigned since", "recorded_assignee_until": "Assigned until", "source": "Source", "user": "User", "event_id": "Event id",
}


LIST_COLUMNS = ("closed_at", "category", "first_response_time_s", "resolution_time_s", "summary", "closed_by",
                "closed_by_team_name", "assignee_at_close_name", "channel_id", "opened_by_source", "frt_bucket",
                "human_outgoing_message_count", "reopened_within_24h", "contact_id", "conversation_id")
TIMELINE_COLUMNS = ("occurred_at", "kind", "source", "user_name", "assignee_name", "category", "summary",
                    "workflow_id", "event_id")


def with_closed_by(frame: pl.DataFrame) -> pl.DataFrame:
    """"Closed by": the user's name when a user closed it, else the source (Workflow, Auto-close, ...)."""
    if "closed_by_source" not in frame.columns:
        return frame
    source = pl.col("closed_by_source").map_elements(source_label, return_dtype=pl.String)
    name = pl.col("closed_by_user_name") if "closed_by_user_name" in frame.columns else pl.lit(None, pl.String)
    return frame.with_columns(pl.coalesce(name, source).alias("closed_by"))


def pick(frame: pl.DataFrame, columns: tuple[str, ...]) -> pl.DataFrame:
    return frame.select([c for c in columns if c in frame.columns])


def readable(frame: pl.DataFrame, tz: str) -> pl.DataFrame:
    """Durations (`*_s`, `*_seconds`) as text, timestamps in `tz` without an offset suffix."""
    exprs = []
    for name, dtype in frame.schema.items():
        if name.endswith("_s") or name.endswith("_seconds"):
            exprs.append(pl.col(name).map_elements(format_duration, return_dtype=pl.String, skip_nulls=False))
        elif isinstance(dtype, pl.Datetime):
            exprs.append(pl.col(name).dt.convert_time_zone(tz).dt.strftime("%Y-%m-%d %H:%M:%S"))
    return frame.with_columns(exprs) if exprs else frame


def column_config(frame: pl.DataFrame) -> dict[str, str]:
    return {name: COLUMN_LABELS.get(name, name.replace("_", " ").capitalize()) for name in frame.columns}
