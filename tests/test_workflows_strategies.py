"""Assign-to steps: specific user, round robin, least open contacts (with cap), over timelines
whose answer is worked out by hand in the comments."""

from __future__ import annotations

import duckdb
import polars as pl
import pytest

from closeconv.contract import EVENT_KIND_RANK_SQL
from closeconv.workflows import CONVERSATION_ASSIGNEES_SQL, parse_workflow_text, replay_workflows
from closeconv.workflows.tables import SKIP_ALL_AT_CAP, SKIP_CHOSEN_IS_CURRENT, SKIP_NO_TEAM_USERS, SKIP_SAME_USER
from helpers.events import at, ev, make_events_table


def wf(text: str):
    w, problems = parse_workflow_text(text)
    assert not problems, problems
    return w


def rows(con, sql, params=None):
    return (con.sql(sql, params=params) if params else con.sql(sql)).fetchall()


def opened_workflow(action: str, extra: str = "", condition: str = "[{field: assignee_id, operator: is_not_present}]") -> str:
    return f"""
id: assign-on-open
name: assign on open
enabled: true
trigger:
  type: conversation.opened
  conditions: {{match: all, rules: {condition}}}
steps:
  - {{id: assign, type: assign_to, action: {action}{extra}}}
"""


USERS = pl.DataFrame(
    {
        "user_id": ["u1", "u2", "u3", "u9"],
        "name": ["A", "B", "C", "Z"],
        "email": ["a@x", "b@x", "c@x", "z@x"],
        "team_id": ["T1", "T1", "t1", "t2"],
        "role": ["agent"] * 4,
    }
)


def test_round_robin_over_team_from_reference_users(con):
    # team t1 = u1, u2, u3 (team ids compare case-insensitively); u9 is in t2.
    make_events_table(con, [ev("recv", f"09:0{i}", f"c{i}") for i in range(1, 6)])
    replay_workflows(con, [wf(opened_workflow("round_robin", ", team_id: t1"))], USERS)
    got = rows(con, "SELECT contact_id, from_assignee_id, to_assignee_id, action FROM workflow_actions ORDER BY effective_at")
    assert got == [
        ("c1", None, "u1", "assign"),
        ("c2", None, "u2", "assign"),
        ("c3", None, "u3", "assign"),
        ("c4", None, "u1", "assign"),
        ("c5", None, "u2", "assign"),
    ]
    assert rows(con, "SELECT DISTINCT strategy FROM workflow_actions") == [("round_robin",)]
    # the replayed assignment is the conversation's first assignee
    got = dict(rows(con, f"SELECT conversation_id, first_assignee_id FROM ({CONVERSATION_ASSIGNEES_SQL})"))
    assert sorted(got.values()) == ["u1", "u1", "u2", "u2", "u3"]


def test_round_robin_membership_from_events_grows_over_time(con):
    # Without users.csv, membership is the team_id seen with each user on events, from then on.
    events = [ev("sent", f"07:0{i}", "c0", source="user", user_id=u, team_id="t1") for i, u in enumerate(["u2", "u1", "u3"])]
    events += [ev("sent", "07:05", "c0", source="user", user_id="u8", team_id="t2")]
    events += [ev("recv", f"09:0{i}", f"c{i}") for i in range(1, 5)]  # u1 u2 u3 u1
    events += [ev("sent", "09:30", "cx", source="user", user_id="u4", team_id="T1")]  # u4 joins t1
    events += [ev("recv", f"09:4{i}", f"d{i}") for i in range(1, 5)]  # u2 u3 u4 u1
    make_events_table(con, events)
    replay_workflows(con, [wf(opened_workflow("round_robin", ", team_id: t1"))])
    got = [r[0] for r in rows(con, "SELECT to_assignee_id FROM workflow_actions ORDER BY effective_at")]
    assert got == ["u1", "u2", "u3", "u1", "u2", "u3", "u4", "u1"]


