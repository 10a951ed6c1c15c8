"""Writing the replay's tables: workflow_runs, workflow_actions, assignments, workflow_drift.

Each table is assembled in Polars from frames the replay already holds (the trigger frame
carries the trigger's ids, contact and time; the timeline carries the recorded updates),
joined and sorted on integer keys only, then copied into DuckDB through the Arrow C stream
interface in its final row order. DuckDB computes the md5 ids (the published values), once
per run and once per action. Nothing joins back to ``events``; the only sort on text is the
timeline's (``triggers.load_timeline``), whose contact_id order ``assignments`` inherits.
"""

from __future__ import annotations

import duckdb
import polars as pl

from closeconv.workflows.models import Workflow
from closeconv.workflows.tables import (
    ACTIONS_SCHEMA,
    ASSIGNMENTS_COLUMNS,
    DRIFT_GRACE_S,
    RUNS_SCHEMA,
    WORKFLOW_ACTIONS_COLUMNS,
    WORKFLOW_DRIFT_COLUMNS,
    WORKFLOW_RUNS_COLUMNS,
)

# The run id's text before the trigger event id (workflow_id|version|), picked by wf_index.
RUN_ID_SQL = "substr(md5({run_prefix} || trigger_event_id), 1, 20)"
ACTION_ID_SQL = "substr(md5(run_id || '|' || step_id), 1, 20)"
# timeline_order exactly as it has always been computed (DuckDB's decimal and double arithmetic).
TIMELINE_ORDER_SQL = (
    "CASE WHEN sub = 0 THEN event_order ELSE event_order + 0.5 + least(sub - 1, 499) / 1000.0 END"
)
# cause and source of an assignments row: recorded rows have sub = 0, workflow rows sub >= 1.
ASSIGNMENT_CAUSE_SQL = {
    "cause": "CASE WHEN sub = 0 THEN 'event' ELSE 'workflow' END",
    "source": "CASE WHEN sub = 0 THEN source ELSE 'workflow' END",
}
FRAME = "_cc_wf_frame"
_US = pl.Datetime("us", "UTC")


class _Stream:
    """A Polars frame as an Arrow C stream: DuckDB scans it without importing pyarrow."""

    def __init__(self, frame: pl.DataFrame):
        self.frame = frame

    def __arrow_c_stream__(self, requested_schema: object | None = None) -> object:
        return self.frame.__arrow_c_stream__(requested_schema)


def run_over_frame(con: duckdb.DuckDBPyConnection, frame: pl.DataFrame, sql: str, *, rows: bool) -> pl.DataFrame | None:
    """Run ``sql``, which reads ``frame`` as ``_cc_wf_frame``; with ``rows``, return its result."""
    con.register(FRAME, _Stream(frame))
    try:
        if rows:
            return con.sql(sql).pl()  # not pl.DataFrame(relation): that path leaks nanobind objects (warnings at exit)
        con.execute(sql)
        return None
    finally:
        con.unregister(FRAME)


def _md5_ids(con: duckdb.DuckDBPyConnection, frame: pl.DataFrame, id_sql: str) -> pl.Series:
    """``id_sql`` evaluated by DuckDB over every row of ``frame``, in the frame's order."""
    if frame.height == 0:
        return pl.Series("id", [], dtype=pl.String)
    ids = run_over_frame(con, frame, f"SELECT CAST({id_sql} AS VARCHAR) AS id FROM {FRAME}", rows=True)
    return ids.to_series()


def _create(con: duckdb.DuckDBPyConnection, table: str, frame: pl.DataFrame, columns: dict[str, str],
            exprs: dict[str, str] | None = None, *, contacts: str | None = None) -> None:
    """(Re)create ``table`` from ``frame`` with the contract's ``columns`` (name -> SQL type), in
    the frame's row order; ``exprs`` computes some columns in SQL instead. With ``contacts`` (a
    SQL predicate on ``contact_id``: the frame holds exactly those contacts' rows), replace only
    those contacts' rows of the existing table."""
    exprs = exprs or {}
    select = ", ".join(f'CAST({exprs.get(c, chr(34) + c + chr(34))} AS {t}) AS "{c}"' for c, t in columns.items())
    if contacts is None:
        run_over_frame(con, frame, f"CREATE OR REPLACE TABLE {table} AS SELECT {select} FROM {FRAME}", rows=False)
        return
    con.execute(f"DELETE FROM {table} WHERE {contacts}")
    run_over_frame(con, frame, f"INSERT INTO {table} SELECT {select} FROM {FRAME}", rows=False)


def _per_workflow(values: list[str]) -> str:
    """SQL giving ``values[wf_index]`` (null where wf_index is null): the workflow's constant
    columns are spelled in SQL, not copied into every row of a frame."""
    if not values:
        return "CAST(NULL AS VARCHAR)"
    quoted = (v.replace("'", "''") for v in values)
    return "CASE wf_index " + " ".join(f"WHEN {i} THEN '{v}'" for i, v in enumerate(quoted)) + " END"


