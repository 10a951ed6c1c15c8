"""The pipeline's steps as plain functions over a staging DuckDB connection.

Dagster assets (pipelines/defs/assets.py) call these one step per asset; tests and the
benchmarks can call them directly. No Dagster or Streamlit imports here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import duckdb

from closeconv import changes
from closeconv.auto_close import AUTO_CLOSE_TEMP_TABLES, AUTO_CLOSE_TEMP_VIEWS, apply_auto_close
from closeconv.contract import EVENTS_COLUMNS, PLATFORM_FIELDS
from closeconv.conversation_tables import CONVERSATION_STEP_TABLES, build_conversation_scope
from closeconv.events_scope import (
    AFFECTED, SCOPE_EVENT_IDS, SCOPE_RECORDS, affected_contacts, changed_files, drop_temp_tables, record_built,
)
from closeconv.ingest import SCOPED_RECORDS, validate_and_dedupe
from closeconv.reference import REFERENCE_TABLES, build_reference_tables, load_reference
from closeconv.sessionize import SESSION_TEMP_TABLES, narrow_side_built, sessionize
from closeconv.settings_fingerprint import fingerprint
from closeconv.warehouse import transaction
from closeconv.workflows import load_workflows
from closeconv.workflows.drift import drift_contacts
from closeconv.workflows.incremental import replay_scope
from closeconv.workflows.loader import workflow_files
from closeconv.workflows.tables import REPLAY_TABLES


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
    # How much this run recomputed (None: every contact; closeconv/events_scope.py): it describes
    # the run, not the tables, so two runs with the same result compare equal.
    contacts_recomputed: int | None = field(default=None, compare=False)


# Reasons found after validation, per event_id group and contact (the others are per file).
_CONTACT_REASONS = "('conflicting_duplicate', 'orphan_close')"
_EVENT_COLUMNS = ", ".join([*EVENTS_COLUMNS, *PLATFORM_FIELDS])  # v1.1: the platform's own figures follow the v1 columns
# `events` is written clustered by contact (in staging, and so in the published copy): a step or
# check that reads some contacts' rows then skips the row groups whose contact_id range
# (DuckDB's zonemap) holds none of them, instead of scanning the whole table. An ORDER BY into
# the write keeps the order (DuckDB inserts a sorted result in order, on every thread).
_BY_CONTACT = "ORDER BY contact_id, event_order"
_NEW_REJECTIONS = """
    SELECT r.file, r.line, r.raw_record, r.event_id, r.reason_code, r.reason, lf.parsed_at AS ingested_at
    FROM (SELECT * FROM rejections UNION ALL SELECT * FROM orphan_closes) r
    LEFT JOIN landing_files lf USING (file)
