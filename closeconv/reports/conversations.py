"""The Conversation List: count, pages, CSV export, one conversation's drill-down, filter choices.

Only closed conversations are listed (reports count conversations closed in the period).
Timestamps come back in the workspace timezone (tz-aware); durations stay raw seconds
(`*_s`) for the app to format with `format_duration`. Names come from the reference tables,
falling back to the id.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any

import polars as pl

from closeconv.contract import FRT_BUCKETS
from closeconv.reports.access import Warehouse
from closeconv.reports.filters import Filters, resolve_period
from closeconv.reports.format import format_duration, source_label
from closeconv.reports.names import reference_table, team_name_sql, user_name_sql, with_names
from closeconv.reports.where import closed_where

SORT_COLUMNS: tuple[str, ...] = ("closed_at", "first_response_time_s", "resolution_time_s")
TIMESTAMP_COLUMNS = ("opened_at", "closed_at", "first_incoming_at", "first_response_at", "first_assigned_at",
                     "occurred_at", "triggered_at", "effective_at")


LIST_COLUMNS = """
    c.conversation_id, c.contact_id, c.channel_id, c.opened_at, c.opened_by_source, c.opened_by_user_id,
    c.closed_at, c.closed_by_source, c.closed_by_user_id, c.closed_by_team_id, c.category, {summary},
    c.first_incoming_at, c.first_response_at, c.first_response_by_user_id,
    c.first_response_time_s, c.resolution_time_s, c.frt_bucket,
    c.incoming_message_count, c.outgoing_message_count, c.human_outgoing_message_count,
    c.response_count, c.average_response_time_s,
    c.first_assignee_id, c.first_assigned_at, c.assignee_at_close, c.reopened_within_24h"""
USER_NAME_COLUMNS = {
    "opened_by_user_id": "opened_by_user_name", "closed_by_user_id": "closed_by_user_name",
    "first_response_by_user_id": "first_response_by_user_name", "first_assignee_id": "first_assignee_name",
    "assignee_at_close": "assignee_at_close_name",
}
TEAM_NAME_COLUMNS = {"closed_by_team_id": "closed_by_team_name"}


def _named(frame: pl.DataFrame, wh: Warehouse) -> pl.DataFrame:
    """Name columns next to the ids, in the workspace timezone."""
    return to_local(with_names(frame, wh, USER_NAME_COLUMNS, TEAM_NAME_COLUMNS), wh.timezone)


def _columns(wh: Warehouse, redact_summaries: bool) -> str:
    """The list's columns with names joined in SQL (for the CSV export, written by DuckDB)."""
    summary = "NULL::VARCHAR AS summary" if redact_summaries else "c.summary"
    return f"""
        c.conversation_id, c.contact_id, c.channel_id,
        c.opened_at, c.opened_by_source, c.opened_by_user_id,
        {user_name_sql(wh, 'c.opened_by_user_id')} AS opened_by_user_name,
        c.closed_at, c.closed_by_source, c.closed_by_user_id,
        {user_name_sql(wh, 'c.closed_by_user_id')} AS closed_by_user_name,
        c.closed_by_team_id, {team_name_sql(wh, 'c.closed_by_team_id')} AS closed_by_team_name,
        c.category, {summary},
        c.first_incoming_at, c.first_response_at, c.first_response_by_user_id,
        {user_name_sql(wh, 'c.first_response_by_user_id')} AS first_response_by_user_name,
        c.first_response_time_s, c.resolution_time_s, c.frt_bucket,
        c.incoming_message_count, c.outgoing_message_count, c.human_outgoing_message_count,
        c.response_count, c.average_response_time_s,
        c.first_assignee_id, {user_name_sql(wh, 'c.first_assignee_id')} AS first_assignee_name, c.first_assigned_at,
        c.assignee_at_close, {user_name_sql(wh, 'c.assignee_at_close')} AS assignee_at_close_name,
        c.reopened_within_24h"""


def _order(sort: str, descending: bool, alias: str = "c", tiebreak: str = "conversation_id") -> str:
    if sort not in SORT_COLUMNS:
        raise ValueError(f"cannot sort by {sort!r}; use one of {', '.join(SORT_COLUMNS)}")
    direction = "DESC" if descending else "ASC"
    return f"{alias}.{sort} {direction} NULLS LAST, {alias}.{tiebreak} {direction}"


def to_local(frame: pl.DataFrame, tz: str) -> pl.DataFrame:
    """UTC timestamp columns -> the workspace timezone (same instants)."""
    return frame.with_columns(pl.col(c).dt.convert_time_zone(tz) for c in TIMESTAMP_COLUMNS if c in frame.columns)