def test_round_robin_unknown_team_is_skipped_with_reason(con):
    make_events_table(con, [ev("recv", "09:00", "c1")])
    replay_workflows(con, [wf(opened_workflow("round_robin", ", team_id: nobody"))], USERS)
    assert rows(con, "SELECT outcome, skip_reason FROM workflow_runs") == [("skipped", "no users in the team 'nobody'")]
    assert SKIP_NO_TEAM_USERS.format(team="nobody") == "no users in the team 'nobody'"


def test_round_robin_workspace_chosen_is_current(con):
    # Workspace = u1, u2, u3, u9. c1 already has u1 when it opens; the rotation picks u1 first,
    # which is the current assignee: skipped, and the rotation moves on.
    make_events_table(
        con,
        [
            ev("assign", "08:00", "c1", source="user", user_id="a", assignee_id="u1"),
            ev("recv", "09:00", "c1"),
            ev("recv", "09:01", "c2"),
        ],
    )
    replay_workflows(con, [wf(opened_workflow("round_robin", condition="[]"))], USERS)
    assert rows(con, "SELECT contact_id, outcome, skip_reason FROM workflow_runs ORDER BY triggered_at") == [
        ("c1", "skipped", SKIP_CHOSEN_IS_CURRENT),
        ("c2", "completed", None),
    ]
    assert rows(con, "SELECT to_assignee_id FROM workflow_actions") == [("u2",)]


def test_least_open_contacts_with_cap_follows_replayed_and_recorded_state(con):
    users = USERS.filter(pl.col("user_id").is_in(["u1", "u2"]))
    events = [
        ev("recv", "08:00", "c9"),  # LOC: u1 0, u2 0 -> u1 (replayed) ...
        ev("assign", "08:00:30", "c9", source="user", user_id="a", assignee_id="u2"),  # ... recorded u2 overrides
        ev("recv", "09:00", "c1"),  # u1 0, u2 1 (c9)       -> u1
        ev("recv", "09:01", "c2"),  # u1 1, u2 1  tie by id -> u1
        ev("recv", "09:02", "c3"),  # u1 2 (cap), u2 1      -> u2
        ev("recv", "09:03", "c4"),  # u1 2, u2 2: all at cap -> skipped
        ev("close", "09:04", "c1", source="user", user_id="u1"),  # c1 no longer open: u1 1
        ev("recv", "09:05", "c5"),  # u1 1, u2 2            -> u1
        ev("recv", "09:06", "c1"),  # c1 reopens, still u1 (replayed), no run: u1 3
        ev("recv", "09:07", "c6"),  # u1 3, u2 2: all at cap -> skipped
        ev("assign", "09:08", "c9", source="user", user_id="a", assignee_id=None),  # u2 1
        ev("recv", "09:09", "c7"),  # u1 3, u2 1            -> u2
    ]
    make_events_table(con, events)
    workflow = wf(opened_workflow("least_open_contacts", ", team_id: t1, max_open_contacts: 2"))
    stats = replay_workflows(con, [workflow], users)
    assert stats.engine == "sequential"
    got = rows(
        con,
        """SELECT r.contact_id, strftime(r.triggered_at, '%H:%M'), r.outcome, r.skip_reason, a.to_assignee_id
           FROM workflow_runs r LEFT JOIN workflow_actions a USING (run_id) ORDER BY r.triggered_at""",
    )
    assert got == [
        ("c9", "08:00", "completed", None, "u1"),
        ("c1", "09:00", "completed", None, "u1"),
        ("c2", "09:01", "completed", None, "u1"),
        ("c3", "09:02", "completed", None, "u2"),
        ("c4", "09:03", "skipped", SKIP_ALL_AT_CAP, None),
        ("c5", "09:05", "completed", None, "u1"),
        ("c6", "09:07", "skipped", SKIP_ALL_AT_CAP, None),
        ("c7", "09:09", "completed", None, "u2"),
    ]
    assert stats.skipped_by_reason == {SKIP_ALL_AT_CAP: 2}


