"""Every operator, null semantics, case-insensitivity, AND vs OR; vectorized over a frame and
through the replay."""

from __future__ import annotations

import duckdb
import polars as pl
import pytest

from closeconv.workflows import parse_workflow_text, replay_workflows
from closeconv.workflows.conditions import conditions_expr, rule_expr
from closeconv.workflows.models import Conditions, Rule
from helpers.events import ev, make_events_table

# category values: "Billing", "billing issue", "SALES", null, "" (blank), "  " (spaces)
FRAME = pl.DataFrame({"category": ["Billing", "billing issue", "SALES", None, "", "  "]}, schema={"category": pl.String})


@pytest.mark.parametrize(
    ("operator", "value", "expected"),
    [
        ("is_equal_to", "billing", [True, False, False, False, False, False]),
        ("is_equal_to", "BILLING", [True, False, False, False, False, False]),
        ("is_not_equal_to", "billing", [False, True, True, True, True, True]),  # null -> true
        ("is_one_of", ("billing", "sales"), [True, False, True, False, False, False]),
        ("is_not_one_of", ("billing", "sales"), [False, True, False, True, True, True]),  # null -> true
        ("contains", "BILL", [True, True, False, False, False, False]),  # null -> false
        ("does_not_contain", "bill", [False, False, True, True, True, True]),  # null -> true
        ("contains", ".*", [False, False, False, False, False, False]),  # literal, not a pattern
        ("is_present", None, [True, True, True, False, False, False]),  # blank = not present
        ("is_not_present", None, [False, False, False, True, True, True]),
    ],
)
def test_operator_semantics(operator, value, expected):
    rule = Rule(field="category", operator=operator, value=value)
    got = FRAME.select(rule_expr(rule, pl.col("category")).alias("x")).get_column("x").to_list()
    assert got == expected
    assert None not in got  # never null: AND / OR stay two-valued


def test_all_vs_any_and_empty_rules():
    df = pl.DataFrame(
        {"source": ["user", "user", "api", None], "category": ["Billing", "Sales", "Billing", None]},
        schema={"source": pl.String, "category": pl.String},
    )
    rules = (Rule(field="source", operator="is_equal_to", value="user"), Rule(field="category", operator="is_equal_to", value="billing"))
    all_ = df.select(conditions_expr(Conditions(match="all", rules=rules)).alias("x")).get_column("x").to_list()
    any_ = df.select(conditions_expr(Conditions(match="any", rules=rules)).alias("x")).get_column("x").to_list()
    assert all_ == [True, False, False, False]
    assert any_ == [True, True, True, False]
    assert df.with_columns(conditions_expr(Conditions()).alias("x")).get_column("x").to_list() == [True] * 4


def test_assignee_expression_is_substitutable():
    df = pl.DataFrame({"r": ["u1", None]}, schema={"r": pl.String})
    cond = Conditions(rules=(Rule(field="assignee_id", operator="is_not_equal_to", value="U1"),))
    assert df.select(conditions_expr(cond, pl.col("r")).alias("x")).get_column("x").to_list() == [False, True]


def _wf(rules_yaml: str, match: str = "all"):
    w, problems = parse_workflow_text(f"""
id: w
name: w
enabled: true
trigger:
  type: conversation.closed
  conditions:
    match: {match}
    rules:
{rules_yaml}
steps: [{{id: s, type: assign_to, action: unassign}}]
""")
    assert not problems, problems
    return w


CLOSES = [
    # contact, source, user, team, channel, category, summary
    ("c1", "user", "u1", "t1", "wa", "Billing", "Refund issued"),
    ("c2", "user", "u2", "t2", "fb", "Sales", None),
    ("c3", "api", None, None, "wa", None, "auto-closed by CRM"),
    ("c4", "auto_close", None, None, None, "billing", ""),
]


def _replay_matches(wf) -> list[str]:
    con = duckdb.connect()
    con.sql("SET TimeZone='UTC'")
    events = []
    for c, src, user, team, chan, cat, summ in CLOSES:
        events += [
            ev("assign", "08:00", c, source="user", user_id="a", assignee_id="u1" if c != "c2" else None),
            ev("recv", "09:00", c, channel_id=chan),
            ev("close", "09:10", c, source=src, user_id=user, team_id=team, channel_id=chan, category=cat, summary=summ),
        ]
    make_events_table(con, events)
    replay_workflows(con, [wf])
    return [r[0] for r in con.sql("SELECT contact_id FROM workflow_runs ORDER BY contact_id").fetchall()]


@pytest.mark.parametrize(
    ("rules", "match", "expected"),
    [
        ("      - {field: source, operator: is_equal_to, value: User}", "all", ["c1", "c2"]),
        ("      - {field: source, operator: is_not_one_of, value: [user, api]}", "all", ["c4"]),
        ("      - {field: user_id, operator: is_present}", "all", ["c1", "c2"]),
        ("      - {field: team_id, operator: is_not_present}", "all", ["c3", "c4"]),
        ("      - {field: team_id, operator: is_not_equal_to, value: t1}", "all", ["c2", "c3", "c4"]),
        ("      - {field: channel_id, operator: is_one_of, value: [WA]}", "all", ["c1", "c3"]),
        ("      - {field: category, operator: is_equal_to, value: billing}", "all", ["c1", "c4"]),
        ("      - {field: summary, operator: contains, value: REFUND}", "all", ["c1"]),
        ("      - {field: summary, operator: does_not_contain, value: crm}", "all", ["c1", "c2", "c4"]),
        ("      - {field: summary, operator: is_not_present}", "all", ["c2", "c4"]),
        ("      - {field: assignee_id, operator: is_present}", "all", ["c1", "c3", "c4"]),
        ("      - {field: assignee_id, operator: is_not_one_of, value: [u1]}", "all", ["c2"]),
        (
            "      - {field: source, operator: is_equal_to, value: user}\n"
            "      - {field: category, operator: is_equal_to, value: billing}",
            "all",
            ["c1"],
        ),
        (
            "      - {field: source, operator: is_equal_to, value: user}\n"
            "      - {field: category, operator: is_equal_to, value: billing}",
            "any",
            ["c1", "c2", "c4"],
        ),
    ],
)
def test_conditions_through_replay(rules, match, expected):
    assert _replay_matches(_wf(rules, match)) == expected