def count_conversations(wh: Warehouse, f: Filters, today: date) -> int:
    where = closed_where(f, resolve_period(f, wh.timezone, today))
    return int(wh.scalar(f"SELECT count(*) FROM conversations c WHERE {where.sql}", where.params))


def list_conversations(wh: Warehouse, f: Filters, today: date, sort: str = "closed_at", descending: bool = True,
                       limit: int = 50, offset: int = 0, redact_summaries: bool = False) -> pl.DataFrame:
    """One page of the matching closed conversations, with `*_name` columns beside the user/team ids."""
    where = closed_where(f, resolve_period(f, wh.timezone, today))
    columns = LIST_COLUMNS.format(summary="NULL::VARCHAR AS summary" if redact_summaries else "c.summary")
    # Ties are broken by the row's position in the published file (conversations are stored in
    # open order): stable across the pages of one published version, and it spares the sort
    # from reading every conversation_id string.
    order = _order(sort, descending, tiebreak="rowid")
    # Two steps on one attachment: sort narrow rows (sort key, rowid) to pick the page, then
    # fetch its wide rows by rowid (a direct lookup). Sorting wide rows, above all with a large
    # OFFSET, is several times slower.
    keys_sql = f"SELECT c.rowid FROM conversations c WHERE {where.sql} ORDER BY {order} LIMIT ? OFFSET ?"
    rows_sql = f"SELECT {columns} FROM conversations c WHERE c.rowid IN (SELECT unnest(?::BIGINT[])) ORDER BY {order}"

    def page(cur) -> pl.DataFrame:
        rowids = [r[0] for r in cur.sql(keys_sql, params=[*where.params, max(0, int(limit)), max(0, int(offset))]).fetchall()]
        if not rowids:
            return cur.sql(f"SELECT {columns} FROM conversations c WHERE FALSE").pl()
        return cur.sql(rows_sql, params=[rowids]).pl()

    return _named(wh.with_cursor(page), wh)


def export_conversations_csv(wh: Warehouse, f: Filters, today: date, dest: Path, redact_summaries: bool = False) -> int:
    """Every match, no cap, written to `dest` by DuckDB (COPY ... TO); returns the row count.

    Durations are seconds (`*_s`, numbers a spreadsheet can sum); timestamps are given twice,
    in UTC (`*_at`) and in the workspace timezone (`*_at_local`).
    """
    tz = wh.timezone
    where = closed_where(f, resolve_period(f, tz, today))
    sql = f"""
        SELECT {_columns(wh, redact_summaries)},
               strftime(timezone(?, c.opened_at), '%Y-%m-%d %H:%M:%S') AS opened_at_local,
               strftime(timezone(?, c.closed_at), '%Y-%m-%d %H:%M:%S') AS closed_at_local,
               ? AS timezone
        FROM conversations c WHERE {where.sql} ORDER BY {_order('closed_at', True)}"""
    return wh.copy_to_csv(sql, [tz, tz, tz, *where.params], dest)


# --- drill-down ------------------------------------------------------------------------------

@dataclass(frozen=True)
class FrtExplanation:
    start_at: datetime | None
    start_event_id: str | None
    start_reason: str
    stop_at: datetime | None
    stop_event_id: str | None
    stop_user: str | None
    text: str


@dataclass(frozen=True)
class ConversationDetail:
    header: dict[str, Any]
    timeline: pl.DataFrame
    workflow_runs: pl.DataFrame
    workflow_actions: pl.DataFrame
    frt: FrtExplanation