def test_least_open_contacts_after_unassign_on_close(con):
    # Two workflows: unassign on user close, least open contacts on open. The replayed
    # unassignment of c1 at its close frees u1, although the platform recorded nothing.
    users = USERS.filter(pl.col("user_id").is_in(["u1", "u2"]))
    unassign = wf("""
id: unassign-after-close
name: unassign
enabled: true
trigger:
  type: conversation.closed
  conditions: {match: all, rules: [{field: source, operator: is_equal_to, value: user}]}
steps: [{id: unassign, type: assign_to, action: unassign}]
""")
    events = [
        ev("recv", "09:00", "c1"),  # u1 0, u2 0 -> u1
        ev("recv", "09:01", "c2"),  # u1 1, u2 0 -> u2
        ev("close", "09:02", "c1", source="user", user_id="u1"),  # unassign c1
        ev("recv", "09:03", "c1"),  # c1 reopens unassigned: u1 0, u2 1 -> u1
        ev("recv", "09:04", "c3"),  # u1 1, u2 1 -> u1
    ]
    make_events_table(con, events)
    replay_workflows(con, [unassign, wf(opened_workflow("least_open_contacts", ", team_id: t1"))], users)
    got = rows(con, "SELECT contact_id, action, from_assignee_id, to_assignee_id FROM workflow_actions ORDER BY effective_at")
    assert got == [
        ("c1", "assign", None, "u1"),
        ("c2", "assign", None, "u2"),
        ("c1", "unassign", "u1", None),
        ("c1", "assign", None, "u1"),
        ("c3", "assign", None, "u1"),
    ]
    # no loops: the assignments made by workflows triggered nothing (one run per trigger event)
    assert rows(con, "SELECT count(*), count(DISTINCT trigger_event_id) FROM workflow_runs") == [(5, 5)]


def test_assign_to_user_and_multi_step_reconciliation(con):
    workflow = wf("""
id: hand-over
name: hand over to u5
enabled: true
trigger:
  type: conversation.closed
steps:
  - {id: drop, type: assign_to, action: unassign}
  - {id: give, type: assign_to, action: user, user_id: u5}
""")
    events = []
    for c in ("c1", "c2", "c3"):
        events += [
            ev("assign", "08:00", c, source="user", user_id="a", assignee_id="u1"),
            ev("recv", "09:00", c),
            ev("close", "09:10", c, source="user", user_id="u1"),
        ]
    events += [
        # c1: the platform recorded both changes -> both reconciled
        ev("assign", "09:10:01", "c1", source="workflow", assignee_id=None),
        ev("assign", "09:10:02", "c1", source="workflow", assignee_id="u5"),
        # c2: only the final assignment was recorded -> the second action is reconciled
        ev("assign", "09:10:01", "c2", source="workflow", assignee_id="u5"),
        # c3: nothing recorded
    ]
    make_events_table(con, events)
    stats = replay_workflows(con, [workflow])
    got = rows(
        con,
        "SELECT contact_id, step_id, action, from_assignee_id, to_assignee_id, reconciled_event_id IS NOT NULL "
        "FROM workflow_actions ORDER BY contact_id, step_index",
    )
    assert got == [
        ("c1", "drop", "unassign", "u1", None, True),
        ("c1", "give", "assign", None, "u5", True),
        ("c2", "drop", "unassign", "u1", None, False),
        ("c2", "give", "assign", None, "u5", True),
        ("c3", "drop", "unassign", "u1", None, False),
        ("c3", "give", "assign", None, "u5", False),
    ]
    assert stats.reconciled == 3
    # c1's timeline has each change once
    assert rows(con, "SELECT assignee_id, cause FROM assignments WHERE contact_id = 'c1' ORDER BY seq") == [
        ("u1", "event"), (None, "workflow"), ("u5", "workflow"),
    ]
    # both actions of the close sit just after it in the contact's order, in step order
    close_order = rows(con, "SELECT event_order FROM events WHERE contact_id = 'c1' AND event_type = 'conversation.closed'")[0][0]
    assert rows(con, "SELECT timeline_order FROM assignments WHERE contact_id = 'c1' AND cause = 'workflow' ORDER BY seq") == [
        (close_order + 0.5,), (close_order + 0.501,),
    ]
    assert rows(con, "SELECT trigger_action_seq FROM workflow_actions WHERE contact_id = 'c1' ORDER BY step_index") == [(1,), (2,)]
    # an unassignment followed by an assignment in the same run expects the contact assigned: no drift
    assert rows(con, "SELECT count(*) FROM workflow_drift") == [(0,)]


