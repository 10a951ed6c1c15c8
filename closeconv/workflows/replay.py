"""Replay workflows over the recorded events: runs, actions, the merged assignment timeline, drift.

Plain code (no Dagster). :func:`replay_workflows` reads the table ``events`` of a DuckDB
connection and (re)creates ``workflow_runs``, ``workflow_actions``, ``assignments`` and
``workflow_drift`` on the same connection with ``CREATE OR REPLACE TABLE``. It does not open
or commit a transaction: the caller wraps it in one.

How a replay works
------------------
1. Trigger events. ``conversation.closed``: every close. ``conversation.opened``: the
   *opening event of every conversation* (its first event: an explicit
   ``conversation.opened`` or the ``message.received`` that opened it implicitly; for an
   implicit open, the source/user/team of a redundant ``conversation.opened`` arriving within
   60 s fill the fields, as in sessionization; otherwise ``source = contact``).
2. The assignee at a trigger is the contact's assignee just before the trigger event in the
   merged timeline (recorded ``contact.assignee.updated`` events plus earlier replayed
   actions), ordered by ``event_order``: a recorded update at the same timestamp as a close
   comes before it; the close's own workflows come after it.
3. Conditions are compiled to Polars expressions and evaluated over all trigger events at
   once (``conditions.py``).
4. Enabled workflows of one trigger event run in workflow-id order. Every workflow at an
   event sees the same ``assignee_id`` in its conditions (the one before the event's own
   workflows); steps act on the running assignee (after earlier workflows/steps of the event).
5. Actions by workflows never trigger workflows (no loops). Disabled workflows are ignored.
6. Engines: when every enabled workflow only unassigns (the common case, e.g. the template)
   the replay is fully vectorized: within a stretch of one recorded assignee, the first
   event where a workflow fires unassigns, and later events see "no assignee" until the next
   recorded update. Otherwise a sequential engine (``sequential.py``) does Python work only
   per *candidate* trigger (an event where some workflow's static conditions can hold), with
   all lookups precomputed. Both give the same tables (tested).

Reconciliation
--------------
A recorded update with source ``workflow`` is *the same change* as a replayed action when it
is the first recorded update on that contact after the trigger (for a trigger with several
actions: the first recorded updates, matched in order), has the same new assignee (null =
null), comes at most 60 s after the trigger and before the contact's next trigger that
produced actions. It then appears once in ``assignments`` (as the ``workflow`` row, with the
recorded ``event_id``) and its id is in ``workflow_actions.reconciled_event_id``. Recorded
updates stamped at the very same millisecond as the close sort *before* it (rule 2) and are
therefore not reconciled.

Drift
-----
``workflow_drift`` lists unassignments that have no reconciled recorded update while the
recorded timeline shows the contact still assigned 60 s after the trigger. Only an
unassignment that is the last action of its trigger counts (an "unassign, then assign to X"
run expects the contact to be assigned, not unassigned).

Using ``assignments`` for per-conversation assignees
----------------------------------------------------
``assignments`` has one row per change, per contact, ordered by ``seq`` (1, 2, ...). Its
``event_order`` is the recorded event's ``event_order`` for ``cause = 'event'`` rows, and the
*trigger event's* ``event_order`` for ``cause = 'workflow'`` rows (several actions of one
trigger share it and are ordered by ``seq``). So, for an event E of contact C:

* the assignee **just before E, before E's own workflows** = ``assignee_id`` of the row of C
  with the greatest ``seq`` among rows with ``event_order < E.event_order`` (null if none).
  Rows caused by E's own workflows have ``event_order = E.event_order`` and
  ``trigger_event_id = E.event_id``, and are excluded by the strict ``<``;
* equivalently, with ``timeline_order`` (DOUBLE, unique per contact: ``event_order`` for
  recorded rows, trigger ``event_order + 0.5`` (+ 0.001 per earlier action of the same
  trigger) for workflow rows): the last row with ``timeline_order < E.event_order``, which
  an ``ASOF JOIN`` finds directly;
* ``assignee_at_close`` = that value for the close event;
* ``first_assignee_id`` of a conversation = the assignee just before its first event if not
  null (already assigned at open), else the first non-null ``assignee_id`` (lowest ``seq``)
  among rows with ``open_order <= event_order < close_order`` (a conversation still open has
  no upper bound).

:data:`CONVERSATION_ASSIGNEES_SQL` implements exactly this over ``events`` and ``assignments``.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from datetime import datetime

import duckdb
import polars as pl

from closeconv.workflows.conditions import workflow_match_expr
from closeconv.workflows.models import Workflow

COMPLETED = "completed"
SKIPPED = "skipped"
SKIP_NO_ASSIGNEE = "contact has no assignee"
SKIP_ONCE = "already triggered once for this contact"
SKIP_SAME_USER = "contact is already assigned to this user"
SKIP_CHOSEN_IS_CURRENT = "contact is already assigned to the chosen user"
SKIP_NO_TEAM_USERS = "no users in the team"
SKIP_NO_WORKSPACE_USERS = "no users in the workspace"
SKIP_ALL_AT_CAP = "every eligible user already has max_open_contacts or more open contacts"

RECONCILE_WINDOW_S = 60
DRIFT_GRACE_S = 60

WORKFLOW_RUNS_COLUMNS: dict[str, str] = {
    "run_id": "VARCHAR",
    "workflow_id": "VARCHAR",
    "workflow_version": "VARCHAR",
    "trigger_event_id": "VARCHAR",
    "contact_id": "VARCHAR",
    "conversation_id": "VARCHAR",
    "triggered_at": "TIMESTAMPTZ",
    "outcome": "VARCHAR",  # completed | skipped
    "skip_reason": "VARCHAR",  # null when completed
    # extras
    "trigger_type": "VARCHAR",
    "trigger_event_order": "BIGINT",
    "action_count": "INTEGER",
}

WORKFLOW_ACTIONS_COLUMNS: dict[str, str] = {
    "action_id": "VARCHAR",
    "run_id": "VARCHAR",
    "step_id": "VARCHAR",
    "action": "VARCHAR",  # unassign | assign
    "contact_id": "VARCHAR",
    "from_assignee_id": "VARCHAR",
    "to_assignee_id": "VARCHAR",
    "effective_at": "TIMESTAMPTZ",  # = the trigger time
    # extras
    "workflow_id": "VARCHAR",
    "workflow_version": "VARCHAR",
    "trigger_event_id": "VARCHAR",
    "conversation_id": "VARCHAR",
    "strategy": "VARCHAR",  # unassign | user | round_robin | least_open_contacts
    "step_index": "INTEGER",
    "trigger_event_order": "BIGINT",
    "trigger_action_seq": "INTEGER",  # 1, 2, ... position among all actions of the trigger event
    "reconciled_event_id": "VARCHAR",  # the recorded update that is the same change, if any
}

ASSIGNMENTS_COLUMNS: dict[str, str] = {
    "contact_id": "VARCHAR",
    "assignee_id": "VARCHAR",  # null = unassigned
    "valid_from": "TIMESTAMPTZ",
    "valid_to": "TIMESTAMPTZ",  # null = still valid
    "cause": "VARCHAR",  # event | workflow
    # extras
    "seq": "BIGINT",  # 1, 2, ... per contact, in timeline order
    "event_order": "BIGINT",  # recorded event's order, or the trigger's order for workflow rows
    # unique position in the global event order: event_order for recorded rows,
    # trigger event_order + 0.5 (+ 0.001 per earlier action of the same trigger) for workflow rows
    "timeline_order": "DOUBLE",
    "event_id": "VARCHAR",  # recorded event id (for workflow rows: the reconciled recorded update)
    "source": "VARCHAR",  # recorded source, or 'workflow'
    "run_id": "VARCHAR",
    "action_id": "VARCHAR",
    "workflow_id": "VARCHAR",
    "trigger_event_id": "VARCHAR",
}

WORKFLOW_DRIFT_COLUMNS: dict[str, str] = {
    "contact_id": "VARCHAR",
    "workflow_id": "VARCHAR",
    "run_id": "VARCHAR",
    "action_id": "VARCHAR",
    "trigger_event_id": "VARCHAR",
    "conversation_id": "VARCHAR",
    "expected_unassigned_at": "TIMESTAMPTZ",
    "replayed_from_assignee_id": "VARCHAR",
    "recorded_assignee_id": "VARCHAR",
    "recorded_assignee_since": "TIMESTAMPTZ",
    "recorded_assignee_until": "TIMESTAMPTZ",  # null = still assigned at the end of the data
}

CONVERSATION_ASSIGNEES_SQL = """
WITH conv AS (
    SELECT conversation_id,
           any_value(contact_id) AS contact_id,
           min(event_order) AS open_order,
           arg_min(occurred_at, event_order) AS opened_at,
           max(event_order) FILTER (WHERE event_type = 'conversation.closed') AS close_order
    FROM events
    WHERE conversation_id IS NOT NULL
    GROUP BY conversation_id
),
at_open AS (        -- assignee in force just before the conversation's first event
    SELECT c.conversation_id, arg_max_null(a.assignee_id, a.seq) AS assignee_id
    FROM conv c JOIN assignments a
      ON a.contact_id = c.contact_id AND a.event_order < c.open_order
    GROUP BY c.conversation_id
),
during AS (         -- first assignee set during the conversation, before the close's workflows
    SELECT c.conversation_id,
           arg_min(a.assignee_id, a.seq) AS assignee_id,
           arg_min(a.valid_from, a.seq) AS assigned_at
    FROM conv c JOIN assignments a
      ON a.contact_id = c.contact_id
     AND a.event_order >= c.open_order
     AND (c.close_order IS NULL OR a.event_order < c.close_order)
    WHERE a.assignee_id IS NOT NULL
    GROUP BY c.conversation_id
),
at_close AS (       -- assignee just before the close event, before the close's own workflows
    SELECT c.conversation_id, arg_max_null(a.assignee_id, a.seq) AS assignee_id
    FROM conv c JOIN assignments a
      ON a.contact_id = c.contact_id AND a.event_order < c.close_order
    WHERE c.close_order IS NOT NULL
    GROUP BY c.conversation_id
)
SELECT c.conversation_id,
       coalesce(o.assignee_id, d.assignee_id) AS first_assignee_id,
       CASE WHEN o.assignee_id IS NOT NULL THEN c.opened_at ELSE d.assigned_at END AS first_assigned_at,
       k.assignee_id AS assignee_at_close
