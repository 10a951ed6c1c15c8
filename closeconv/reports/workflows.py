"""The Workflows page: runs and unassignments over local days, skipped runs, drift.

Not under the shared filter bar; an optional `Period` narrows the charts to some days.
"""

from __future__ import annotations

import polars as pl

from closeconv.reports.access import Warehouse
from closeconv.reports.filters import Period
from closeconv.reports.names import with_names
from closeconv.reports.where import local_day_counts, time_range


def runs_per_day(wh: Warehouse, period: Period | None = None) -> pl.DataFrame:
    """day, outcome, runs: workflow runs per local day of the trigger, by outcome."""
    window = time_range("r.triggered_at", period)
    return wh.query(
        f"""SELECT day, outcome, n AS runs FROM ({local_day_counts(
                "r.triggered_at", f"FROM workflow_runs r WHERE {window.sql}", "r.outcome", "outcome")})
            ORDER BY 1, 2""",
        [wh.timezone, *window.params],
    )


def unassign_actions_per_day(wh: Warehouse, period: Period | None = None) -> pl.DataFrame:
    """day, workflow_id, actions: unassignments per local day."""
    window = time_range("a.effective_at", period)
    return wh.query(
        f"""SELECT day, workflow_id, n AS actions FROM ({local_day_counts(
                "a.effective_at", f"FROM workflow_actions a WHERE a.action = 'unassign' AND {window.sql}",
                "a.workflow_id", "workflow_id")})
            ORDER BY 1, 2""",
        [wh.timezone, *window.params],
    )


def skipped_by_reason(wh: Warehouse, period: Period | None = None, examples: int = 3) -> pl.DataFrame:
    """workflow_id, skip_reason, runs, example_conversation_ids (the latest few)."""
    window = time_range("r.triggered_at", period)
    return wh.query(
        f"""SELECT r.workflow_id, r.skip_reason, count(*) AS runs,
                   max(r.conversation_id, ?, ORDER BY r.triggered_at) AS example_conversation_ids
            FROM workflow_runs r WHERE r.outcome = 'skipped' AND {window.sql}
            GROUP BY 1, 2 ORDER BY runs DESC, 1, 2""",
        [max(1, int(examples)), *window.params],
    )


def drift_count(wh: Warehouse) -> int:
    return int(wh.scalar("SELECT count(*) FROM workflow_drift"))


def drift_list(wh: Warehouse, limit: int = 200, offset: int = 0) -> pl.DataFrame:
    """Contacts a workflow should have unassigned but the recorded events show still assigned.

    contact_id, conversation_id, workflow_id, expected_unassigned_at (workspace tz),
    replayed_from_assignee_id/_name, recorded_assignee_id/_name, recorded_assignee_since/until.
    """
    frame = wh.query(
        """SELECT d.contact_id, d.conversation_id, d.workflow_id, d.expected_unassigned_at,
                   d.replayed_from_assignee_id, d.recorded_assignee_id, d.recorded_assignee_since, d.recorded_assignee_until
            FROM workflow_drift d
            ORDER BY d.expected_unassigned_at DESC, d.contact_id, d.action_id LIMIT ? OFFSET ?""",
        [max(0, int(limit)), max(0, int(offset))],
    )
    tz = wh.timezone
    frame = with_names(frame, wh, {"replayed_from_assignee_id": "replayed_from_assignee_name",
                                   "recorded_assignee_id": "recorded_assignee_name"})
    return frame.with_columns(
        pl.col(c).dt.convert_time_zone(tz)
        for c in ("expected_unassigned_at", "recorded_assignee_since", "recorded_assignee_until")
    )