def _rows_at(frame: pl.DataFrame, key: str, values: pl.Series) -> pl.DataFrame:
    """The rows of ``frame`` (sorted by its unique ``key``) whose key is each of ``values``, in
    order: a binary search and a gather, several times cheaper than a hash join here."""
    idx = frame.get_column(key).search_sorted(values)
    rows = frame[idx.clip(0, max(frame.height - 1, 0))] if frame.height else frame.clear(values.len())
    if not rows.get_column(key).equals(values, check_names=False, check_dtypes=False):
        raise RuntimeError(f"replay writer: a {key} has no row")  # the engines only refer to existing rows
    return rows


def _group_start(key: pl.Expr) -> pl.Expr:
    return (key != key.shift(1)).fill_null(True)


def _position_in_group(start: pl.Expr) -> pl.Expr:
    """1, 2, ... within runs of rows that begin where ``start`` is true (rows sorted by group)."""
    i = pl.int_range(pl.len(), dtype=pl.Int64)
    return i - pl.when(start).then(i).forward_fill() + 1


def write_tables(
    con: duckdb.DuckDBPyConnection,
    runs: pl.DataFrame,
    actions: pl.DataFrame,
    wfs: list[Workflow],
    triggers: pl.DataFrame,
    recorded: pl.DataFrame,
    contacts: str | None = None,
) -> None:
    """(Re)create the four tables; with ``contacts`` (a SQL predicate on ``contact_id``, the
    frames holding exactly those contacts' triggers and updates) replace only their rows.

    ``triggers``: one row per trigger event (event_order, ck, pos, contact_id, event_id,
    conversation_id, t_us); ``recorded``: ``triggers.recorded_frame`` (sorted by contact, then
    event_order). ``runs`` / ``actions``: the engines' frames (``RUNS_SCHEMA``, ``ACTIONS_SCHEMA``),
    whose rows name their trigger by ``pos``; the published ``*_event_order`` columns are the
    trigger's event_order (per contact).
    """
    wf_sql = {
        "workflow_id": _per_workflow([w.id for w in wfs]),
        "workflow_version": _per_workflow([w.version for w in wfs]),
    }
    run_id_sql = RUN_ID_SQL.format(run_prefix=_per_workflow([f"{w.id}|{w.version}|" for w in wfs]))
    info = triggers.select(
        "pos", "event_order", "ck", "contact_id", pl.col("event_id").alias("trigger_event_id"), "conversation_id",
        "t_us", pl.col("t_us").cast(_US).alias("at"),
    ).sort("pos")
    runs = runs.select(list(RUNS_SCHEMA)).cast(RUNS_SCHEMA).sort("pos", "wf_index")
    runs_f = pl.concat(
        [runs, _rows_at(info, "pos", runs.get_column("pos")).drop("pos")],
        how="horizontal",
    )
    runs_f = runs_f.with_columns(
        _md5_ids(con, runs_f.select("wf_index", "trigger_event_id"), run_id_sql).alias("run_id"),
        # one increasing integer per run, to find an action's run by binary search
        (pl.col("pos") * len(wfs) + pl.col("wf_index")).alias("run_key"),
    )
    _create(con, "workflow_runs", runs_f.rename({"at": "triggered_at", "event_order": "trigger_event_order"}),
            WORKFLOW_RUNS_COLUMNS, exprs={**wf_sql, "trigger_type": _per_workflow([w.trigger.type for w in wfs])},
            contacts=contacts)

    actions = actions.select(list(ACTIONS_SCHEMA)).cast(ACTIONS_SCHEMA).sort("pos", "wf_index", "step_index")
    run_cols = ["run_key", "run_id", "trigger_event_id", "contact_id",
                "conversation_id", "t_us", "at", "ck", "event_order"]
    acts = pl.concat(
        [actions,
         _rows_at(runs_f.select(run_cols), "run_key",
                  actions.select(pl.col("pos") * len(wfs) + pl.col("wf_index")).to_series()).drop("run_key")],
        how="horizontal",
    )
    reconciled = acts.filter(pl.col("reconciled_pos").is_not_null()).get_column("reconciled_pos")
    rec_ids = recorded.select("pos", "rec_event_id").sort("pos")
    acts = acts.with_columns(
        pl.lit(None, dtype=pl.String).alias("reconciled_event_id")
        if reconciled.is_empty()
        else pl.when(pl.col("reconciled_pos").is_not_null()).then(
            _rows_at(rec_ids, "pos", acts.get_column("reconciled_pos").fill_null(reconciled.first()))
            .get_column("rec_event_id")
        ).alias("reconciled_event_id")
    )
    start = _group_start(pl.col("pos"))
    acts = acts.with_columns(
        _position_in_group(start).cast(pl.Int32).alias("trigger_action_seq"),
        # the last action of its trigger: what the replay expects to remain (drift)
        _group_start(pl.col("pos")).shift(-1, fill_value=True).alias("final"),
    )
    acts = acts.with_columns(_md5_ids(con, acts.select("run_id", "step_id"), ACTION_ID_SQL).alias("action_id"))
    _create(con, "workflow_actions",
            acts.rename({"at": "effective_at", "event_order": "trigger_event_order"}), WORKFLOW_ACTIONS_COLUMNS,
            exprs=wf_sql, contacts=contacts)

    _write_assignments(con, acts, recorded, wf_sql["workflow_id"], contacts)
    _write_drift(con, acts, recorded, wf_sql["workflow_id"], contacts)