FROM conv c
LEFT JOIN at_open o USING (conversation_id)
LEFT JOIN during d USING (conversation_id)
LEFT JOIN at_close k USING (conversation_id)
"""
"""Per conversation: first_assignee_id, first_assigned_at (the open time when the contact was
already assigned at open), assignee_at_close. Reads ``events`` and ``assignments``."""


@dataclass
class ReplayStats:
    workflows: int = 0  # enabled workflows replayed
    trigger_events: int = 0  # events of a trigger type some enabled workflow listens to
    runs: int = 0
    completed: int = 0
    skipped: int = 0
    skipped_by_reason: dict[str, int] = field(default_factory=dict)
    actions: int = 0
    actions_by_type: dict[str, int] = field(default_factory=dict)
    contacts_affected: int = 0
    reconciled: int = 0  # actions matched by a recorded workflow update
    drift: int = 0  # rows of workflow_drift
    engine: str = "none"  # vectorized | sequential | none
    seconds: float = 0.0

    def as_dict(self) -> dict:
        return asdict(self)


# --------------------------------------------------------------------------- loading

# Internal frames handed to _write_tables (ids, contacts and times are joined back from
# `events` by event_order, which is unique):
#   runs:    event_order, wf_index, outcome, skip_reason, action_count
#   actions: event_order, wf_index, step_index, step_id, action, strategy,
#            from_assignee_id, to_assignee_id, reconciled_event_order
RUNS_SCHEMA = {
    "event_order": pl.Int64,
    "wf_index": pl.Int32,
    "outcome": pl.String,
    "skip_reason": pl.String,
    "action_count": pl.Int32,
}
ACTIONS_SCHEMA = {
    "event_order": pl.Int64,
    "wf_index": pl.Int32,
    "step_index": pl.Int32,
    "step_id": pl.String,
    "action": pl.String,
    "strategy": pl.String,
    "from_assignee_id": pl.String,
    "to_assignee_id": pl.String,
    "reconciled_event_order": pl.Int64,
}
CONDITION_COLUMNS = ("source", "category", "summary", "user_id", "team_id", "channel_id")


def _window_sql(col: str, t_from: datetime | None, t_to: datetime | None) -> tuple[str, list]:
    clauses, params = [], []
    if t_from is not None:
        clauses.append(f"{col} >= ?")
        params.append(t_from)
    if t_to is not None:
        clauses.append(f"{col} < ?")
        params.append(t_to)
    return (" AND " + " AND ".join(clauses) if clauses else ""), params


def trigger_events_sql(types: list[str], t_from: datetime | None = None, t_to: datetime | None = None) -> tuple[str, list]:
    """SQL (and parameters) selecting the trigger events of ``types`` from ``events``, with
    columns event_order, trigger_event_id, trigger_type, triggered_at, contact_id,
    conversation_id and the condition fields (spec §6; see the module docstring for opens)."""
    parts, params = [], []
    if "conversation.closed" in types:
        where, p = _window_sql("occurred_at", t_from, t_to)
        parts.append(
            f"""
            SELECT event_order, event_id AS trigger_event_id, 'conversation.closed' AS trigger_type,
                   occurred_at AS triggered_at, contact_id, conversation_id, channel_id,
                   lower(source) AS source, user_id, team_id, category, summary
            FROM events WHERE event_type = 'conversation.closed'{where}
            """
        )
        params += p
    if "conversation.opened" in types:
        where, p = _window_sql("f.occurred_at", t_from, t_to)
        within = "x.event_id IS NOT NULL AND x.occurred_at <= f.occurred_at + INTERVAL 60 SECOND"
        parts.append(
            f"""
            SELECT f.event_order, f.event_id AS trigger_event_id, 'conversation.opened' AS trigger_type,
                   f.occurred_at AS triggered_at, f.contact_id, f.conversation_id,
                   coalesce(f.channel_id, x.channel_id) AS channel_id,
                   CASE WHEN f.event_type = 'conversation.opened' THEN lower(f.source)
                        WHEN {within} THEN lower(x.source) ELSE 'contact' END AS source,
                   CASE WHEN f.event_type = 'conversation.opened' THEN f.user_id WHEN {within} THEN x.user_id END AS user_id,
                   CASE WHEN f.event_type = 'conversation.opened' THEN f.team_id WHEN {within} THEN x.team_id END AS team_id,
                   CAST(NULL AS VARCHAR) AS category, CAST(NULL AS VARCHAR) AS summary
            FROM (
                SELECT * FROM events WHERE conversation_id IS NOT NULL
                QUALIFY row_number() OVER (PARTITION BY conversation_id ORDER BY event_order) = 1
            ) f
            LEFT JOIN (
                SELECT * FROM events WHERE conversation_id IS NOT NULL AND event_type = 'conversation.opened'
                QUALIFY row_number() OVER (PARTITION BY conversation_id ORDER BY event_order) = 1
            ) x USING (conversation_id)
            WHERE f.event_type IN ('conversation.opened', 'message.received'){where}
            """
        )
        params += p
    if not parts:
        raise ValueError("no trigger type")
    return " UNION ALL ".join(parts), params


def _load_recorded(con: duckdb.DuckDBPyConnection) -> pl.DataFrame:
    """Recorded assignee updates, in order; rec_at_us is epoch microseconds."""
    return con.sql(
        """
        SELECT event_id AS rec_event_id, event_order AS rec_order, epoch_us(occurred_at) AS rec_at_us, contact_id,
               nullif(trim(assignee_id), '') AS rec_assignee, lower(source) AS rec_source
        FROM events WHERE event_type = 'contact.assignee.updated'
        ORDER BY event_order
        """
    ).pl()


def load_trigger_frame(
    con: duckdb.DuckDBPyConnection,
    types: list[str],
    t_from: datetime | None = None,
    t_to: datetime | None = None,
    *,
    columns: tuple[str, ...] = CONDITION_COLUMNS,
    with_ids: bool = False,
) -> pl.DataFrame:
    """Trigger events with the recorded assignment state around them.

    Sorted by contact, then event_order (``ck`` is an integer key per contact). Columns:
    event_order, ck, trigger_type, the condition ``columns``, ``t_us`` (epoch microseconds),
    ``r`` (recorded assignee just before the event; null = unassigned), ``r_order`` (that
    update's event_order; null if none), ``nr_order`` (the next recorded update after the
    event) and ``nr_unassign_ok`` (that next update is a workflow unassignment within the
    reconciliation window). With ``with_ids``: also ``contact_id``.

    One pass: trigger rows and recorded-update rows are pulled together, sorted per contact,
    and the recorded values are carried forward / backward with global fills restricted to
    the same contact (no per-group window, no as-of join).
    """
    trig_sql, params = trigger_events_sql(types, t_from, t_to)
    cols = [c for c in CONDITION_COLUMNS if c in columns]
    sep = ", " if cols else ""
    sql = f"""
        WITH trig AS ({trig_sql})
        SELECT event_order, contact_id, FALSE AS is_rec, CAST(NULL AS VARCHAR) AS rec_val,
               CAST(NULL AS VARCHAR) AS rec_src, epoch_us(triggered_at) AS t_us,
               trigger_type{sep}{", ".join(cols)}
        FROM trig
        UNION ALL
        SELECT event_order, contact_id, TRUE, coalesce(nullif(trim(assignee_id), ''), ''),
               lower(source), epoch_us(occurred_at), CAST(NULL AS VARCHAR){sep}{", ".join("CAST(NULL AS VARCHAR)" for _ in cols)}
        FROM events WHERE event_type = 'contact.assignee.updated'
    """
    df = con.sql(sql, params=params).pl()
    # An integer key per contact: a 64-bit hash, checked for collisions after sorting
    # (adjacent rows with the same key and different contacts); on a collision, exact codes.
    df = df.with_columns(pl.col("contact_id").hash(seed=7).alias("ck")).sort("ck", "event_order")
    clash = df.select(
        ((pl.col("ck") == pl.col("ck").shift(1)) & (pl.col("contact_id") != pl.col("contact_id").shift(1))).any()
    ).item()
    if clash:  # pragma: no cover - probability ~1e-8 per million contacts
        df = df.with_columns(pl.col("contact_id").cast(pl.Categorical).to_physical().cast(pl.UInt64).alias("ck")).sort(
            "ck", "event_order"
        )
    rec = pl.col("is_rec")
    ck = pl.col("ck")

    def carried(value: pl.Expr) -> pl.Expr:  # the last recorded value at or before the row, same contact
        return pl.when(pl.when(rec).then(ck).forward_fill() == ck).then(pl.when(rec).then(value).forward_fill())

    def following(value: pl.Expr) -> pl.Expr:  # the next recorded value strictly after the row, same contact
        nxt = pl.when(rec).then(ck).backward_fill().shift(-1)
        return pl.when(nxt == ck).then(pl.when(rec).then(value).backward_fill().shift(-1))

    window_us = RECONCILE_WINDOW_S * 1_000_000
    df = df.with_columns(
        carried(pl.col("event_order")).alias("r_order"),
        carried(pl.col("rec_val")).alias("r_raw"),
        following(pl.col("event_order")).alias("nr_order"),
        following(pl.col("rec_src")).alias("nr_src"),
        following(pl.col("rec_val")).alias("nr_val"),
        following(pl.col("t_us")).alias("nr_t_us"),
    )
    df = df.filter(~rec).with_columns(
        pl.when(pl.col("r_raw") == "").then(None).otherwise(pl.col("r_raw")).alias("r"),
        (
            (pl.col("nr_src") == "workflow") & (pl.col("nr_val") == "") & ((pl.col("nr_t_us") - pl.col("t_us")) <= window_us)
        ).fill_null(False).alias("nr_unassign_ok"),
    )
    keep = ["event_order", "ck", "trigger_type", *cols, "t_us", "r", "r_order", "nr_order", "nr_unassign_ok"]
    if with_ids:
        keep.append("contact_id")
    return df.select(keep)


def _cum_within(x: pl.Expr, start: pl.Expr) -> pl.Expr:
    """Inclusive cumulative sum of ``x`` restarting where ``start`` is true (rows sorted by group)."""
    cs = x.cum_sum()
    return cs - pl.when(start).then(cs - x).forward_fill()


# --------------------------------------------------------------------------- vectorized engine


def vectorizable(workflows: list[Workflow]) -> bool:
    """True when the vectorized engine gives the exact answer: every step unassigns, and no
    once-per-contact workflow reads ``assignee_id``."""
    return all(
        w.unassign_only and not (w.settings.trigger_once_per_contact and w.uses_assignee_condition)
        for w in workflows
    )


def _replay_vectorized(t: pl.DataFrame, wfs: list[Workflow]) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Unassign-only workflows, fully vectorized.

    Per contact, a *segment* is a stretch with one recorded assignee r (between recorded
    updates). Before the first event of a segment where some workflow fires with assignee r,
    the assignee is r; at that event the first firing workflow (by id) unassigns; afterwards
    every event of the segment sees "no assignee". Once-per-contact workflows (which here do
    not read assignee_id) are blocked after their first match for the contact.
    """
    n = len(wfs)
    none = pl.lit(None, dtype=pl.String)
    exprs, mr, mn = [], [], []
    for i, w in enumerate(wfs):
        if w.uses_assignee_condition:
            exprs += [workflow_match_expr(w, pl.col("r")).alias(f"mr{i}"), workflow_match_expr(w, none).alias(f"mn{i}")]
            mr.append(f"mr{i}")
            mn.append(f"mn{i}")
        else:
            exprs.append(workflow_match_expr(w).alias(f"mr{i}"))
            mr.append(f"mr{i}")
            mn.append(f"mr{i}")
    t = t.with_columns(
        *exprs,
        (pl.col("ck") != pl.col("ck").shift(1)).fill_null(True).alias("_ck_start"),
        pl.col("r_order").fill_null(-1).alias("seg"),
    )
    t = t.with_columns(
        (pl.col("_ck_start") | (pl.col("seg") != pl.col("seg").shift(1)).fill_null(True)).alias("_seg_start")
    )
    blocked = []
    for i, w in enumerate(wfs):
        if w.settings.trigger_once_per_contact:
            hit = pl.col(mr[i]).cast(pl.Int64)
            blocked.append(((_cum_within(hit, pl.col("_ck_start")) - hit) > 0).alias(f"b{i}"))
        else:
            blocked.append(pl.lit(False).alias(f"b{i}"))
    t = t.with_columns(blocked)
    eff = pl.any_horizontal([pl.col(mr[i]) & ~pl.col(f"b{i}") & pl.col("r").is_not_null() for i in range(n)]).cast(pl.Int64)
    t = t.with_columns(eff.alias("eff"))
    t = t.with_columns(((_cum_within(pl.col("eff"), pl.col("_seg_start")) - pl.col("eff")) > 0).alias("prior"))
    t = t.with_columns(
        [pl.when(pl.col("prior")).then(pl.col(mn[i])).otherwise(pl.col(mr[i])).alias(f"m{i}") for i in range(n)]
    )
    t = t.with_columns(
        (pl.col("prior") | pl.col("r").is_null()).alias("state_null"),
        pl.coalesce([pl.when(pl.col(f"m{i}") & ~pl.col(f"b{i}")).then(pl.lit(i, dtype=pl.Int32)) for i in range(n)]).alias("first_wf"),
    )
    runs_parts, action_parts = [], []
    for i, w in enumerate(wfs):
        done = ~pl.col(f"b{i}") & ~pl.col("state_null") & (pl.col("first_wf") == i)
        sel = t.filter(pl.col(f"m{i}")).with_columns(done.alias("done"))
        runs_parts.append(
            sel.select(
                "event_order",
                pl.lit(i, dtype=pl.Int32).alias("wf_index"),
                pl.when(pl.col("done")).then(pl.lit(COMPLETED)).otherwise(pl.lit(SKIPPED)).alias("outcome"),
                pl.when(pl.col(f"b{i}")).then(pl.lit(SKIP_ONCE))
                .when(pl.col("done")).then(none)
                .otherwise(pl.lit(SKIP_NO_ASSIGNEE)).alias("skip_reason"),
                pl.col("done").cast(pl.Int32).alias("action_count"),
            )
        )
        action_parts.append(
            sel.filter(pl.col("done")).select(
                "event_order",
                pl.lit(i, dtype=pl.Int32).alias("wf_index"),
                pl.lit(0, dtype=pl.Int32).alias("step_index"),
                pl.lit(w.steps[0].id).alias("step_id"),
                pl.lit("unassign").alias("action"),
                pl.lit("unassign").alias("strategy"),
                pl.col("r").alias("from_assignee_id"),
                none.alias("to_assignee_id"),
                pl.when(pl.col("nr_unassign_ok")).then(pl.col("nr_order")).otherwise(None).cast(pl.Int64).alias("reconciled_event_order"),
            )
        )
    runs = pl.concat(runs_parts) if runs_parts else pl.DataFrame(schema=RUNS_SCHEMA)
    actions = pl.concat(action_parts) if action_parts else pl.DataFrame(schema=ACTIONS_SCHEMA)
    return runs.cast(RUNS_SCHEMA), actions.cast(ACTIONS_SCHEMA)