def conversation_detail(wh: Warehouse, conversation_id: str) -> ConversationDetail | None:
    """Everything about one conversation (open or closed); None when there is no such id."""
    tz = wh.timezone
    header = wh.query(f"SELECT {LIST_COLUMNS.format(summary='c.summary')}, c.status FROM conversations c "
                      "WHERE c.conversation_id = ?", [conversation_id])
    if header.height == 0:
        return None
    row = header.row(0, named=True)
    until = row["closed_at"]
    # Bounded by contact and time as well, so DuckDB can skip row groups of a large `events` table.
    events, workflow_assignments, runs, actions = wh.query_many([
        ("""SELECT e.occurred_at, e.event_order::DOUBLE AS position, e.event_type AS kind, e.source, e.user_id,
                   e.assignee_id, e.category, e.summary, e.event_id, NULL::VARCHAR AS workflow_id, e.channel_id
            FROM events e
            WHERE e.conversation_id = ? AND e.contact_id = ? AND e.occurred_at >= ?::TIMESTAMPTZ
              AND (?::TIMESTAMPTZ IS NULL OR e.occurred_at <= ?::TIMESTAMPTZ)""",
         [conversation_id, row["contact_id"], row["opened_at"], until, until]),
        ("""SELECT a.valid_from AS occurred_at, a.timeline_order AS position, 'assignment by workflow' AS kind,
                   a.source, NULL::VARCHAR AS user_id, a.assignee_id, NULL::VARCHAR AS category,
                   NULL::VARCHAR AS summary, coalesce(a.event_id, a.action_id) AS event_id, a.workflow_id,
                   NULL::VARCHAR AS channel_id
            FROM assignments a
            WHERE a.contact_id = ? AND a.cause = 'workflow' AND a.valid_from >= ?::TIMESTAMPTZ
              AND (?::TIMESTAMPTZ IS NULL OR a.valid_from <= ?::TIMESTAMPTZ)""",
         [row["contact_id"], row["opened_at"], until, until]),
        ("""SELECT r.run_id, r.workflow_id, r.workflow_version, r.trigger_type, r.trigger_event_id, r.triggered_at,
                   r.outcome, r.skip_reason, r.action_count
            FROM workflow_runs r
            WHERE r.conversation_id = ? AND r.triggered_at >= ?::TIMESTAMPTZ
              AND (?::TIMESTAMPTZ IS NULL OR r.triggered_at <= ?::TIMESTAMPTZ)
            ORDER BY r.trigger_event_order, r.workflow_id""",
         [conversation_id, row["opened_at"], until, until]),
        ("""SELECT a.action_id, a.run_id, a.workflow_id, a.step_id, a.action, a.strategy, a.from_assignee_id,
                   a.to_assignee_id, a.effective_at, a.trigger_event_id, a.reconciled_event_id
            FROM workflow_actions a
            WHERE a.conversation_id = ? AND a.effective_at >= ?::TIMESTAMPTZ
              AND (?::TIMESTAMPTZ IS NULL OR a.effective_at <= ?::TIMESTAMPTZ)
            ORDER BY a.trigger_event_order, a.trigger_action_seq""",
         [conversation_id, row["opened_at"], until, until]),
    ])
    # A workflow change reconciled with a recorded update of this conversation is shown once.
    workflow_assignments = workflow_assignments.filter(~pl.col("event_id").is_in(events["event_id"].implode()))
    timeline = pl.concat([events, workflow_assignments], how="vertical_relaxed").sort("position")
    timeline = with_names(timeline, wh, {"user_id": "user_name", "assignee_id": "assignee_name"})
    timeline = to_local(timeline.select(
        "occurred_at", "position", "kind", "source", "user_id", "user_name", "assignee_id", "assignee_name",
        "category", "summary", "event_id", "workflow_id", "channel_id"), tz)
    header_local = _named(header, wh).row(0, named=True)
    actions = with_names(actions, wh, {"from_assignee_id": "from_assignee_name", "to_assignee_id": "to_assignee_name"})
    return ConversationDetail(header=header_local, timeline=timeline, workflow_runs=to_local(runs, tz),
                              workflow_actions=to_local(actions, tz), frt=explain_frt(header_local, timeline))


def _clock(t: datetime | None) -> str:
    return "—" if t is None else t.strftime("%Y-%m-%d %H:%M:%S %Z")