def _write_assignments(con: duckdb.DuckDBPyConnection, acts: pl.DataFrame, recorded: pl.DataFrame,
                       workflow_id_sql: str, contacts: str | None) -> None:
    """The recorded timeline (less the updates reconciled with an action) merged with the actions."""
    none = pl.lit(None, dtype=pl.String)
    reconciled = acts.get_column("reconciled_pos").drop_nulls()
    # Sort key: the row's position in the timeline (contact_id, then event_order), then the
    # action's place among its trigger's actions (0 for recorded rows): one integer.
    sub_bits = 23
    rec_rows = recorded.filter(~pl.col("pos").is_in(reconciled.implode())).select(
        (pl.col("pos") * (1 << sub_bits)).alias("key"),
        "ck", "contact_id", pl.col("rec_assignee").alias("assignee_id"), pl.col("rec_at_us").alias("t_us"),
        pl.col("rec_order").alias("event_order"), pl.lit(0, dtype=pl.Int32).alias("sub"),
        pl.col("rec_event_id").alias("event_id"), pl.col("rec_source").alias("source"),
        none.alias("run_id"), none.alias("action_id"), pl.lit(None, dtype=pl.Int32).alias("wf_index"),
        none.alias("trigger_event_id"),
    )
    if acts.height and acts.get_column("trigger_action_seq").max() >= (1 << sub_bits):  # pragma: no cover
        raise ValueError("more than 8 million actions on one trigger event")
    wf_rows = acts.select(
        (pl.col("pos") * (1 << sub_bits) + pl.col("trigger_action_seq")).alias("key"),
        "ck", "contact_id", pl.col("to_assignee_id").alias("assignee_id"), "t_us",
        "event_order", pl.col("trigger_action_seq").alias("sub"),
        pl.col("reconciled_event_id").alias("event_id"), none.alias("source"),  # 'workflow': ASSIGNMENT_CAUSE_SQL
        "run_id", "action_id", "wf_index", "trigger_event_id",
    )
    # Both parts are already in key order (the timeline's and the actions'): merge, no sort.
    rows = rec_rows.merge_sorted(wf_rows, "key")
    same_contact_next = pl.col("ck") == pl.col("ck").shift(-1)
    rows = rows.with_columns(
        pl.col("t_us").cast(_US).alias("valid_from"),
        pl.when(same_contact_next).then(pl.col("t_us").shift(-1)).cast(_US).alias("valid_to"),
        _position_in_group(_group_start(pl.col("ck"))).alias("seq"),
    )
    _create(con, "assignments", rows, ASSIGNMENTS_COLUMNS,
            exprs={"timeline_order": TIMELINE_ORDER_SQL, "workflow_id": workflow_id_sql, **ASSIGNMENT_CAUSE_SQL},
            contacts=contacts)


def _write_drift(con: duckdb.DuckDBPyConnection, acts: pl.DataFrame, recorded: pl.DataFrame,
                 workflow_id_sql: str, contacts: str | None) -> None:
    """Final unassignments with no reconciled update while the recorded timeline still shows an
    assignee ``DRIFT_GRACE_S`` after the trigger."""
    grace_us = DRIFT_GRACE_S * 1_000_000
    cands = acts.filter(
        pl.col("final") & (pl.col("action") == "unassign") & pl.col("reconciled_pos").is_null()
    ).with_columns((pl.col("t_us") + grace_us).alias("x_us"))
    same_contact_next = pl.col("ck") == pl.col("ck").shift(-1)
    # The recorded interval holding x: the contact's last update at or before x. Of updates
    # stamped the same instant only the last has a non-empty interval, so only it is kept.
    recs = recorded.with_columns(
        pl.when(same_contact_next).then(pl.col("rec_at_us").shift(-1)).alias("until_us")
    ).filter(~(same_contact_next & (pl.col("rec_at_us") == pl.col("rec_at_us").shift(-1))).fill_null(False))
    drift = cands.join_asof(
        recs.select("ck", "rec_at_us", pl.col("rec_at_us").alias("since_us"), "until_us", "rec_assignee"),
        left_on="x_us", right_on="rec_at_us", by="ck", strategy="backward", check_sortedness=False,
    ).filter(pl.col("rec_assignee").is_not_null())
    drift = drift.select(
        "contact_id", "wf_index", "run_id", "action_id", "trigger_event_id", "conversation_id",
        pl.col("at").alias("expected_unassigned_at"),
        pl.col("from_assignee_id").alias("replayed_from_assignee_id"),
        pl.col("rec_assignee").alias("recorded_assignee_id"),
        pl.col("since_us").cast(_US).alias("recorded_assignee_since"),
        pl.col("until_us").cast(_US).alias("recorded_assignee_until"),
    )
    _create(con, "workflow_drift", drift, WORKFLOW_DRIFT_COLUMNS, exprs={"workflow_id": workflow_id_sql},
            contacts=contacts)
