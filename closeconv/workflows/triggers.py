"""Trigger events of a replay, with the recorded assignment state around each (one pass)."""

from __future__ import annotations

from datetime import datetime

import duckdb
import polars as pl

from closeconv.sessionize import CONVERSATION_OPENERS_SQL
from closeconv.workflows.tables import CONDITION_COLUMNS, RECONCILE_WINDOW_S


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
        where, p = _window_sql("opened_at", t_from, t_to)
        parts.append(
            f"""
            SELECT open_order AS event_order, open_event_id AS trigger_event_id, 'conversation.opened' AS trigger_type,
                   opened_at AS triggered_at, contact_id, conversation_id,
                   coalesce(channel_id, explicit_channel_id) AS channel_id,
                   lower(opened_by_source) AS source, opened_by_user_id AS user_id, opened_by_team_id AS team_id,
                   CAST(NULL AS VARCHAR) AS category, CAST(NULL AS VARCHAR) AS summary
            FROM ({CONVERSATION_OPENERS_SQL}) WHERE true{where}
            """
        )
        params += p
    if not parts:
        raise ValueError("no trigger type")
    return " UNION ALL ".join(parts), params


def load_recorded(con: duckdb.DuckDBPyConnection) -> pl.DataFrame:
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
