"""Trigger events of a replay and the recorded assignee updates, read from ``events`` in one pass."""

from __future__ import annotations

from datetime import datetime

import duckdb
import polars as pl

from closeconv.scoped_sql import over_contacts
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


def load_timeline(
    con: duckdb.DuckDBPyConnection,
    types: list[str],
    t_from: datetime | None = None,
    t_to: datetime | None = None,
    *,
    columns: tuple[str, ...] = CONDITION_COLUMNS,
    contacts: str | None = None,
) -> pl.DataFrame:
    """Trigger events of ``types`` and every recorded assignee update, in one frame sorted by
    contact_id (``ck``, an integer key per contact), then event_order (a position within the
    contact, so ``pos``, not event_order, names a row across contacts).

    Columns: event_order, ck, pos (row position), is_rec, contact_id, event_id, t_us (epoch microseconds),
    conversation_id, trigger_type and the condition ``columns`` (trigger rows; null on
    recorded rows), rec_val (recorded new assignee, '' = unassigned) and rec_src (lower-case
    source) on recorded rows. With no ``types``: the recorded updates alone. Everything the
    writers need travels here, so nothing joins back to ``events``. ``contacts``: a SQL predicate
    on ``contact_id`` keeping only those contacts' events (a contact-scoped replay).
    """
    cols = [c for c in CONDITION_COLUMNS if c in columns]
    extra = "".join(f", {c}" for c in cols)
    nulls = "".join(f", CAST(NULL AS VARCHAR) AS {c}" for c in cols)
    recorded = f"""
        SELECT event_order, contact_id, TRUE AS is_rec, event_id, epoch_us(occurred_at) AS t_us,
               CAST(NULL AS VARCHAR) AS conversation_id, CAST(NULL AS VARCHAR) AS trigger_type{nulls},
               coalesce(nullif(trim(assignee_id), ''), '') AS rec_val, lower(source) AS rec_src
        FROM events WHERE event_type = 'contact.assignee.updated'
    """
    params: list = []
    sql = recorded
    if types:
        trig_sql, params = trigger_events_sql(types, t_from, t_to)
        sql = f"""
            WITH trig AS ({trig_sql})
            SELECT event_order, contact_id, FALSE AS is_rec, trigger_event_id AS event_id,
                   epoch_us(triggered_at) AS t_us, conversation_id, trigger_type{extra},
                   CAST(NULL AS VARCHAR) AS rec_val, CAST(NULL AS VARCHAR) AS rec_src
            FROM trig
            UNION ALL {recorded}
        """
    if contacts is not None:
        # Every `events` the queries above name (openers included) reads the scope's rows only.
        sql = over_contacts(sql, contacts, ["events"])
    # DuckDB sorts (by text, in parallel) about as fast as Polars sorts on a hashed key, and the
    # contact_id order makes `assignments` come out in its published order with no second sort.
    # .pl(), not pl.DataFrame(relation): that stream path leaks nanobind objects (warnings at exit).
    rel = con.sql(f"{sql} ORDER BY contact_id, event_order", params=params) if params else con.sql(
        f"{sql} ORDER BY contact_id, event_order")
    df = rel.pl().rechunk()  # one chunk per column: the fills below are several times faster
    # ck: an integer key per contact (1, 2, ... in contact_id order); pos: the row's position.
    return df.with_columns(
        (pl.col("contact_id") != pl.col("contact_id").shift(1)).fill_null(True).cum_sum().cast(pl.Int64).alias("ck"),
        pl.int_range(pl.len(), dtype=pl.Int64).alias("pos"),
    )


def recorded_frame(timeline: pl.DataFrame) -> pl.DataFrame:
    """The recorded assignee updates of a timeline, sorted by contact then event_order:
    rec_order, ck, pos, contact_id, rec_event_id, rec_at_us, rec_assignee (null = unassigned), rec_source."""
    return timeline.filter(pl.col("is_rec")).select(
        pl.col("event_order").alias("rec_order"),
        "ck",
        "pos",
        "contact_id",
        pl.col("event_id").alias("rec_event_id"),
        pl.col("t_us").alias("rec_at_us"),
        pl.when(pl.col("rec_val") == "").then(None).otherwise(pl.col("rec_val")).alias("rec_assignee"),
        pl.col("rec_src").alias("rec_source"),
    )


def trigger_frame(timeline: pl.DataFrame, columns: tuple[str, ...] = CONDITION_COLUMNS) -> pl.DataFrame:
    """Trigger events with the recorded assignment state around them.

    Sorted by contact, then event_order (``ck`` is an integer key per contact). Columns:
    event_order, ck, pos (position in the timeline), trigger_type, the condition ``columns``, ``t_us`` (epoch microseconds),
    ``r`` (recorded assignee just before the event; null = unassigned), ``r_order`` (that
    update's event_order; null if none), ``nr_order`` / ``nr_pos`` (the next recorded update
    after the event: its event_order and its ``pos``), ``nr_unassign_ok`` (that next update is a workflow unassignment within the
    reconciliation window), and the trigger's ``contact_id``, ``event_id`` and ``conversation_id``.

    The previous / next recorded update of the same contact is found as a row position with
    integer fills over the sorted timeline (no per-group window, no as-of join); its values are
    then gathered for the trigger rows only.
    """
    cols = [c for c in CONDITION_COLUMNS if c in columns]
    rec, ck, pos = pl.col("is_rec"), pl.col("ck"), pl.col("pos")  # pos is the row number
    first = pl.when((ck != ck.shift(1)).fill_null(True)).then(pos).forward_fill()  # the contact's first row
    last = pl.when((ck != ck.shift(-1)).fill_null(True)).then(pos).backward_fill()  # and its last
    prev_rec = pl.when(rec).then(pos).forward_fill()  # at or before the row
    next_rec = pl.when(rec).then(pos).backward_fill().shift(-1)  # strictly after it
    df = timeline.with_columns(
        pl.when(prev_rec >= first).then(prev_rec).alias("_r_idx"),
        pl.when(next_rec <= last).then(next_rec).alias("_nr_idx"),
    ).filter(~rec)
    r_idx, nr_idx = df.get_column("_r_idx"), df.get_column("_nr_idx")

    def at(column: str, idx: pl.Series, name: str) -> pl.Series:
        return timeline.get_column(column).gather(idx).alias(name)

    window_us = RECONCILE_WINDOW_S * 1_000_000
    df = df.with_columns(
        at("event_order", r_idx, "r_order"),
        at("rec_val", r_idx, "r_raw"),
        at("event_order", nr_idx, "nr_order"),
        nr_idx.alias("nr_pos"),
        at("rec_src", nr_idx, "nr_src"),
        at("rec_val", nr_idx, "nr_val"),
        at("t_us", nr_idx, "nr_t_us"),
    )
    df = df.with_columns(
        pl.when(pl.col("r_raw") == "").then(None).otherwise(pl.col("r_raw")).alias("r"),
        (
            (pl.col("nr_src") == "workflow") & (pl.col("nr_val") == "") & ((pl.col("nr_t_us") - pl.col("t_us")) <= window_us)
        ).fill_null(False).alias("nr_unassign_ok"),
    )
    keep = ["event_order", "ck", "pos", "trigger_type", *cols, "t_us", "r", "r_order", "nr_order", "nr_pos", "nr_unassign_ok",
            "contact_id", "event_id", "conversation_id"]
    return df.select(keep)
