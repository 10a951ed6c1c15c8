"""The vectorized replay (unassign-only workflows) with the text kept in DuckDB.

The timeline (``triggers.timeline_sql``: trigger events and recorded assignee updates) is
sorted once by contact_id, event_order into a temporary table, whose row number is ``pos``.
The engine (``vectorized.py``) reads only what it decides on (orders, times, the condition
fields, the recorded assignee values and sources) and its decisions are spread into one frame
aligned row by row with that table. Every published table is then one DuckDB statement over
``timeline POSITIONAL JOIN decisions POSITIONAL JOIN ids``, filtered: ids, contacts and
conversations are read once, already in the published order, with no join and no sort (one
integer sort only when several workflows run on one trigger). The md5 ids are computed once,
into a table aligned the same way, and shared by the four statements.
"""

from __future__ import annotations

from datetime import datetime

import duckdb
import polars as pl

from closeconv.workflows.models import Workflow
from closeconv.workflows.tables import (
    ASSIGNMENTS_COLUMNS,
    SKIP_NO_ASSIGNEE,
    SKIP_ONCE,
    WORKFLOW_ACTIONS_COLUMNS,
    WORKFLOW_DRIFT_COLUMNS,
    WORKFLOW_RUNS_COLUMNS,
)
from closeconv.workflows.triggers import recorded_frame, timeline_sql, trigger_frame, with_contact_keys
from closeconv.workflows.vectorized import RUN_COMPLETED, RUN_SKIPPED_NO_ASSIGNEE, RUN_SKIPPED_ONCE, replay_vectorized
from closeconv.workflows.writers import (
    ACTION_ID_SQL,
    ASSIGNMENT_CAUSE_SQL,
    RUN_ID_SQL,
    TIMELINE_ORDER_SQL,
    _per_workflow,
    _position_in_group,
    _Stream,
    create_from,
    still_assigned,
)

TIMELINE = "_cc_wf_timeline"
DECISIONS = "_cc_wf_decisions"
IDS = "_cc_wf_ids"
SOURCE = f"{TIMELINE} t POSITIONAL JOIN {DECISIONS} d POSITIONAL JOIN {IDS} i"


def replay_vectorized_tables(
    con: duckdb.DuckDBPyConnection,
    wfs: list[Workflow],
    types: list[str],
    t_from: datetime | None,
    t_to: datetime | None,
    fields: tuple[str, ...],
    contacts: str | None,
) -> pl.DataFrame:
    """Replay the unassign-only ``wfs`` (enabled, sorted by id) and (re)create the four tables
    (with ``contacts``: replace those contacts' rows). Returns the decisions of the trigger
    events (``vectorized.replay_vectorized``) for the caller's counts."""
    create_timeline(con, types, t_from, t_to, fields, contacts)
    try:
        timeline = load_engine_input(con, fields)
        decided = replay_vectorized(trigger_frame(timeline, fields), wfs) if wfs else None
        decisions = align_decisions(timeline, decided, len(wfs))
        con.register(DECISIONS, _Stream(decisions))
        try:
            create_ids(con, wfs)
            create_tables(con, wfs, contacts)
        finally:
            con.unregister(DECISIONS)
    finally:
        con.execute(f"DROP TABLE IF EXISTS {TIMELINE}")
        con.execute(f"DROP TABLE IF EXISTS {IDS}")
    return decided if decided is not None else pl.DataFrame(schema={"pos": pl.Int64, "act_wf": pl.Int32})


def create_timeline(con: duckdb.DuckDBPyConnection, types: list[str], t_from: datetime | None, t_to: datetime | None,
                    fields: tuple[str, ...], contacts: str | None) -> None:
    """The timeline as a temporary table sorted by contact_id, event_order: its row number is pos."""
    sql, params = timeline_sql(types, t_from, t_to, columns=fields, contacts=contacts)
    con.execute(f"CREATE OR REPLACE TEMP TABLE {TIMELINE} AS {sql} ORDER BY contact_id, event_order", params)


def load_engine_input(con: duckdb.DuckDBPyConnection, fields: tuple[str, ...]) -> pl.DataFrame:
    """What the engine decides on, one row per timeline row in its order (``triggers.load_timeline``'s
    columns but contact_id and conversation_id; event_id on recorded rows only)."""
    cols = "".join(f", {c}" for c in fields)
    # lag() OVER () streams in the table's order: a contact's first row, without the text.
    rows = con.sql(
        f"""SELECT event_order, is_rec, t_us, contact_id IS DISTINCT FROM lag(contact_id) OVER () AS contact_start,
                   trigger_type{cols}, rec_val, rec_src, CASE WHEN is_rec THEN event_id END AS event_id
            FROM {TIMELINE}"""
    ).pl().rechunk()
    return with_contact_keys(rows, pl.col("contact_start"))