def test_assign_to_same_user_is_skipped(con):
    workflow = wf("""
id: to-u1
name: to u1
enabled: true
trigger: {type: conversation.opened}
steps: [{id: give, type: assign_to, action: user, user_id: u1}]
""")
    make_events_table(
        con,
        [ev("assign", "08:00", "c1", source="user", user_id="a", assignee_id="u1"), ev("recv", "09:00", "c1"), ev("recv", "09:00", "c2")],
    )
    replay_workflows(con, [workflow])
    assert rows(con, "SELECT contact_id, outcome, skip_reason FROM workflow_runs ORDER BY contact_id") == [
        ("c1", "skipped", SKIP_SAME_USER),
        ("c2", "completed", None),
    ]


def test_opened_trigger_reads_the_opened_by_source(con):
    # c1: explicit open by a user; c2: implicit open by the contact; c3: implicit open, then a
    # redundant conversation.opened by a user 30 s later fills the source (as sessionization does).
    workflow = wf(opened_workflow("user", ", user_id: u5", condition="[{field: source, operator: is_equal_to, value: USER}]"))
    make_events_table(
        con,
        [
            ev("open", "09:00", "c1", source="user", user_id="u1"),
            ev("recv", "09:00", "c2"),
            ev("recv", "09:00", "c3"),
            ev("open", "09:00:30", "c3", source="user", user_id="u2"),
        ],
    )
    replay_workflows(con, [workflow])
    assert rows(con, "SELECT contact_id FROM workflow_runs ORDER BY contact_id") == [("c1",), ("c3",)]
    # the run of c3 is triggered by the message that opened the conversation, at its time
    assert rows(con, "SELECT triggered_at FROM workflow_runs WHERE contact_id = 'c3'") == [(at("09:00"),)]


def test_assignee_condition_sees_replayed_assignee(con):
    # RR assigns c1 to u1 at open (replayed only). At the close, a workflow with
    # "assignee_id is_equal_to u1" must see u1 and unassign.
    rr = wf(opened_workflow("round_robin", ", team_id: t1"))
    unassign_u1 = wf("""
id: unassign-u1
name: u
enabled: true
trigger:
  type: conversation.closed
  conditions: {match: all, rules: [{field: assignee_id, operator: is_equal_to, value: u1}]}
steps: [{id: s, type: assign_to, action: unassign}]
""")
    make_events_table(con, [ev("recv", "09:00", "c1"), ev("recv", "09:01", "c2"),
                            ev("close", "09:10", "c1", source="bot"), ev("close", "09:11", "c2", source="bot")])
    replay_workflows(con, [rr, unassign_u1], USERS)
    assert rows(con, "SELECT contact_id, workflow_id, from_assignee_id, to_assignee_id FROM workflow_actions ORDER BY effective_at") == [
        ("c1", "assign-on-open", None, "u1"),
        ("c2", "assign-on-open", None, "u2"),
        ("c1", "unassign-u1", "u1", None),
    ]
    # nothing recorded: the replayed unassignment is no drift (recorded shows no assignee)
    assert rows(con, "SELECT count(*) FROM workflow_drift") == [(0,)]