# --------------------------------------------------------------------------- reconciliation


def reconcile(actions: pl.DataFrame, trig: pl.DataFrame, recorded: pl.DataFrame) -> pl.DataFrame:
    """Set ``reconciled_event_order`` on ``actions`` (general case: several actions per trigger).

    ``trig`` gives each action's contact and time (event_order, contact_id, t_us).
    """
    actions = actions.drop("reconciled_event_order", strict=False)
    empty = actions.with_columns(pl.lit(None, dtype=pl.Int64).alias("reconciled_event_order"))
    if actions.height == 0 or recorded.height == 0:
        return empty
    acts = actions.join(trig.select("event_order", "contact_id", "t_us"), on="event_order", how="left")
    per_trigger = (
        acts.group_by("event_order")
        .agg(
            pl.col("contact_id").first(),
            pl.col("t_us").first().alias("a_at_us"),
            pl.len().alias("n"),
            pl.col("to_assignee_id").first().alias("a_to"),
            pl.col("step_index").first().alias("a_step"),
            pl.col("wf_index").first().alias("a_wf"),
        )
        .sort("event_order")
        .rename({"event_order": "a_order"})
    )
    rec = recorded.with_columns(pl.col("rec_order").shift(1).over("contact_id").alias("prev_rec_order"))
    j = rec.join_asof(
        per_trigger, left_on="rec_order", right_on="a_order", by="contact_id", strategy="backward", check_sortedness=False
    ).filter(pl.col("a_order").is_not_null())
    window_us = RECONCILE_WINDOW_S * 1_000_000
    j = j.filter(pl.col("prev_rec_order").is_null() | (pl.col("prev_rec_order") < pl.col("a_order")) | (pl.col("n") > 1))
    single = j.filter(
        (pl.col("n") == 1)
        & (pl.col("rec_source") == "workflow")
        & pl.col("rec_assignee").eq_missing(pl.col("a_to"))
        & ((pl.col("rec_at_us") - pl.col("a_at_us")) <= window_us)
    ).select(
        pl.col("a_order").alias("event_order"),
        pl.col("a_wf").alias("wf_index"),
        pl.col("a_step").alias("step_index"),
        pl.col("rec_order").alias("reconciled_event_order"),
    )
    matches = [single.cast({"wf_index": pl.Int32, "step_index": pl.Int32, "reconciled_event_order": pl.Int64})]
    multi = j.filter(pl.col("n") > 1)
    if multi.height:
        # Greedy, in order: the recorded updates following the trigger (all from workflows,
        # within the window) are matched to the trigger's actions as a subsequence.
        todo: dict[int, list[tuple[int, int, str | None]]] = {}
        for o, wi, si, to in (
            acts.join(multi.select(pl.col("a_order").alias("event_order")).unique(), on="event_order")
            .sort("event_order", "wf_index", "step_index")
            .select("event_order", "wf_index", "step_index", "to_assignee_id")
            .iter_rows()
        ):
            todo.setdefault(o, []).append((wi, si, to))
        rows = []
        for (o,), recs in multi.sort("rec_order").group_by(["a_order"], maintain_order=True):
            pending = todo.get(o, [])
            p = 0
            for rec_order, src, asg, at_us, a_at_us in recs.select(
                "rec_order", "rec_source", "rec_assignee", "rec_at_us", "a_at_us"
            ).iter_rows():
                if src != "workflow" or at_us - a_at_us > window_us:
                    break
                hit = next((k for k in range(p, len(pending)) if pending[k][2] == asg), None)
                if hit is None:
                    break
                rows.append((o, pending[hit][0], pending[hit][1], rec_order))
                p = hit + 1
        if rows:
            matches.append(
                pl.DataFrame(
                    rows,
                    schema={"event_order": pl.Int64, "wf_index": pl.Int32, "step_index": pl.Int32, "reconciled_event_order": pl.Int64},
                    orient="row",
                )
            )
    m = pl.concat(matches)
    return actions.join(m, on=["event_order", "wf_index", "step_index"], how="left")