"""


def build_events(
    con: duckdb.DuckDBPyConnection, auto_close_hours: float | None = None, as_of: datetime | None = None
) -> EventCounts:
    """validated_records → `events` (deduplicated, sessionized) and `rejected_events`.

    Recomputes only the contacts the change journal and the cross-contact rules make affected
    (closeconv/events_scope.py), or everything; then journals, for the later steps, the contacts
    whose rows in `events` changed. `as_of` is the auto-close clock (default: now)."""
    as_of = as_of or datetime.now(timezone.utc)
    scope = affected_contacts(con, auto_close_hours, as_of)
    validate_and_dedupe(con, contacts=scope.where("contact_id"), files=changed_files(scope),
                        valid_copy=None if scope.everything else SCOPE_RECORDS)
    apply_auto_close(con, auto_close_hours, as_of)
    sessionize(con)
    with transaction(con):
        if scope.everything:
            with narrow_side_built(con):
                con.sql(f"CREATE OR REPLACE TABLE events AS SELECT {_EVENT_COLUMNS} FROM sessionized_events {_BY_CONTACT}")
            con.sql(f"CREATE OR REPLACE TABLE rejected_events AS {_NEW_REJECTIONS} ORDER BY r.file, r.line")
            con.sql("CREATE OR REPLACE TABLE dropped_duplicates AS "
                    "SELECT event_id, deliveries - 1 AS dropped FROM id_groups WHERE versions = 1")
            changes.mark_everything(con, [changes.WORKFLOWS, changes.CONVERSATIONS, changes.PUBLISH])
        else:
            _replace_scoped_rows(con, scope)
        con.sql(
            "CREATE OR REPLACE TABLE ingest_counts AS SELECT "
            # counted in the records themselves: the table check compares it with `landing_files`
            "(SELECT count(*) FROM validated_records)::BIGINT AS records_read, "
            "(SELECT coalesce(sum(dropped), 0) FROM dropped_duplicates)::BIGINT AS duplicates_dropped"
        )
        record_built(con, auto_close_hours, as_of)
        changes.clear(con, changes.EVENTS)
    records_read, duplicates_dropped = con.sql("SELECT records_read, duplicates_dropped FROM ingest_counts").fetchall()[0]
    loaded = con.sql("SELECT count(*) FROM events").fetchall()[0][0]
    by_reason = dict(
        con.sql("SELECT reason_code, count(*) FROM rejected_events GROUP BY 1 ORDER BY 2 DESC, 1").fetchall()
    )
    conflicts = dict(con.sql(
        "SELECT conversation_id_conflict, count(*) FROM events WHERE conversation_id_conflict IS NOT NULL "
        "GROUP BY 1 ORDER BY 2 DESC, 1"
    ).fetchall())
    auto_closes = 0 if auto_close_hours is None else con.sql(
        "SELECT count(*) FROM events WHERE source = 'auto_close' AND source_file IS NULL").fetchall()[0][0]
    for view in ("sessionized_events", "valid_events", *AUTO_CLOSE_TEMP_VIEWS, "candidates", "validated"):
        con.sql(f"DROP VIEW IF EXISTS {view}")
    for table in ("id_groups", "conflicts", "rejections", "orphan_closes", "_events_new", "_events_changed", SCOPED_RECORDS,
                  *SESSION_TEMP_TABLES, *AUTO_CLOSE_TEMP_TABLES):
        con.sql(f"DROP TABLE IF EXISTS {table}")
    drop_temp_tables(con)
    return EventCounts(
        records_read=records_read,
        events_loaded=loaded,
        duplicates_dropped=duplicates_dropped,
        rejected=sum(by_reason.values()),
        rejected_by_reason=by_reason,
        conversation_id_conflicts=conflicts,
        auto_closes=auto_closes,
        contacts_recomputed=None if scope.everything else scope.contacts,
    )


def _replace_scoped_rows(con: duckdb.DuckDBPyConnection, scope) -> None:
    """Write the recomputed contacts' rows (inside the step's transaction); journal those that changed."""
    # A journaled contact's records came or went: it counts as changed. The contacts the
    # closures and the auto-close clock added usually come out the same: only those whose
    # rows differ are rewritten and journaled (reading old rows costs a scan of `events`).
    con.sql(f"CREATE OR REPLACE TEMP TABLE _events_changed AS SELECT contact_id FROM {AFFECTED} WHERE journaled")
    new_rows = f"(SELECT {_EVENT_COLUMNS} FROM sessionized_events)"
    if con.sql(f"SELECT count(*) FROM {AFFECTED} WHERE NOT journaled").fetchall()[0][0]:
        # Read twice (the diff, the insert): computed once. Without such contacts the view is
        # inserted straight, with no copy of the scope's rows.
        con.sql(f"CREATE OR REPLACE TEMP TABLE _events_new AS SELECT * FROM {new_rows}")
        new_rows = "_events_new"
        widened = f"contact_id IN (SELECT contact_id FROM {AFFECTED} WHERE NOT journaled)"
        old = f"SELECT {_EVENT_COLUMNS} FROM events WHERE {widened}"
        new = f"SELECT * FROM _events_new WHERE {widened}"
        con.sql(f"INSERT INTO _events_changed SELECT DISTINCT contact_id FROM "
                f"(({new} EXCEPT ALL {old}) UNION ALL ({old} EXCEPT ALL {new}))")
    changed = "contact_id IN (SELECT contact_id FROM _events_changed)"
    con.sql(f"DELETE FROM events WHERE {changed}")
    con.sql(f"INSERT INTO events SELECT * FROM {new_rows} WHERE {changed} {_BY_CONTACT}")
    con.sql(
        f"""
        DELETE FROM rejected_events
        WHERE CASE WHEN reason_code IN {_CONTACT_REASONS} THEN event_id IN (SELECT event_id FROM {SCOPE_EVENT_IDS})
                   ELSE {changed_files(scope)} END
        """
    )
    con.sql(f"INSERT INTO rejected_events {_NEW_REJECTIONS}")
    con.sql(f"DELETE FROM dropped_duplicates WHERE event_id IN (SELECT event_id FROM {SCOPE_EVENT_IDS})")
    con.sql("INSERT INTO dropped_duplicates SELECT event_id, deliveries - 1 FROM id_groups WHERE versions = 1")
    changes.mark_contacts(con, [changes.WORKFLOWS, changes.CONVERSATIONS, changes.PUBLISH],
                          "SELECT contact_id FROM _events_changed")


def build_workflow_tables(con: duckdb.DuckDBPyConnection, workflows_dir: Path, reference_dir: Path | None) -> dict[str, int | None]:
    """Replay the enabled workflows into workflow_runs, workflow_actions, assignments, workflow_drift:
    the contacts of the WORKFLOWS scope, or everything (closeconv/workflows/incremental.py).

    With no enabled workflow, `assignments` is the recorded assignee timeline alone.
    """
    workflows = load_workflows(workflows_dir)
    users = load_reference(reference_dir, "users.csv") if reference_dir else None
    settings = fingerprint({}, [*workflow_files(Path(workflows_dir)), *([reference_dir / "users.csv"] if reference_dir else [])])
    scope = changes.scope_of(con, changes.WORKFLOWS, outputs=REPLAY_TABLES)
    if changes.settings_changed(con, changes.WORKFLOWS, settings):
        scope = changes.Scope(changes.WORKFLOWS, everything=True)
    with transaction(con):
        replay_scope(con, workflows, users, scope)
        changes.record_settings(con, changes.WORKFLOWS, settings)
        changes.clear(con, changes.WORKFLOWS)
    counts = {t: con.sql(f"SELECT count(*) FROM {t}").fetchall()[0][0] for t in REPLAY_TABLES}
    # replayed_contacts: None = every contact
    return {"workflows": sum(w.enabled for w in workflows), "drifted_contacts": drift_contacts(con),
            "replayed_contacts": None if scope.everything else scope.contacts, **counts}


def build_conversation_tables(con: duckdb.DuckDBPyConnection, timezone: str, reference_dir: Path | None = None) -> dict[str, int]:
    """conversations, daily_conversation_metrics and the user tables for the CONVERSATIONS scope
    (closeconv/conversation_tables.py); the reference tables when their files changed."""
    categories = load_reference(reference_dir, "categories.csv") if reference_dir else None
    settings = fingerprint({"timezone": timezone},
                           [reference_dir / name for name in REFERENCE_TABLES.values()] if reference_dir else [])
    scope = changes.scope_of(con, changes.CONVERSATIONS, outputs=CONVERSATION_STEP_TABLES)
    settings_changed = changes.settings_changed(con, changes.CONVERSATIONS, settings)
    if settings_changed:
        scope = changes.Scope(changes.CONVERSATIONS, everything=True)
    with transaction(con):
        build_conversation_scope(con, scope, timezone, categories)
        if settings_changed or changes.missing_tables(con, REFERENCE_TABLES):
            build_reference_tables(con, reference_dir)
        changes.record_settings(con, changes.CONVERSATIONS, settings)
        changes.clear(con, changes.CONVERSATIONS)
    return dict(con.sql("SELECT status, count(*) FROM conversations GROUP BY 1").fetchall())