def _reference_replay(con, cap: int):
    """A per-event reference simulation (slow, obviously correct) of two workflows:
    least open contacts in t1 (u1, u2, u3) with a cap on open when the contact has no
    assignee, and unassign on user close."""
    events = con.sql(
        # in the global order (event_order is a position within the contact)
        "SELECT event_order, event_type, contact_id, conversation_id, lower(source), assignee_id FROM events "
        f"ORDER BY occurred_at, {EVENT_KIND_RANK_SQL}, event_id"
    ).fetchall()
    assignee: dict[str, str | None] = {}
    open_contacts: set[str] = set()
    seen_conv: set[str] = set()
    actions = []
    for order, etype, c, conv, source, new in events:
        if etype == "contact.assignee.updated":
            assignee[c] = new or None
            continue
        opening = conv is not None and conv not in seen_conv
        if conv is not None:
            seen_conv.add(conv)
        if opening:
            open_contacts.add(c)
            if assignee.get(c) is None:
                loads = {u: sum(1 for x in open_contacts if assignee.get(x) == u) for u in ("u1", "u2", "u3")}
                eligible = [u for u in sorted(loads) if loads[u] < cap]
                if eligible:
                    chosen = min(eligible, key=lambda u: (loads[u], u))
                    actions.append((order, c, "assign", None, chosen))
                    assignee[c] = chosen
        if etype == "conversation.closed":
            open_contacts.discard(c)
            if source == "user" and assignee.get(c) is not None:
                actions.append((order, c, "unassign", assignee[c], None))
                assignee[c] = None
    return actions


@pytest.mark.parametrize("seed", [11, 12, 13])
def test_least_open_contacts_matches_a_per_event_reference(con, seed):
    import random
    from datetime import datetime, timedelta, timezone

    rng = random.Random(seed)
    base = datetime(2026, 3, 2, 8, tzinfo=timezone.utc)
    events = []
    for ci in range(25):
        c = f"c{ci:02d}"
        t = base + timedelta(seconds=rng.randint(0, 3600))
        for _ in range(rng.randint(1, 4)):
            if rng.random() < 0.3:
                events.append(ev("assign", t, c, source="user", user_id="a", assignee_id=rng.choice(["u1", "u2", "u3", None])))
            t += timedelta(seconds=rng.randint(1, 900))
            events.append(ev("recv", t, c))
            if rng.random() < 0.3:
                events.append(ev("assign", t + timedelta(seconds=rng.randint(1, 300)), c, source="user", user_id="a",
                                 assignee_id=rng.choice(["u1", "u2", None])))
            t += timedelta(seconds=rng.randint(400, 3000))
            events.append(ev("close", t, c, source=rng.choice(["user", "user", "bot"]), user_id="u1"))
            t += timedelta(seconds=rng.randint(1, 2000))
    make_events_table(con, events)
    users = USERS.filter(pl.col("user_id").is_in(["u1", "u2", "u3"]))
    unassign = wf("""
id: unassign-after-close
name: unassign
enabled: true
trigger:
  type: conversation.closed
  conditions: {match: all, rules: [{field: source, operator: is_equal_to, value: user}]}
steps: [{id: unassign, type: assign_to, action: unassign}]
""")
    loc = wf(opened_workflow("least_open_contacts", ", team_id: t1, max_open_contacts: 3"))
    replay_workflows(con, [unassign, loc], users)
    got = rows(con, "SELECT a.trigger_event_order, a.contact_id, a.action, a.from_assignee_id, a.to_assignee_id "
                    "FROM workflow_actions a JOIN events e ON e.event_id = a.trigger_event_id "
                    f"ORDER BY e.occurred_at, {EVENT_KIND_RANK_SQL}, e.event_id, a.step_index")
    expected = _reference_replay(con, cap=3)
    assert got == expected
    assert sum(1 for a in expected if a[2] == "assign") > 10
