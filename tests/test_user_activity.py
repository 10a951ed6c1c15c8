"""The Users report's precomputed tables agree with a direct computation on a generated warehouse.

`conversation_assignees` is checked against the spec §8 rule applied in Python to every closed
conversation and its contact's `assignments` intervals; `user_messages_15min` against counting
`message.sent` events per local day straight from `events`, in timezones with DST and with
quarter-hour offsets; the Users report (Assigned Conversations, Messages Sent, Unique Contacts
Closed, which read these tables and `user_closes`) against a direct count over periods and filters.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from datetime import date, timedelta

import duckdb
import pytest

from closeconv.reports.access import Warehouse
from closeconv.reports.filters import Filters, resolve_period
from closeconv.reports.users import users_report
from tests.dashboard_support import TIMEZONE, build_warehouse


@pytest.fixture(scope="module")
def warehouse(tmp_path_factory):
    return build_warehouse(tmp_path_factory.mktemp("activity"), conversations=400, seed=5)


def rows(warehouse, sql: str, params: list | None = None) -> list[tuple]:
    con = duckdb.connect(str(warehouse), read_only=True)
    try:
        con.sql("SET TimeZone = 'UTC'")
        return con.sql(sql, params=params or []).fetchall()
    finally:
        con.close()


def assigned_by_rule(warehouse) -> set[tuple[str, str]]:
    """(conversation, user) pairs: an interval starting before the close (or recorded at its
    instant) and ending after the open."""
    intervals = defaultdict(list)
    for contact, assignee, start, end, cause in rows(
            warehouse, "SELECT contact_id, assignee_id, valid_from, valid_to, cause FROM assignments"):
        intervals[contact].append((assignee, start, end, cause))
    pairs = set()
    for conversation, contact, opened, closed in rows(
            warehouse, "SELECT conversation_id, contact_id, opened_at, closed_at FROM conversations "
                       "WHERE status = 'closed'"):
        for assignee, start, end, cause in intervals[contact]:
            starts_in_time = start < closed or (start == closed and cause == "event")
            if assignee is not None and starts_in_time and (end is None or end > opened):
                pairs.add((conversation, assignee))
    return pairs


def test_conversation_assignees_follow_the_rule(warehouse):
    table = rows(warehouse, "SELECT conversation_id, assignee_id FROM conversation_assignees")
    expected = assigned_by_rule(warehouse)
    assert len(expected) > 100, "the sample should assign users in many conversations"
    assert len(table) == len(set(table)), "a (conversation, assignee) pair appears twice"
    assert set(table) == expected


def test_conversation_assignees_carry_the_close_time(warehouse):
    mismatched = rows(warehouse, """
        SELECT count(*) FROM conversation_assignees a JOIN conversations c USING (conversation_id)
        WHERE c.status <> 'closed' OR c.closed_at IS DISTINCT FROM a.closed_at""")
    assert mismatched == [(0,)]


@pytest.mark.parametrize("tz", [TIMEZONE, "America/New_York", "Asia/Kathmandu", "Australia/Lord_Howe"])
def test_message_slots_add_up_to_local_days(warehouse, tz):
    direct = rows(warehouse, """
        SELECT timezone(?, occurred_at)::DATE AS day, user_id, count(*) FROM events
        WHERE event_type = 'message.sent' AND source = 'user' AND user_id IS NOT NULL
        GROUP BY ALL ORDER BY ALL""", [tz])
    from_slots = rows(warehouse, """
        SELECT timezone(?, slot_start)::DATE AS day, user_id, sum(messages_sent)::BIGINT FROM user_messages_15min
        GROUP BY ALL ORDER BY ALL""", [tz])
    assert len(direct) > 20
    assert from_slots == direct


def test_message_slots_are_quarter_hours(warehouse):
    assert rows(warehouse, "SELECT count(*) FROM user_messages_15min WHERE epoch(slot_start) % 900 <> 0") == [(0,)]


@pytest.mark.parametrize("filters", [
    Filters(),
    Filters(preset="last_7_days"),
    Filters(date_from=date.today() - timedelta(days=10), date_to=date.today() - timedelta(days=3)),
    Filters(preset="last_14_days", category=("Billing",)),
    Filters(preset="last_30_days", closed_by_source=("user",), channel=("ch_whatsapp_01", "ch_messenger_01")),
    Filters(date_to=date.today() - timedelta(days=4)),
    Filters(date_from=date.today() - timedelta(days=12), closed_by_user=("u_mei", "u_omar")),
])
def test_users_report_matches_a_direct_count(warehouse, filters):
    wh = Warehouse(warehouse)
    today = date.today()
    period = resolve_period(filters, wh.timezone, today)
    start = period.start_utc if period else None
    end = period.end_utc_exclusive if period else None

    def in_period(ts) -> bool:
        return (start is None or ts >= start) and (end is None or ts < end)

    matching = {cid: (closer, contact) for cid, closed_at, category, source, channel, closer, contact in rows(
        warehouse, """
        SELECT conversation_id, closed_at, lower(category), closed_by_source, channel_id, closed_by_user_id, contact_id
        FROM conversations WHERE status = 'closed'""")
        if in_period(closed_at)
        and (not filters.category or category in {c.lower() for c in filters.category})
        and (not filters.closed_by_source or source in filters.closed_by_source)
        and (not filters.channel or channel in filters.channel)
        and (not filters.closed_by_user or closer in filters.closed_by_user)}
    wanted = set(matching)
    unique_contacts = Counter(closer for closer, _ in set(matching.values()) if closer is not None)
    assert wanted, "each case should select some conversations"
    assigned = Counter(user for conversation, user in assigned_by_rule(warehouse) if conversation in wanted)
    sent = Counter(user for user, at in rows(warehouse, """
        SELECT user_id, occurred_at FROM events
        WHERE event_type = 'message.sent' AND source = 'user' AND user_id IS NOT NULL""") if in_period(at))

    report = users_report(wh, filters, today)
    got_assigned = {r["user_id"]: r["assigned_conversations"] for r in report.iter_rows(named=True)}
    got_sent = {r["user_id"]: r["messages_sent"] for r in report.iter_rows(named=True)}
    assert {u: n for u, n in got_assigned.items() if n} == dict(assigned)
    assert {u: n for u, n in got_sent.items() if n} == dict(sent)
    got_unique = {r["user_id"]: r["unique_contacts_closed"] for r in report.iter_rows(named=True)}
    assert {u: n for u, n in got_unique.items() if n} == dict(unique_contacts)
    assert sum(assigned.values()) > 0 and sum(sent.values()) > 0
