"""Given conversation ids never merge two conversations (spec §4, issue 7 point 3).

Open and close events decide the boundaries; a given id names the conversation it falls in;
a reused id stays with the first conversation; several ids in one conversation: the first by
event order names it; each event keeps the id it arrived with, and every conflict is named.
Events go through the real ingest → sessionize path.
"""

from __future__ import annotations

from closeconv import schemas
from closeconv.sessionize import CONFLICT_OUTSIDE, CONFLICT_REUSED_ID, CONFLICT_SECOND_ID
from conftest import closed, recv, sent
from helpers.events import build_tables, ev


def rows(con, sql):
    return con.sql(sql).pl().to_dicts()


def test_an_id_reused_after_a_reopen_gives_two_conversations_and_the_first_keeps_it(con):
    build_tables(con, [
        ev("recv", "09:00", conversation_id="thread-1", event_id="a1"),
        ev("close", "09:10", source="user", user_id="u1", conversation_id="thread-1", event_id="a2"),
        ev("recv", "12:00", conversation_id="thread-1", event_id="b1"),
        ev("close", "12:05", source="user", user_id="u1", conversation_id="thread-1", event_id="b2"),
    ])
    convs = rows(con, "SELECT conversation_id, resolution_time_s FROM conversations ORDER BY opened_at")
    assert len(convs) == 2
    assert convs[0] == {"conversation_id": "thread-1", "resolution_time_s": 600.0}
    assert convs[1]["conversation_id"].startswith("cv_") and convs[1]["resolution_time_s"] == 300.0
    evs = {r["event_id"]: r for r in rows(con, "SELECT * FROM events")}
    assert {evs[e]["given_conversation_id"] for e in evs} == {"thread-1"}  # nothing rewritten
    assert [evs[e]["conversation_id_conflict"] for e in ("a1", "a2", "b1", "b2")] == [
        None, None, CONFLICT_REUSED_ID, CONFLICT_REUSED_ID]
    assert schemas.run_table_check(con, schemas.CHECKS_BY_NAME[schemas.CONVERSATIONS_WITHIN_ONE_SESSION]).passed


def test_a_second_id_inside_a_conversation_does_not_rename_it(con):
    build_tables(con, [
        ev("recv", "09:00", conversation_id="first", event_id="a1"),
        ev("sent", "09:01", source="user", user_id="u1", conversation_id="second", event_id="a2"),
        ev("sent", "09:02", source="user", user_id="u1", event_id="a3"),
        ev("close", "09:10", source="user", user_id="u1", conversation_id="second", event_id="a4"),
    ])
    assert rows(con, "SELECT conversation_id FROM conversations") == [{"conversation_id": "first"}]
    got = rows(con, "SELECT event_id, conversation_id, given_conversation_id, conversation_id_conflict "
                    "FROM events ORDER BY event_order")
    assert got == [
        {"event_id": "a1", "conversation_id": "first", "given_conversation_id": "first", "conversation_id_conflict": None},
        {"event_id": "a2", "conversation_id": "first", "given_conversation_id": "second",
         "conversation_id_conflict": CONFLICT_SECOND_ID},
        {"event_id": "a3", "conversation_id": "first", "given_conversation_id": None, "conversation_id_conflict": None},
        {"event_id": "a4", "conversation_id": "first", "given_conversation_id": "second",
         "conversation_id_conflict": CONFLICT_SECOND_ID},
    ]


def test_an_id_given_on_the_sessions_of_two_contacts_is_kept_by_the_first(con):
    build_tables(con, [
        ev("recv", "09:00", "c1", conversation_id="shared"), ev("recv", "09:05", "c2", conversation_id="shared"),
        ev("close", "09:10", "c2", source="user", user_id="u1"),
    ])
    got = rows(con, "SELECT contact_id, conversation_id FROM conversations ORDER BY contact_id")
    assert got[0] == {"contact_id": "c1", "conversation_id": "shared"}
    assert got[1]["conversation_id"].startswith("cv_")


