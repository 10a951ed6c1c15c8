"""What-if replay of a draft workflow over the published history, writing nothing.

The warehouse is attached READ_ONLY to a private in-memory DuckDB; the events up to the end
of the window (plus the 60 s reconciliation window) are copied into memory, and the replay
runs there. The warehouse file is never opened for writing.

By default the draft runs **alone** against the recorded assignment timeline: this answers
"what would this workflow have done?", which is what an admin testing a draft wants. The
recorded timeline already contains what the platform's live workflows did. With
``with_production=True`` the enabled workflows of the workflows folder run too (a workflow
with the draft's id is replaced by the draft), to see the draft's effect alongside them.
A draft with ``enabled: false`` is replayed anyway (it is a what-if).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import duckdb
import polars as pl

from closeconv.errors import ConfigError
from closeconv.reference import load_reference
from closeconv.workflows.loader import WorkflowValidationError, load_workflows, parse_workflow_file
from closeconv.workflows.models import Workflow
from closeconv.workflows.replay import ReplayStats, replay_workflows
from closeconv.workflows.tables import RECONCILE_WINDOW_S


@dataclass
class WhatIfReport:
    draft: Workflow
    warehouse: Path
    timezone: str
    window_from: datetime | None
    window_to: datetime | None
    stats: ReplayStats  # the whole replay (draft + production workflows if any)
    draft_runs: int = 0
    draft_completed: int = 0
    draft_skipped_by_reason: dict[str, int] = field(default_factory=dict)
    draft_actions: int = 0
    draft_actions_by_type: dict[str, int] = field(default_factory=dict)
    draft_contacts_affected: int = 0
    draft_already_recorded: int = 0  # the platform recorded the same change
    draft_not_recorded_still_assigned: int = 0  # drift: the recorded history kept the contact assigned
    sample: list[dict] = field(default_factory=list)
    production_workflows: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {
            "workflow_id": self.draft.id,
            "workflow_name": self.draft.name,
            "workflow_version": self.draft.version,
            "warehouse": str(self.warehouse),
            "timezone": self.timezone,
            "from": self.window_from.isoformat() if self.window_from else None,
            "to": self.window_to.isoformat() if self.window_to else None,
            "production_workflows": self.production_workflows,
            "trigger_events": self.stats.trigger_events,
            "runs": self.draft_runs,
            "completed": self.draft_completed,
            "skipped_by_reason": self.draft_skipped_by_reason,
            "actions": self.draft_actions,
            "actions_by_type": self.draft_actions_by_type,
            "contacts_affected": self.draft_contacts_affected,
            "already_recorded": self.draft_already_recorded,
            "not_recorded_still_assigned": self.draft_not_recorded_still_assigned,
            "sample": [{k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in s.items()} for s in self.sample],
        }


def parse_bound(text: str | None, tz: str, *, end: bool) -> datetime | None:
    """A DATE (a day in the workspace timezone; an end date is inclusive) or an ISO-8601
    timestamp with an offset. Returns an aware datetime (exclusive end)."""
    if text is None or text == "":
        return None
    zone = ZoneInfo(tz)
    try:
        d = date.fromisoformat(text)
    except ValueError:
        d = None
    if d is not None and len(text) == 10:
        if end:
            d = d + timedelta(days=1)
        return datetime.combine(d, time(0), tzinfo=zone)
    try:
        dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ConfigError(
            f"cannot read {text!r} as a date. Fix: write a day like 2026-03-01 or a timestamp with an offset like 2026-03-01T09:00:00+00:00."
        ) from None
    if dt.tzinfo is None:
        raise ConfigError(
            f"the timestamp {text!r} has no UTC offset. Fix: add one (e.g. +00:00 or Z), or give a day like 2026-03-01."
        )
    return dt


def _load_users(reference_dir: Path | None) -> pl.DataFrame | None:
    return load_reference(Path(reference_dir), "users.csv") if reference_dir is not None else None


def run_whatif(
    draft_path: Path,
    warehouse: Path,
    date_from: str | None,
    date_to: str | None,
    *,
    timezone: str = "UTC",
    workflows_dir: Path | None = None,
    with_production: bool = False,
    reference_dir: Path | None = None,
    sample_size: int = 10,
) -> WhatIfReport:
    draft, problems = parse_workflow_file(Path(draft_path))
    if problems:
        raise WorkflowValidationError(problems, Path(draft_path))
    assert draft is not None
    draft = draft.model_copy(update={"enabled": True})
    workflows = [draft]
    production: list[str] = []
    if with_production and workflows_dir is not None:
        for w in load_workflows(Path(workflows_dir)):
            if w.enabled and w.id != draft.id:
                workflows.append(w)
                production.append(w.id)

    t_from = parse_bound(date_from, timezone, end=False)
    t_to = parse_bound(date_to, timezone, end=True)
    if t_from is not None and t_to is not None and t_to <= t_from:
        raise ConfigError(f"--to ({date_to}) is before --from ({date_from}). Fix: swap them.")

    users = _load_users(reference_dir)  # a bad reference file is a configuration error, found before any work

    warehouse = Path(warehouse)
    if not warehouse.is_file():
        raise ConfigError(
            f"warehouse {str(warehouse)!r} does not exist. Fix: run `closeconv run` first, or point --warehouse / "
            "CLOSECONV_WAREHOUSE at the published warehouse file."
        )
    con = duckdb.connect()
    try:
        con.sql("SET TimeZone='UTC'")
        try:
            con.sql(f"ATTACH '{_sql_str(str(warehouse))}' AS wh (READ_ONLY)")
        except duckdb.Error as exc:
            raise ConfigError(f"cannot open the warehouse {str(warehouse)!r} read-only: {exc}. Fix: check the path; "
                              "if the pipeline is writing it right now, retry when it has finished.") from None
        try:
            tables = {r[0] for r in con.sql(
                "SELECT table_name FROM duckdb_tables() WHERE database_name = 'wh'"
            ).fetchall()}
            if "events" not in tables:
                raise ConfigError(f"the warehouse {str(warehouse)!r} has no 'events' table. Fix: run `closeconv run` first.")
            if t_to is not None:
                con.sql(
                    f"CREATE TABLE events AS SELECT * FROM wh.events WHERE occurred_at < ? + INTERVAL {RECONCILE_WINDOW_S} SECOND",
                    params=[t_to],
                )
            else:
                con.sql("CREATE TABLE events AS SELECT * FROM wh.events")
        finally:
            con.sql("DETACH wh")

        stats = replay_workflows(con, workflows, users, triggers_from=t_from, triggers_to=t_to)
        report = WhatIfReport(
            draft=draft, warehouse=warehouse, timezone=timezone, window_from=t_from, window_to=t_to,
            stats=stats, production_workflows=production,
        )
        p = [draft.id]
        report.draft_runs, report.draft_completed = con.sql(
            "SELECT count(*), count(*) FILTER (WHERE outcome = 'completed') FROM workflow_runs WHERE workflow_id = ?",
            params=p,
        ).fetchall()[0]
        report.draft_skipped_by_reason = dict(con.sql(
            "SELECT skip_reason, count(*) AS n FROM workflow_runs WHERE workflow_id = ? AND outcome = 'skipped' "
            "GROUP BY ALL ORDER BY n DESC, skip_reason", params=p,
        ).fetchall())
        report.draft_actions_by_type = dict(con.sql(
            "SELECT action, count(*) AS n FROM workflow_actions WHERE workflow_id = ? GROUP BY ALL ORDER BY n DESC, action",
            params=p,
        ).fetchall())
        report.draft_actions = sum(report.draft_actions_by_type.values())
        report.draft_contacts_affected, report.draft_already_recorded = con.sql(
            "SELECT count(DISTINCT contact_id), count(reconciled_event_id) FROM workflow_actions WHERE workflow_id = ?",
            params=p,
        ).fetchall()[0]
        report.draft_not_recorded_still_assigned = con.sql(
            "SELECT count(*) FROM workflow_drift WHERE workflow_id = ?", params=p
        ).fetchall()[0][0]
        rows = con.sql(
            """
            SELECT a.effective_at, a.contact_id, a.conversation_id, a.action, a.from_assignee_id, a.to_assignee_id,
                   a.reconciled_event_id IS NOT NULL AS already_recorded, a.trigger_event_id
            FROM workflow_actions a WHERE a.workflow_id = ?
            ORDER BY a.effective_at, a.trigger_event_id, a.step_index LIMIT ?  -- in time; trigger_event_order is per contact
            """,
            params=[draft.id, sample_size],
        ).fetchall()
        keys = ("effective_at", "contact_id", "conversation_id", "action", "from_assignee_id", "to_assignee_id",
                "already_recorded", "trigger_event_id")
        report.sample = [dict(zip(keys, r)) for r in rows]
        return report
    finally:
        con.close()


def _sql_str(text: str) -> str:
    return text.replace("'", "''")


def format_report(report: WhatIfReport) -> str:
    tz = ZoneInfo(report.timezone)

    def fmt(dt: datetime | None) -> str:
        return dt.astimezone(tz).strftime("%Y-%m-%d %H:%M:%S") if dt else "…"

    d = report.draft
    lines = [
        f"What-if replay of '{d.id}' ({d.name}), version {d.version}",
        f"  trigger: {d.trigger.type} when {d.describe_conditions()}; then {d.describe_steps()}",
        "  replayed "
        + ("alone against the recorded history" if not report.production_workflows
           else f"with the enabled workflows: {', '.join(report.production_workflows)}"),
        f"  window: {fmt(report.window_from)} to {fmt(report.window_to)} ({report.timezone}, end exclusive)",
        f"  warehouse: {report.warehouse} (read-only; nothing was written)",
        "",
        f"Trigger events in the window:  {report.stats.trigger_events}",
        f"Runs (conditions matched):     {report.draft_runs}",
        f"  completed:                   {report.draft_completed}",
        f"  skipped:                     {report.draft_runs - report.draft_completed}",
    ]
    for reason, n in report.draft_skipped_by_reason.items():
        lines.append(f"    {reason}: {n}")
    by_type = ", ".join(f"{k} {v}" for k, v in report.draft_actions_by_type.items()) or "none"
    lines += [
        f"Actions:                       {report.draft_actions} ({by_type})",
        f"Contacts affected:             {report.draft_contacts_affected}",
        f"  already recorded by the platform (same change within {RECONCILE_WINDOW_S}s): {report.draft_already_recorded}",
        f"  unassignments the history does not show (contact stayed assigned): {report.draft_not_recorded_still_assigned}",
    ]
    if report.sample:
        lines += ["", f"Sample (first {len(report.sample)} actions):"]
        for s in report.sample:
            frm = s["from_assignee_id"] or "(none)"
            to = s["to_assignee_id"] or "(none)"
            mark = "  [already recorded]" if s["already_recorded"] else ""
            lines.append(
                f"  {fmt(s['effective_at'])}  contact {s['contact_id']}  conversation {s['conversation_id'] or '-'}  "
                f"{s['action']} {frm} -> {to}{mark}"
            )
    elif report.draft_runs == 0:
        lines += ["", "The draft's conditions matched no trigger event in this window."]
    return "\n".join(lines)