def explain_frt(header: dict[str, Any], timeline: pl.DataFrame) -> FrtExplanation:
    """Why `first_response_time_s` is what it is, in the words of spec §5's FRT rule.

    Reads the figures the pipeline computed (`first_incoming_at`, `first_response_at`, …) and
    finds the events they came from in the timeline; it does not recompute the metric.
    """
    events = timeline.filter(pl.col("kind") != "assignment by workflow")
    opened_by = header["opened_by_source"]
    if opened_by == "contact":
        start_at = header["opened_at"]
        first = events.filter(pl.col("kind") == "message.received").head(1)
        start_event = first["event_id"][0] if first.height else None
        start_reason = "The contact's message opened the conversation, so the clock starts at the open."
    else:
        opener = source_label(opened_by) + (f" ({header['opened_by_user_name']})" if header.get("opened_by_user_name") else "")
        start_at = header["first_incoming_at"]
        first = events.filter((pl.col("kind") == "message.received") & (pl.col("occurred_at") >= header["opened_at"])).head(1)
        start_event = first["event_id"][0] if first.height else None
        start_reason = (f"Opened by {opener}: the clock starts at the contact's first message after the open "
                        "(an agent's own opening message answers nothing).")
    stop_at = header["first_response_at"]
    stop_user = header.get("first_response_by_user_name")
    stop_event = None
    if stop_at is not None:
        reply = events.filter((pl.col("kind") == "message.sent") & (pl.col("source") == "user")
                              & (pl.col("occurred_at") == stop_at)
                              & (pl.col("user_id") == header["first_response_by_user_id"])).head(1)
        stop_event = reply["event_id"][0] if reply.height else None
    if start_at is None:
        text = f"{start_reason} The contact never wrote in this conversation, so there was nothing to respond to: FRT is empty (—)."
    elif stop_at is None:
        automated = events.filter((pl.col("kind") == "message.sent") & (pl.col("source") != "user")
                                  & (pl.col("occurred_at") >= start_at)).height
        end = "the close" if header.get("closed_at") is not None else "now (still open)"
        text = (f"{start_reason} The clock started at {_clock(start_at)}. No human agent replied between then and {end}, "
                f"so FRT is empty (—), not 0.")
        if automated:
            text += f" {automated} automated message(s) (workflow, bot, API, …) do not count as responses."
    else:
        automated = events.filter((pl.col("kind") == "message.sent") & (pl.col("source") != "user")
                                  & (pl.col("occurred_at") >= start_at) & (pl.col("occurred_at") <= stop_at)).height
        text = (f"{start_reason} The clock started at {_clock(start_at)} and stopped at {_clock(stop_at)} "
                f"at the first reply by a human agent, {stop_user}: FRT {format_duration(header['first_response_time_s'])}.")
        if automated:
            text += f" {automated} automated message(s) before it did not stop the clock."
    return FrtExplanation(start_at=start_at, start_event_id=start_event, start_reason=start_reason,
                          stop_at=stop_at, stop_event_id=stop_event, stop_user=stop_user, text=text)


# --- filter choices --------------------------------------------------------------------------

def filter_options(wh: Warehouse) -> dict[str, list[tuple[str, str]]]:
    """(value, label) choices for each filter of the bar, from the data and the reference tables."""
    users, teams, categories = (reference_table(wh, t) for t in ("users", "teams", "categories"))
    # One scan of `conversations` for every choice (GROUPING SETS), then small lookups.
    seen, configured, user_names, team_names = wh.query_many([
        ("""SELECT grouping_id(category, closed_by_source, closed_by_user_id, closed_by_team_id, assignee_at_close,
                              channel_id, opened_by_source) AS set_id,
                   coalesce(category, closed_by_source, closed_by_user_id, closed_by_team_id, assignee_at_close,
                            channel_id, opened_by_source) AS value
            FROM conversations WHERE status = 'closed'
            GROUP BY GROUPING SETS ((category), (closed_by_source), (closed_by_user_id), (closed_by_team_id),
                                    (assignee_at_close), (channel_id), (opened_by_source))""", None),
        (f"SELECT name FROM {categories}", None),
        (f"SELECT user_id, name FROM {users} WHERE name IS NOT NULL", None),
        (f"SELECT team_id, name FROM {teams} WHERE name IS NOT NULL", None),
    ])
    columns = ("category", "closed_by_source", "closed_by_user_id", "closed_by_team_id", "assignee_at_close",
               "channel_id", "opened_by_source")
    values: dict[str, set[str]] = {c: set() for c in columns}
    for set_id, value in seen.iter_rows():
        if value is not None:
            # grouping_id has a 1 bit for every column *not* grouped; the grouped one is the 0 bit.
            index = next(i for i, c in enumerate(columns) if not (set_id >> (len(columns) - 1 - i)) & 1)
            values[columns[index]].add(value)
    users_by_id, teams_by_id = dict(user_names.iter_rows()), dict(team_names.iter_rows())
    configured_names = configured["name"].to_list()
    known = {n.lower() for n in configured_names}
    categories_seen = sorted(v for v in values["category"] if v.lower() not in known)

    def by_label(pairs) -> list[tuple[str, str]]:
        return sorted(pairs, key=lambda pair: (pair[1].lower(), pair[0]))

    def named(ids: set[str], names: dict[str, str]) -> list[tuple[str, str]]:
        return by_label((i, names.get(i, i)) for i in ids)

    def sources(ids: set[str]) -> list[tuple[str, str]]:
        return by_label((s, source_label(s)) for s in ids)

    return {
        "category": by_label((c, c) for c in configured_names + categories_seen),
        "closed_by_source": sources(values["closed_by_source"]),
        "closed_by_user": named(values["closed_by_user_id"], users_by_id),
        "team": named(values["closed_by_team_id"] | set(teams_by_id), teams_by_id),
        "assignee": named(values["assignee_at_close"], users_by_id),
        "channel": sorted((c, c) for c in values["channel_id"]),
        "opened_source": sources(values["opened_by_source"]),
    }


def frt_bucket_options() -> list[tuple[str, str]]:
    return [(label, label) for label, _ in FRT_BUCKETS]