def _spread(values: pl.Series, at: pl.Series, n: int) -> pl.Series:
    """A column of ``n`` rows: ``values`` at the positions ``at``, null elsewhere."""
    return pl.Series(values.name, [None] * 0, dtype=values.dtype).extend_constant(None, n).scatter(at, values)


def align_decisions(timeline: pl.DataFrame, decided: pl.DataFrame | None, n_wfs: int) -> pl.DataFrame:
    """One row per timeline row, in its order: the runs and action decided at trigger rows,
    whether the row is in ``assignments`` (with its seq and valid_to) and the drift found for
    an action."""
    n = timeline.height
    if decided is None:
        decided = pl.DataFrame(schema={"pos": pl.Int64, "ck": pl.Int64, "t_us": pl.Int64, "act_wf": pl.Int32,
                                       "from_assignee_id": pl.String, "reconciled_pos": pl.Int64})
    at = decided.get_column("pos")
    cols = {c: _spread(decided.get_column(c), at, n)
            for c in [*(f"run{i}" for i in range(n_wfs)), "act_wf", "from_assignee_id"]}
    recorded = recorded_frame(timeline)
    reconciled = decided.get_column("reconciled_pos").drop_nulls()
    rec_ids = recorded.select("pos", "rec_event_id")
    # recorded rows are the ones with a pos in rec_ids, in order: the reconciled id by binary search
    rec_idx = rec_ids.get_column("pos").search_sorted(reconciled)
    cols["reconciled_event_id"] = _spread(
        rec_ids.get_column("rec_event_id").gather(rec_idx).alias("reconciled_event_id"),
        decided.filter(pl.col("reconciled_pos").is_not_null()).get_column("pos"), n)
    removed = _spread(pl.Series("removed", [True] * reconciled.len(), dtype=pl.Boolean), reconciled, n)
    frame = timeline.select("pos", "ck", "t_us", "is_rec").with_columns(
        pl.Series("act_wf", cols["act_wf"]), removed.fill_null(False).alias("removed"))
    in_assignments = (pl.col("is_rec") & ~pl.col("removed")) | pl.col("act_wf").is_not_null()
    rows = frame.filter(in_assignments).select(
        "pos",
        _position_in_group((pl.col("ck") != pl.col("ck").shift(1)).fill_null(True)).alias("seq"),
        pl.when(pl.col("ck") == pl.col("ck").shift(-1)).then(pl.col("t_us").shift(-1)).alias("valid_to_us"),
    )
    asg_at = rows.get_column("pos")
    cols["seq"] = _spread(rows.get_column("seq"), asg_at, n)
    cols["valid_to_us"] = _spread(rows.get_column("valid_to_us"), asg_at, n)
    cands = decided.filter(pl.col("act_wf").is_not_null() & pl.col("reconciled_pos").is_null())
    drift = still_assigned(cands.select("pos", "ck", "t_us"), recorded)
    drift_at = drift.get_column("pos")
    cols["drift_assignee_id"] = _spread(drift.get_column("rec_assignee").alias("drift_assignee_id"), drift_at, n)
    cols["drift_since_us"] = _spread(drift.get_column("since_us").alias("drift_since_us"), drift_at, n)
    cols["drift_until_us"] = _spread(drift.get_column("until_us").alias("drift_until_us"), drift_at, n)
    flags = {
        "in_assignments": cols["seq"].is_not_null().alias("in_assignments"),
        "drift": cols["drift_since_us"].is_not_null().alias("drift"),
    }
    return pl.DataFrame([pl.int_range(n, dtype=pl.Int64, eager=True).alias("pos"), *cols.values(), *flags.values()])


