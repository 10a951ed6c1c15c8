"""The pipeline's steps as plain functions over a staging DuckDB connection.

Dagster assets (pipelines/defs/assets.py) call these one step per asset; tests and the
benchmarks can call them directly. No Dagster or Streamlit imports here.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import duckdb

from closeconv import changes
from closeconv.auto_close import AUTO_CLOSE_TEMP_TABLES, AUTO_CLOSE_TEMP_VIEWS, apply_auto_close
from closeconv.contract import EVENTS_COLUMNS, PLATFORM_FIELDS
from closeconv.ingest import validate_and_dedupe
from closeconv.metrics import build_conversations, build_daily_conversation_metrics
from closeconv.reference import build_reference_tables, load_reference
from closeconv.sessionize import SESSION_TEMP_TABLES, sessionize
from closeconv.user_activity import build_user_activity
from closeconv.warehouse import transaction
from closeconv.workflows import load_workflows, replay_workflows
from closeconv.workflows.drift import drift_contacts


@dataclass(frozen=True)
class EventCounts:
    records_read: int
    events_loaded: int
    duplicates_dropped: int
    rejected: int
    rejected_by_reason: dict[str, int]
    # events whose given conversation_id is not their conversation's (spec §4), by reason
    conversation_id_conflicts: dict[str, int]
    auto_closes: int = 0  # derived closes (closeconv/auto_close.py), not read from a file


def build_events(con: duckdb.DuckDBPyConnection, auto_close_hours: float | None = None) -> EventCounts:
    """validated_records → `events` (deduplicated, sessionized) and `rejected_events`."""
    stats = validate_and_dedupe(con)
    auto_closes = apply_auto_close(con, auto_close_hours)
    sessionize(con)
    with transaction(con):
        con.sql(
            # v1.1: the platform's own figures follow the v1 columns.
            f"CREATE OR REPLACE TABLE events AS SELECT {', '.join([*EVENTS_COLUMNS, *PLATFORM_FIELDS])} "
            "FROM sessionized_events"
        )
        con.sql(
            """
            CREATE OR REPLACE TABLE rejected_events AS
            SELECT r.file, r.line, r.raw_record, r.event_id, r.reason_code, r.reason,
                lf.parsed_at AS ingested_at
            FROM (SELECT * FROM rejections UNION ALL SELECT * FROM orphan_closes) r
            LEFT JOIN landing_files lf USING (file)
            ORDER BY r.file, r.line
            """
        )
        con.sql(
            "CREATE OR REPLACE TABLE ingest_counts AS SELECT ?::BIGINT AS records_read, ?::BIGINT AS duplicates_dropped",
            params=[stats.records_read, stats.duplicates_dropped],
        )
        changes.mark_everything(con, [changes.WORKFLOWS, changes.CONVERSATIONS, changes.PUBLISH])  # stand-in: the events step marks affected contacts
    loaded = con.sql("SELECT count(*) FROM events").fetchall()[0][0]
    by_reason = dict(
        con.sql("SELECT reason_code, count(*) FROM rejected_events GROUP BY 1 ORDER BY 2 DESC, 1").fetchall()
    )
    conflicts = dict(con.sql(
        "SELECT conversation_id_conflict, count(*) FROM events WHERE conversation_id_conflict IS NOT NULL "
        "GROUP BY 1 ORDER BY 2 DESC, 1"
    ).fetchall())
    for view in ("sessionized_events", "valid_events", *AUTO_CLOSE_TEMP_VIEWS, "candidates", "validated"):
        con.sql(f"DROP VIEW IF EXISTS {view}")
    for table in ("id_groups", "conflicts", "rejections", "orphan_closes", *SESSION_TEMP_TABLES, *AUTO_CLOSE_TEMP_TABLES):
        con.sql(f"DROP TABLE IF EXISTS {table}")
    return EventCounts(
        records_read=stats.records_read,
        events_loaded=loaded,
        duplicates_dropped=stats.duplicates_dropped,
        rejected=sum(by_reason.values()),
        rejected_by_reason=by_reason,
        conversation_id_conflicts=conflicts,
        auto_closes=auto_closes,
    )


def build_workflow_tables(con: duckdb.DuckDBPyConnection, workflows_dir: Path, reference_dir: Path | None) -> dict[str, int]:
    """Replay the enabled workflows into workflow_runs, workflow_actions, assignments, workflow_drift.

    With no enabled workflow, `assignments` is the recorded assignee timeline alone.
    """
    workflows = load_workflows(workflows_dir)
    users = load_reference(reference_dir, "users.csv") if reference_dir else None
    with transaction(con):
        stats = replay_workflows(con, workflows, users)
    counts = {t: con.sql(f"SELECT count(*) FROM {t}").fetchall()[0][0]
              for t in ("workflow_runs", "workflow_actions", "assignments", "workflow_drift")}
    return {"workflows": stats.workflows, "drifted_contacts": drift_contacts(con), **counts}


def build_conversation_tables(con: duckdb.DuckDBPyConnection, timezone: str, reference_dir: Path | None = None) -> dict[str, int]:
    categories = load_reference(reference_dir, "categories.csv") if reference_dir else None
    with transaction(con):
        build_conversations(con, categories)
        build_daily_conversation_metrics(con, timezone)
        build_user_activity(con)
        build_reference_tables(con, reference_dir)
    return dict(con.sql("SELECT status, count(*) FROM conversations GROUP BY 1").fetchall())
