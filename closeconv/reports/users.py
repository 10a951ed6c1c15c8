"""The Users report (spec §8): one row per user, computed in one SQL statement.

Every figure covers the closed conversations matching the filters (closed in the period),
except Messages Sent, which counts `message.sent` events with source `user` by the user whose
time falls in the period (the other filters do not apply to it: a message has no category).

- Assigned Conversations: conversations in which the user was the assignee at some moment
  between open and close (an `assignments` interval of the contact overlapping it; see
  closeconv/user_activity.py for the instant of the close).
- Closed Conversations: `closed_by_user_id` = the user; Unique Contacts Closed: distinct
  contacts among them; Average and Max Resolution: over them.
- Average and Median FRT: over the conversations whose `first_response_by_user_id` is the user.

Assigned Conversations and Messages Sent read tables the pipeline precomputes
and, unless filters other than the period and the closer apply, Unique Contacts Closed
(`conversation_assignees`, `user_messages_15min`, `user_closes`; closeconv/user_activity.py
holds their rules).

Counts over nothing are 0; an average, median or max over nothing is None ("—"). The rows are
the users of the `users` reference table plus every user id that has a figure.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import date
from pathlib import Path

import polars as pl

from closeconv.reports.access import Warehouse
from closeconv.reports.filters import Filters, Period, resolve_period
from closeconv.reports.names import reference_table
from closeconv.reports.where import attribute_conditions, closed_where, time_range

USER_SORT_COLUMNS: tuple[str, ...] = (
    "name", "assigned_conversations", "closed_conversations", "unique_contacts_closed", "messages_sent",
    "frt_avg_s", "frt_median_s", "resolution_avg_s", "resolution_max_s",
)
USER_COLUMN_LABELS: dict[str, str] = {
    "name": "User", "team_name": "Team", "assigned_conversations": "Assigned Conversations",
    "closed_conversations": "Closed Conversations", "unique_contacts_closed": "Unique Contacts Closed",
    "messages_sent": "Messages Sent", "frt_avg_s": "Average FRT", "frt_median_s": "Median FRT",
    "resolution_avg_s": "Average Resolution", "resolution_max_s": "Max Resolution",
}


def _unique_contacts_sql(f: Filters, period: Period | None) -> tuple[str, list]:
    """Unique Contacts Closed per user, as a query over `closed` or, when only the period and
    the closer filter apply, over `user_closes` (the same figure without a DISTINCT)."""
    if attribute_conditions(replace(f, closed_by_user=())).conditions:
        return ("SELECT closed_by_user_id AS user_id, count(DISTINCT contact_id) AS unique_contacts_closed "
                "FROM closed WHERE closed_by_user_id IS NOT NULL GROUP BY 1", [])
    where = time_range("u.closed_at", period)
    if f.closed_by_user:
        where.add("list_contains(?::VARCHAR[], u.user_id)", list(f.closed_by_user))
    if period and period.start_utc:
        where.add("(u.previous_close_of_contact_at IS NULL OR u.previous_close_of_contact_at < ?::TIMESTAMPTZ)",
                  period.start_utc)
    else:
        where.add("u.previous_close_of_contact_at IS NULL")
    return (f"SELECT u.user_id, count(*) AS unique_contacts_closed FROM user_closes u WHERE {where.sql} GROUP BY 1",
            where.params)


def _users_sql(wh: Warehouse, f: Filters, today: date, sort: str, descending: bool) -> tuple[str, list]:
    if sort not in USER_SORT_COLUMNS:
        raise ValueError(f"cannot sort the Users report by {sort!r}; use one of {', '.join(USER_SORT_COLUMNS)}")
    period = resolve_period(f, wh.timezone, today)
    closed = closed_where(f, period)
    # Precomputed by the pipeline (closeconv/user_activity.py). The period's bounds are local
    # midnights, always on a quarter hour in UTC, so whole 15-minute slots give exact counts.
    assigned_period = time_range("a.closed_at", period)
    # Without other filters every closed conversation in the period matches: no join needed.
    only_matching = ("AND a.conversation_id IN (SELECT conversation_id FROM closed)"
                     if attribute_conditions(f).conditions else "")
    sent = time_range("m.slot_start", period)
    unique_sql, unique_params = _unique_contacts_sql(f, period)
    users, teams = reference_table(wh, "users"), reference_table(wh, "teams")
    direction = "DESC" if descending else "ASC"
    sql = f"""
        WITH closed AS (
            SELECT c.conversation_id, c.contact_id, c.opened_at, c.closed_at, c.closed_by_user_id,
                   c.first_response_by_user_id, c.first_response_time_s, c.resolution_time_s
            FROM conversations c WHERE {closed.sql}),
        assigned AS (
            SELECT a.assignee_id AS user_id, count(*) AS assigned_conversations
            FROM conversation_assignees a
            WHERE {assigned_period.sql} {only_matching}
            GROUP BY 1),
        closers AS (
            SELECT closed_by_user_id AS user_id, count(*) AS closed_conversations,
                   avg(resolution_time_s) AS resolution_avg_s, max(resolution_time_s) AS resolution_max_s
            FROM closed WHERE closed_by_user_id IS NOT NULL GROUP BY 1),
        unique_contacts AS ({unique_sql}),
        responders AS (
            SELECT first_response_by_user_id AS user_id, avg(first_response_time_s) AS frt_avg_s,
                   quantile_cont(first_response_time_s, 0.5) AS frt_median_s
            FROM closed WHERE first_response_by_user_id IS NOT NULL GROUP BY 1),
        messages AS (
            SELECT m.user_id, sum(m.messages_sent)::BIGINT AS messages_sent FROM user_messages_15min m
            WHERE {sent.sql}
            GROUP BY 1),
        everyone AS (
            SELECT user_id FROM {users} UNION SELECT user_id FROM assigned UNION SELECT user_id FROM closers
            UNION SELECT user_id FROM responders UNION SELECT user_id FROM messages)
        SELECT p.user_id, coalesce(u.name, p.user_id) AS name, u.team_id, coalesce(t.name, u.team_id) AS team_name,
               coalesce(a.assigned_conversations, 0) AS assigned_conversations,
               coalesce(k.closed_conversations, 0) AS closed_conversations,
               coalesce(q.unique_contacts_closed, 0) AS unique_contacts_closed,
               coalesce(m.messages_sent, 0) AS messages_sent,
               r.frt_avg_s, r.frt_median_s, k.resolution_avg_s, k.resolution_max_s
        FROM everyone p
        LEFT JOIN {users} u ON u.user_id = p.user_id
        LEFT JOIN {teams} t ON t.team_id = u.team_id
        LEFT JOIN assigned a ON a.user_id = p.user_id
        LEFT JOIN closers k ON k.user_id = p.user_id
        LEFT JOIN unique_contacts q ON q.user_id = p.user_id
        LEFT JOIN responders r ON r.user_id = p.user_id
        LEFT JOIN messages m ON m.user_id = p.user_id
        WHERE p.user_id IS NOT NULL
        ORDER BY {sort} {direction} NULLS LAST, name, p.user_id"""
    return sql, [*closed.params, *assigned_period.params, *unique_params, *sent.params]


def users_report(wh: Warehouse, f: Filters, today: date, sort: str = "closed_conversations",
                 descending: bool = True) -> pl.DataFrame:
    sql, params = _users_sql(wh, f, today, sort, descending)
    return wh.query(sql, params)


def export_users_csv(wh: Warehouse, f: Filters, today: date, dest: Path, sort: str = "closed_conversations",
                     descending: bool = True) -> int:
    """The Users report as CSV (durations in seconds), written by DuckDB; returns the row count."""
    sql, params = _users_sql(wh, f, today, sort, descending)
    return wh.copy_to_csv(sql, params, dest)