# --------------------------------------------------------------------------- writing


def _write_tables(con: duckdb.DuckDBPyConnection, runs: pl.DataFrame, actions: pl.DataFrame, wfs: list[Workflow]) -> None:
    defs = pl.DataFrame(
        {
            "wf_index": list(range(len(wfs))),
            "workflow_id": [w.id for w in wfs],
            "workflow_version": [w.version for w in wfs],
            "trigger_type": [w.trigger.type for w in wfs],
        },
        schema={"wf_index": pl.Int32, "workflow_id": pl.String, "workflow_version": pl.String, "trigger_type": pl.String},
    )
    con.register("_cc_wf_defs", defs.to_arrow())
    con.register("_cc_wf_runs", runs.select(list(RUNS_SCHEMA)).cast(RUNS_SCHEMA).to_arrow())
    con.register("_cc_wf_actions", actions.select(list(ACTIONS_SCHEMA)).cast(ACTIONS_SCHEMA).to_arrow())
    run_id = "substr(md5(d.workflow_id || '|' || d.workflow_version || '|' || e.event_id), 1, 20)"
    try:
        con.sql(
            f"""
            CREATE OR REPLACE TABLE workflow_runs AS
            SELECT CAST({run_id} AS VARCHAR) AS run_id,
                   d.workflow_id, d.workflow_version,
                   e.event_id AS trigger_event_id, e.contact_id, e.conversation_id,
                   CAST(e.occurred_at AS TIMESTAMPTZ) AS triggered_at,
                   r.outcome, r.skip_reason,
                   d.trigger_type, r.event_order AS trigger_event_order,
                   CAST(r.action_count AS INTEGER) AS action_count
            FROM _cc_wf_runs r
            JOIN events e ON e.event_order = r.event_order
            JOIN _cc_wf_defs d ON d.wf_index = r.wf_index
            ORDER BY r.event_order, r.wf_index
            """
        )
        con.sql(
            """
            CREATE OR REPLACE TABLE workflow_actions AS
            WITH a AS (
                SELECT x.*, r.run_id, r.workflow_id, r.workflow_version, r.trigger_event_id AS event_id,
                       r.contact_id, r.conversation_id, r.triggered_at AS occurred_at
                FROM _cc_wf_actions x
                JOIN _cc_wf_defs d ON d.wf_index = x.wf_index
                JOIN workflow_runs r ON r.trigger_event_order = x.event_order AND r.workflow_id = d.workflow_id
            )
            SELECT CAST(substr(md5(a.run_id || '|' || a.step_id), 1, 20) AS VARCHAR) AS action_id,
                   CAST(a.run_id AS VARCHAR) AS run_id, a.step_id, a.action, a.contact_id,
                   a.from_assignee_id, a.to_assignee_id,
                   CAST(a.occurred_at AS TIMESTAMPTZ) AS effective_at,
                   a.workflow_id, a.workflow_version, a.event_id AS trigger_event_id, a.conversation_id,
                   a.strategy, a.step_index, a.event_order AS trigger_event_order,
                   CAST(row_number() OVER (PARTITION BY a.event_order ORDER BY a.wf_index, a.step_index) AS INTEGER)
                       AS trigger_action_seq,
                   rec.event_id AS reconciled_event_id
            FROM a LEFT JOIN events rec ON rec.event_order = a.reconciled_event_order
            ORDER BY a.event_order, a.wf_index, a.step_index
            """
        )
    finally:
        for name in ("_cc_wf_defs", "_cc_wf_runs", "_cc_wf_actions"):
            con.unregister(name)
    con.sql(
        """
        CREATE OR REPLACE TABLE assignments AS
        WITH rows AS (
            SELECT e.contact_id, nullif(trim(e.assignee_id), '') AS assignee_id, e.occurred_at AS valid_from,
                   'event' AS cause, e.event_order, 0 AS sub, e.event_id, lower(e.source) AS source,
                   CAST(NULL AS VARCHAR) AS run_id, CAST(NULL AS VARCHAR) AS action_id,
                   CAST(NULL AS VARCHAR) AS workflow_id, CAST(NULL AS VARCHAR) AS trigger_event_id
            FROM events e
            WHERE e.event_type = 'contact.assignee.updated'
              AND NOT EXISTS (SELECT 1 FROM workflow_actions a WHERE a.reconciled_event_id = e.event_id)
            UNION ALL
            SELECT contact_id, to_assignee_id, effective_at, 'workflow', trigger_event_order, trigger_action_seq,
                   reconciled_event_id, 'workflow', run_id, action_id, workflow_id, trigger_event_id
            FROM workflow_actions
        )
        SELECT CAST(contact_id AS VARCHAR) AS contact_id,
               CAST(assignee_id AS VARCHAR) AS assignee_id,
               CAST(valid_from AS TIMESTAMPTZ) AS valid_from,
               CAST(lead(valid_from) OVER w AS TIMESTAMPTZ) AS valid_to,
               CAST(cause AS VARCHAR) AS cause,
               CAST(row_number() OVER w AS BIGINT) AS seq,
               CAST(event_order AS BIGINT) AS event_order,
               CAST(CASE WHEN sub = 0 THEN event_order
                         ELSE event_order + 0.5 + least(sub - 1, 499) / 1000.0 END AS DOUBLE) AS timeline_order,
               CAST(event_id AS VARCHAR) AS event_id,
               CAST(source AS VARCHAR) AS source,
               run_id, action_id, workflow_id, trigger_event_id
        FROM rows
        WINDOW w AS (PARTITION BY contact_id ORDER BY event_order, sub)
        ORDER BY contact_id, seq
        """
    )
    con.sql(
        f"""
        CREATE OR REPLACE TABLE workflow_drift AS
        WITH rec AS (
            SELECT contact_id, nullif(trim(assignee_id), '') AS assignee_id, occurred_at AS valid_from,
                   lead(occurred_at) OVER (PARTITION BY contact_id ORDER BY event_order) AS valid_to
            FROM events WHERE event_type = 'contact.assignee.updated'
        ), final_action AS (    -- the last action of each trigger: what the replay expects to remain
            SELECT action_id FROM assignments WHERE cause = 'workflow'
            QUALIFY row_number() OVER (PARTITION BY contact_id, event_order ORDER BY seq DESC) = 1
        )
        SELECT CAST(a.contact_id AS VARCHAR) AS contact_id,
               CAST(a.workflow_id AS VARCHAR) AS workflow_id,
               CAST(a.run_id AS VARCHAR) AS run_id,
               CAST(a.action_id AS VARCHAR) AS action_id,
               CAST(a.trigger_event_id AS VARCHAR) AS trigger_event_id,
               CAST(a.conversation_id AS VARCHAR) AS conversation_id,
               CAST(a.effective_at AS TIMESTAMPTZ) AS expected_unassigned_at,
               CAST(a.from_assignee_id AS VARCHAR) AS replayed_from_assignee_id,
               CAST(r.assignee_id AS VARCHAR) AS recorded_assignee_id,
               CAST(r.valid_from AS TIMESTAMPTZ) AS recorded_assignee_since,
               CAST(r.valid_to AS TIMESTAMPTZ) AS recorded_assignee_until
        FROM workflow_actions a
        JOIN rec r
          ON r.contact_id = a.contact_id
         AND r.valid_from <= a.effective_at + INTERVAL {DRIFT_GRACE_S} SECOND
         AND (r.valid_to IS NULL OR r.valid_to > a.effective_at + INTERVAL {DRIFT_GRACE_S} SECOND)
        WHERE a.action = 'unassign' AND a.reconciled_event_id IS NULL AND r.assignee_id IS NOT NULL
          AND a.action_id IN (SELECT action_id FROM final_action)
        ORDER BY a.trigger_event_order, a.action_id
        """
    )


