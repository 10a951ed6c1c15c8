"""The blocking checks of every published table (closeconv.schemas), run as SQL on real tables.

Each check passes on tables the pipeline built, and fails, naming the problem, on a table
broken in the one way it guards against.
"""

from __future__ import annotations

import pytest

from closeconv import schemas
from closeconv.workflows import parse_workflow_text
from helpers.events import build_tables, ev

TEMPLATE = """
id: unassign-after-close
name: Unassign after close
enabled: true
trigger: {type: conversation.closed, conditions: {match: all, rules: [{field: source, operator: is_equal_to, value: user}]}}
steps: [{id: unassign, type: assign_to, action: unassign}]
"""


def scenario() -> list:
    return [
        ev("recv", "09:00", "c1"), ev("assign", "09:01", "c1", source="user", assignee_id="u1"),
        ev("sent", "09:02", "c1", source="user", user_id="u1"),
        ev("close", "09:10", "c1", source="user", user_id="u1", category="billing"),
        ev("recv", "23:30", "c1"), ev("close", "23:50", "c1", source="auto_close"),
        ev("open", "10:00", "c2", source="user", user_id="u2"), ev("recv", "10:01", "c2"),
        ev("assign", "10:02", "c2", source="user", assignee_id="u2"),
    ]


@pytest.fixture
def built(con):
    build_tables(con, scenario(), [parse_workflow_text(TEMPLATE, "t.yaml")[0]], tz="America/New_York")
    return con


def outcome(con, name):
    return schemas.run_table_check(con, schemas.CHECKS_BY_NAME[name])


def test_every_published_table_has_a_check():
    guarded = {c.table for c in schemas.TABLE_CHECKS}
    assert {"events", "rejected_events", "conversations", "workflow_runs", "workflow_actions", "assignments",
            "daily_conversation_metrics", "conversation_assignees", "user_messages_15min", "user_closes"} <= guarded


def test_all_checks_pass_on_tables_the_pipeline_built(built):
    assert built.sql("SELECT count(*) FROM workflow_actions").fetchall() == [(1,)]  # the scenario exercises replay
    for check in schemas.TABLE_CHECKS:
        got = schemas.run_table_check(built, check)
        assert got.passed, (check.name, got.examples)