def create_ids(con: duckdb.DuckDBPyConnection, wfs: list[Workflow]) -> None:
    """The md5 ids (each workflow's run, the action), once, aligned with the timeline."""
    n = len(wfs)
    runs = "".join(
        f", CASE WHEN run{i} IS NOT NULL THEN {RUN_ID_SQL.format(run_prefix=_quote(f'{w.id}|{w.version}|'))} END AS run_id{i}"
        for i, w in enumerate(wfs)
    )
    action_run = ("CASE act_wf " + " ".join(f"WHEN {i} THEN run_id{i}" for i in range(n)) + " END") if n else "NULL"
    step = _per_workflow([w.steps[0].id for w in wfs]).replace("wf_index", "act_wf")
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE {IDS} AS
            SELECT * EXCLUDE (act_wf, run_id, step_id), CASE WHEN act_wf IS NOT NULL THEN {ACTION_ID_SQL} END AS action_id
            FROM (SELECT *, {action_run} AS run_id, {step} AS step_id
                  FROM (SELECT act_wf{runs}
                        FROM (SELECT t.event_id AS trigger_event_id, d.* FROM {TIMELINE} t POSITIONAL JOIN {DECISIONS} d)))"""
    )


def _quote(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def create_tables(con: duckdb.DuckDBPyConnection, wfs: list[Workflow], contacts: str | None) -> None:
    n = len(wfs)
    wf_id, version = _per_workflow([w.id for w in wfs]), _per_workflow([w.version for w in wfs])
    ts = "make_timestamptz({})".format
    trigger = {
        "contact_id": "t.contact_id",
        "trigger_event_id": "t.event_id",
        "conversation_id": "t.conversation_id",
        "trigger_event_order": "t.event_order",
    }
    # Runs, one statement per workflow (its code, its run id), unqualified over the union;
    # several workflows: their runs interleaved by (pos, wf_index).
    per_wf = [f"SELECT t.*, d.pos, {i} AS wf_index, d.run{i} AS code, i.run_id{i} AS run_id FROM {SOURCE} "
              f"WHERE d.run{i} IS NOT NULL" for i in range(n)]
    runs_source = f"({' UNION ALL '.join(per_wf)})" if n else f"(SELECT t.*, NULL AS wf_index, NULL AS code, NULL AS run_id FROM {SOURCE} WHERE false)"
    create_from(con, "workflow_runs", runs_source, WORKFLOW_RUNS_COLUMNS, {
        "contact_id": "contact_id",
        "trigger_event_id": "event_id",
        "conversation_id": "conversation_id",
        "trigger_event_order": "event_order",
        "run_id": "run_id",
        "workflow_id": wf_id,
        "workflow_version": version,
        "triggered_at": ts("t_us"),
        "outcome": f"CASE code WHEN {RUN_COMPLETED} THEN 'completed' ELSE 'skipped' END",
        "skip_reason": f"CASE code WHEN {RUN_SKIPPED_NO_ASSIGNEE} THEN {_quote(SKIP_NO_ASSIGNEE)} "
                       f"WHEN {RUN_SKIPPED_ONCE} THEN {_quote(SKIP_ONCE)} END",
        "trigger_type": _per_workflow([w.trigger.type for w in wfs]),
        "action_count": f"CASE code WHEN {RUN_COMPLETED} THEN 1 ELSE 0 END",
    }, contacts=contacts, order_by="pos, wf_index" if n > 1 else None)

    action_run = ("CASE d.act_wf " + " ".join(f"WHEN {i} THEN i.run_id{i}" for i in range(n)) + " END") if n else "NULL"
    by_action = {k: v.replace("wf_index", "d.act_wf") for k, v in
                 {"workflow_id": wf_id, "workflow_version": version}.items()}
    create_from(con, "workflow_actions", f"{SOURCE} WHERE d.act_wf IS NOT NULL", WORKFLOW_ACTIONS_COLUMNS, {
        **trigger,
        "action_id": "i.action_id",
        "run_id": action_run,
        "step_id": _per_workflow([w.steps[0].id for w in wfs]).replace("wf_index", "d.act_wf"),
        "action": "'unassign'",
        "from_assignee_id": "d.from_assignee_id",
        "to_assignee_id": "NULL",
        "effective_at": ts("t.t_us"),
        **by_action,
        "strategy": "'unassign'",
        "step_index": "0",
        "trigger_action_seq": "1",
        "reconciled_event_id": "d.reconciled_event_id",
    }, contacts=contacts)

    # sub: 0 on a recorded row, 1 on an action's row (one action per trigger here).
    assignment_rows = f"""(SELECT t.contact_id, t.event_order, t.event_id, t.t_us, t.is_rec, t.rec_val,
                                 t.rec_src AS source, CASE WHEN t.is_rec THEN 0 ELSE 1 END AS sub,
                                 d.act_wf AS wf_index, d.seq, d.valid_to_us, d.reconciled_event_id,
                                 {action_run} AS run_id, i.action_id
                          FROM {SOURCE} WHERE d.in_assignments)"""
    create_from(con, "assignments", assignment_rows, ASSIGNMENTS_COLUMNS, {
        "assignee_id": "CASE WHEN is_rec THEN nullif(rec_val, '') END",
        "valid_from": ts("t_us"),
        "valid_to": ts("valid_to_us"),
        "timeline_order": TIMELINE_ORDER_SQL,
        "event_id": "CASE WHEN is_rec THEN event_id ELSE reconciled_event_id END",
        "workflow_id": wf_id,
        "trigger_event_id": "CASE WHEN NOT is_rec THEN event_id END",
        **ASSIGNMENT_CAUSE_SQL,
    }, contacts=contacts)

    create_from(con, "workflow_drift", f"{SOURCE} WHERE d.drift", WORKFLOW_DRIFT_COLUMNS, {
        "contact_id": "t.contact_id",
        "workflow_id": by_action["workflow_id"],
        "run_id": action_run,
        "action_id": "i.action_id",
        "trigger_event_id": "t.event_id",
        "conversation_id": "t.conversation_id",
        "expected_unassigned_at": ts("t.t_us"),
        "replayed_from_assignee_id": "d.from_assignee_id",
        "recorded_assignee_id": "d.drift_assignee_id",
        "recorded_assignee_since": ts("d.drift_since_us"),
        "recorded_assignee_until": ts("d.drift_until_us"),
    }, contacts=contacts)