def test_the_first_in_time_keeps_a_shared_id_not_the_lower_event_order(con):
    # event_order is a position within the contact: c1's session starts at its 3rd event,
    # c2's at its 1st, later in time. Time decides (occurred_at, kind rank, event_id).
    build_tables(con, [
        ev("recv", "08:00", "c1", event_id="c1-a"), ev("close", "08:10", "c1", source="user", user_id="u1", event_id="c1-b"),
        ev("recv", "09:00", "c1", conversation_id="shared", event_id="c1-c"),
        ev("recv", "09:05", "c2", conversation_id="shared", event_id="c2-a"),
    ])
    got = rows(con, "SELECT contact_id, min(event_order) AS event_order, conversation_id FROM events "
                    "WHERE conversation_id IS NOT NULL GROUP BY ALL ORDER BY contact_id, event_order")
    assert [(r["contact_id"], r["event_order"]) for r in got] == [("c1", 1), ("c1", 3), ("c2", 1)]
    assert got[1]["conversation_id"] == "shared"
    assert got[2]["conversation_id"].startswith("cv_")


def test_a_shared_id_goes_to_the_first_session_in_time_not_the_first_contact_id(con):
    # `events` is built in contact order; sessions of different contacts are still compared by
    # their first events' (occurred_at, kind rank, event_id). Each pair's later contact id wins.
    build_tables(con, [
        ev("recv", "09:05", "a1", conversation_id="by-time", event_id="t1"),
        ev("recv", "09:00", "z1", conversation_id="by-time", event_id="t2"),
        ev("recv", "10:00", "a2", conversation_id="by-kind", event_id="k1"),  # received ranks after opened
        ev("open", "10:00", "z2", source="user", user_id="u1", conversation_id="by-kind", event_id="k2"),
        ev("recv", "11:00", "a3", conversation_id="by-id", event_id="i2"),  # same instant and kind
        ev("recv", "11:00", "z3", conversation_id="by-id", event_id="i1"),
    ])
    got = rows(con, "SELECT contact_id, conversation_id FROM conversations ORDER BY contact_id")
    assert {r["conversation_id"]: r["contact_id"] for r in got if not r["conversation_id"].startswith("cv_")} == {
        "by-time": "z1", "by-kind": "z2", "by-id": "z3"}
    assert sum(r["conversation_id"].startswith("cv_") for r in got) == 3


def test_an_id_on_an_event_outside_any_conversation_is_kept_and_named(con):
    build_tables(con, [ev("sent", "08:00", source="broadcast", conversation_id="stale", event_id="bc"),
                       ev("recv", "09:00")])
    (bc,) = rows(con, "SELECT * FROM events WHERE event_id = 'bc'")
    assert (bc["conversation_id"], bc["given_conversation_id"], bc["conversation_id_conflict"]) == (
        None, "stale", CONFLICT_OUTSIDE)


def test_conflicts_are_counted_in_the_run_and_published(closeconv_env):
    closeconv_env.write_jsonl("events.jsonl", [
        recv("09:00", conversation_id="t1"), closed("09:10", user="u1", conversation_id="t1"),
        recv("12:00", conversation_id="t1"), sent("12:01", user="u1", conversation_id="t2"),
        closed("12:05", user="u1", conversation_id="t1"),
    ])
    from closeconv.commands.run import run_pipeline

    result = run_pipeline(closeconv_env.settings(), quiet=True)
    assert result.success
    meta = [m for m in result.get_asset_materialization_events() if m.asset_key.to_user_string() == "events"]
    counts = meta[0].step_materialization_data.materialization.metadata["conversation_id_conflicts"].value
    assert counts == {CONFLICT_REUSED_ID: 2, CONFLICT_SECOND_ID: 1}
    wh = closeconv_env.run()
    assert wh.scalar("SELECT count(*) FROM conversations") == 2
    assert wh.scalar("SELECT count(conversation_id_conflict) FROM events") == 3


def test_the_run_summary_prints_the_conflicts(closeconv_env):
    from click.testing import CliRunner

    from closeconv.cli import main

    closeconv_env.write_jsonl("events.jsonl", [
        recv("09:00", conversation_id="t1"), closed("09:10", user="u1", conversation_id="t1"),
        recv("12:00", conversation_id="t1"), closed("12:05", user="u1"),
    ])
    env = closeconv_env
    env.workflows.mkdir()
    result = CliRunner().invoke(main, ["run", "--quiet", "--landing", str(env.landing), "--warehouse", str(env.warehouse_path),
                                       "--workflows", str(env.workflows), "--reference", str(env.reference)])
    assert result.exit_code == 0, result.output
    line = next(ln for ln in result.output.splitlines() if ln.strip().startswith("conversation ids"))
    assert line.split()[2] == "1" and "events.conversation_id_conflict" in line