BREAKAGES = [
    (schemas.EVENTS_MATCH_CONTRACT, "UPDATE events SET source = 'broadcast' WHERE event_type = 'conversation.closed'",
     "not allowed for conversation.closed"),
    (schemas.EVENTS_MATCH_CONTRACT, "UPDATE events SET given_conversation_id = 'x' WHERE event_type = 'message.sent'",
     "conversation_id_conflict does not match"),
    # a repeated event_id (its two rows also share an event_order: found either way, by its own message too)
    (schemas.EVENTS_MATCH_CONTRACT, "INSERT INTO events SELECT * FROM events WHERE event_id = (SELECT min(event_id) FROM events)",
     "appears 2 times"),
    # event_order is a position within the contact: unique per (contact_id, event_order)
    (schemas.EVENTS_MATCH_CONTRACT, "UPDATE events SET event_order = 1 WHERE contact_id = 'c1'",
     "of contact c1 is shared by"),
    (schemas.RECORDS_ACCOUNTED_FOR, "DELETE FROM events WHERE event_type = 'message.sent'", "records read"),
    (schemas.CONVERSATIONS_VALID, "UPDATE conversations SET resolution_time_s = -1 WHERE status = 'closed'",
     "negative duration"),
    (schemas.CONVERSATIONS_VALID, "UPDATE conversations SET frt_bucket_order = 7 WHERE frt_bucket IS NOT NULL",
     "frt_bucket_order does not match"),
    (schemas.CONVERSATIONS_COVER_EVENTS, "DELETE FROM conversations WHERE contact_id = 'c2'", "has no row"),
    # What a given id reused after a reopen did before: both sessions under one id.
    (schemas.CONVERSATIONS_WITHIN_ONE_SESSION,
     "UPDATE events SET conversation_id = 'thread-1' WHERE contact_id = 'c1' AND conversation_id IS NOT NULL",
     "is closed 2 times"),
    (schemas.CONVERSATIONS_WITHIN_ONE_SESSION,
     "UPDATE events SET conversation_id = (SELECT min(conversation_id) FROM events WHERE contact_id = 'c2') "
     "WHERE event_type = 'conversation.closed' AND source = 'auto_close'", "spans 2 contacts"),
    (schemas.WORKFLOW_RUNS_VALID, "UPDATE workflow_runs SET skip_reason = NULL, outcome = 'skipped'",
     "skip_reason does not match"),
    (schemas.WORKFLOW_RUNS_VALID, "UPDATE workflow_runs SET trigger_event_id = 'nope'", "is not in events"),
    # A trigger that is an event of another contact: found outside the run's contact, for the message.
    (schemas.WORKFLOW_RUNS_VALID, "UPDATE workflow_runs SET contact_id = 'c2' WHERE contact_id = 'c1'",
     "contact, conversation or time differ"),
    (schemas.WORKFLOW_RUNS_VALID, "UPDATE workflow_runs SET triggered_at = triggered_at + INTERVAL 1 SECOND",
     "contact, conversation or time differ"),
    (schemas.WORKFLOW_ACTIONS_VALID, "UPDATE workflow_actions SET to_assignee_id = 'u9'", "unassign to u9"),
    (schemas.WORKFLOW_ACTIONS_VALID, "DELETE FROM workflow_actions", "says 1 actions"),
    (schemas.ASSIGNMENTS_ORDERED_WITHOUT_OVERLAP,
     "UPDATE assignments SET valid_to = valid_to + INTERVAL 1 MINUTE WHERE valid_to IS NOT NULL",
     "overlaps or leaves a gap"),
    (schemas.ASSIGNMENTS_ORDERED_WITHOUT_OVERLAP, "UPDATE assignments SET seq = seq + 1 WHERE seq > 1",
     "seq is not 1, 2"),
    (schemas.ASSIGNMENTS_ORDERED_WITHOUT_OVERLAP,
     "UPDATE assignments SET timeline_order = -timeline_order WHERE seq > 1", "out of timeline order"),
    (schemas.DAILY_METRICS_ADD_UP,
     "UPDATE daily_conversation_metrics SET conversations_closed = conversations_closed + 1 WHERE conversations_closed > 0",
     "closed"),
    (schemas.CONVERSATION_ASSIGNEES_VALID, "UPDATE conversation_assignees SET closed_at = closed_at + INTERVAL 1 SECOND",
     "closed_at does not match"),
    (schemas.CONVERSATION_ASSIGNEES_VALID, "INSERT INTO conversation_assignees SELECT * FROM conversation_assignees",
     "2 times"),
    (schemas.USER_MESSAGES_ADD_UP, "DELETE FROM user_messages_15min", "events have 1"),
    (schemas.USER_MESSAGES_ADD_UP, "UPDATE user_messages_15min SET slot_start = slot_start + INTERVAL 1 MINUTE",
     "not on a quarter hour"),
    (schemas.USER_CLOSES_VALID, "DELETE FROM user_closes", "user_closes has 0 closes"),
    (schemas.USER_CLOSES_VALID, "UPDATE user_closes SET previous_close_of_contact_at = closed_at + INTERVAL 1 HOUR",
     "previous close after it"),
]


@pytest.mark.parametrize(("name", "breakage", "problem"), BREAKAGES, ids=[f"{b[0]}-{i}" for i, b in enumerate(BREAKAGES)])
def test_a_check_fails_on_the_breakage_it_guards_against(built, name, breakage, problem):
    assert outcome(built, name).passed
    built.sql(breakage)
    got = outcome(built, name)
    assert not got.passed
    assert got.violations >= 1
    assert any(problem in e for e in got.examples), got.examples