def drift_count(con: duckdb.DuckDBPyConnection) -> int:
    """Number of rows of ``workflow_drift`` (replayed unassignments the platform did not record)."""
    return int(con.sql("SELECT count(*) FROM workflow_drift").fetchall()[0][0])


def drift_contacts(con: duckdb.DuckDBPyConnection) -> int:
    """Number of distinct contacts in ``workflow_drift`` (what `closeconv run` reports)."""
    return int(con.sql("SELECT count(DISTINCT contact_id) FROM workflow_drift").fetchall()[0][0])


# --------------------------------------------------------------------------- entry point



def replay_workflows(
    con: duckdb.DuckDBPyConnection,
    workflows: list[Workflow],
    users: pl.DataFrame | None = None,
    *,
    triggers_from: datetime | None = None,
    triggers_to: datetime | None = None,
    engine: str = "auto",
) -> ReplayStats:
    """Replay the enabled ``workflows`` over the table ``events`` of ``con``.

    (Re)creates ``workflow_runs``, ``workflow_actions``, ``assignments`` and
    ``workflow_drift`` (see the module docstring and the ``*_COLUMNS`` schemas). With no
    enabled workflow, ``assignments`` is the recorded timeline and the other tables are empty.
    Opens no transaction: wrap the call in one.

    ``users``: optional reference data (columns ``user_id``, ``team_id``; others ignored)
    giving team membership for round robin / least open contacts; without it, membership
    comes from the ``team_id`` seen with each ``user_id`` in events.
    ``triggers_from`` / ``triggers_to``: only trigger events in [from, to) may fire (what-if
    runs); the assignment state still comes from all history.
    ``engine``: "auto" (vectorized when possible), "vectorized" or "sequential".
    """
    started = time.perf_counter()
    active = sorted((w for w in workflows if w.enabled), key=lambda w: w.id)
    seen: set[str] = set()
    for w in active:
        if w.id in seen:
            raise ValueError(f"two enabled workflows share the id {w.id!r}")
        seen.add(w.id)
    if engine not in ("auto", "vectorized", "sequential"):
        raise ValueError(f"unknown engine {engine!r}")

    stats = ReplayStats(workflows=len(active))
    runs = pl.DataFrame(schema=RUNS_SCHEMA)
    actions = pl.DataFrame(schema=ACTIONS_SCHEMA)
    if active:
        types = sorted({w.trigger.type for w in active})
        fields = tuple({r.field for w in active for r in w.trigger.conditions.rules} & set(CONDITION_COLUMNS))
        use_vector = vectorizable(active) and engine != "sequential"
        if engine == "vectorized" and not use_vector:
            raise ValueError("the vectorized engine only handles unassign-only workflows")
        if use_vector:
            stats.engine = "vectorized"
            trig = load_trigger_frame(con, types, triggers_from, triggers_to, columns=fields)
            runs, actions = _replay_vectorized(trig, active)
        else:
            from closeconv.workflows.sequential import replay_sequential

            stats.engine = "sequential"
            trig = load_trigger_frame(
                con, types, triggers_from, triggers_to, columns=CONDITION_COLUMNS, with_ids=True
            ).sort("event_order")
            runs, actions = replay_sequential(con, trig, active, users)
            actions = reconcile(actions, trig, _load_recorded(con))
        stats.trigger_events = trig.height

    _write_tables(con, runs, actions, active)

    stats.runs = runs.height
    if runs.height:
        outcomes = runs.get_column("outcome").value_counts()
        counts = dict(outcomes.iter_rows())
        stats.completed = int(counts.get(COMPLETED, 0))
        stats.skipped = int(counts.get(SKIPPED, 0))
        reasons = runs.filter(pl.col("outcome") == SKIPPED).get_column("skip_reason").value_counts(sort=True)
        stats.skipped_by_reason = {r: int(n) for r, n in reasons.iter_rows()}
    stats.actions = actions.height
    if actions.height:
        stats.actions_by_type = {a: int(n) for a, n in actions.get_column("action").value_counts(sort=True).iter_rows()}
        stats.contacts_affected, stats.reconciled = (
            int(x) for x in con.sql(
                "SELECT count(DISTINCT contact_id), count(reconciled_event_id) FROM workflow_actions"
            ).fetchall()[0]
        )
    stats.drift = drift_count(con)
    stats.seconds = round(time.perf_counter() - started, 3)
    return stats