def test_daily_check_uses_the_tables_timezone(built):
    # 23:50 UTC on 2 March is 18:50 in New York: the same day there; recomputing in UTC is not
    # what the table holds, so a table built in another timezone than it says fails.
    assert outcome(built, schemas.DAILY_METRICS_ADD_UP).passed
    built.sql("UPDATE daily_conversation_metrics SET timezone = 'Asia/Tokyo'")
    assert not outcome(built, schemas.DAILY_METRICS_ADD_UP).passed


def _changed(con, contacts: list[str]) -> str:
    con.sql("CREATE OR REPLACE TEMP TABLE changed_contacts_for_checks (contact_id VARCHAR)")
    for contact in contacts:
        con.execute("INSERT INTO changed_contacts_for_checks VALUES (?)", [contact])
    return "changed_contacts_for_checks"


@pytest.mark.parametrize(("name", "breakage", "problem"), BREAKAGES, ids=[f"{b[0]}-{i}" for i, b in enumerate(BREAKAGES)])
def test_a_check_narrowed_to_the_changed_contacts_finds_what_the_whole_check_finds(built, name, breakage, problem):
    built.sql(breakage)
    check = schemas.CHECKS_BY_NAME[name]
    assert schemas.run_table_check(built, check, _changed(built, ["c1", "c2"])) == schemas.run_table_check(built, check)


def test_a_narrowed_check_reads_the_changed_contacts_rows_and_those_sharing_their_ids(built):
    check = schemas.CHECKS_BY_NAME[schemas.EVENTS_MATCH_CONTRACT]
    built.sql("UPDATE events SET event_order = 1 WHERE contact_id = 'c1'")  # a rule within one contact
    assert schemas.run_table_check(built, check, _changed(built, ["c2"])).passed  # c1 is not journaled
    assert schemas.run_table_check(built, check, _changed(built, ["c1"])) == schemas.run_table_check(built, check)
    assert not schemas.run_table_check(built, check).passed

    # A duplicate event_id across contacts is found from either side.
    built.sql("UPDATE events SET event_order = row_number FROM (SELECT event_id AS id, row_number() OVER "
              "(PARTITION BY contact_id ORDER BY occurred_at, event_id) AS row_number FROM events) WHERE event_id = id")
    built.sql("UPDATE events SET event_id = (SELECT min(event_id) FROM events WHERE contact_id = 'c1') "
              "WHERE event_id = (SELECT min(event_id) FROM events WHERE contact_id = 'c2')")
    for contacts in (["c1"], ["c2"]):
        got = schemas.run_table_check(built, check, _changed(built, contacts))
        assert any("appears 2 times" in e for e in got.examples), (contacts, got.examples)


def test_rows_of_no_contact_are_in_every_narrowed_check(built):
    check = schemas.CHECKS_BY_NAME[schemas.EVENTS_MATCH_CONTRACT]
    built.sql("UPDATE events SET contact_id = NULL WHERE event_id = (SELECT min(event_id) FROM events)")
    got = schemas.run_table_check(built, check, _changed(built, []))
    assert any("empty contact_id" in e for e in got.examples), got.examples


@pytest.mark.parametrize(("name", "breakage", "problem"), BREAKAGES, ids=[f"{b[0]}-{i}" for i, b in enumerate(BREAKAGES)])
def test_an_empty_scope_is_spelled_false_and_finds_what_the_in_over_it_finds(built, name, breakage, problem):
    """With no changed contact the id placeholders read `false` (a planning shortcut): the same
    violations as the `IN` over the empty table, rows of no contact included."""
    built.sql(breakage)
    built.sql("UPDATE events SET contact_id = NULL WHERE event_id = (SELECT min(event_id) FROM events)")
    check = schemas.CHECKS_BY_NAME[name]
    empty = _changed(built, [])
    in_over_empty = check.sql.format(**schemas._rows_to_check(empty))
    (count, examples), = built.sql(
        f"SELECT count(*), list(problem ORDER BY problem)[1:{schemas.EXAMPLES_SHOWN}] FROM ({in_over_empty})").fetchall()
    got = schemas.run_table_check(built, check, empty)
    assert (got.violations, got.examples) == (count, list(examples or []))
    assert f"FROM {empty}" not in check.sql.format(**schemas._rows_to_check(empty, no_contacts=True))
