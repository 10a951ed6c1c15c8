"""Acceptance scenarios A8–A11 and A15 (workflows) through the real pipeline.

Each scenario writes events into a landing folder, puts workflow YAML into the env's
workflows folder, runs the real Dagster job in-process (`closeconv_env.run()`, or
`closeconv run` through the CLI) and reads the published DuckDB warehouse: workflow_runs,
workflow_actions, assignments, workflow_drift and conversations. The tests compute nothing;
they compare with the expected values of /work/shared/spec/acceptance.md and docs/workflows.md.
"""

from __future__ import annotations

import hashlib
import os
from datetime import datetime, timezone

from click.testing import CliRunner

from conftest import TEMPLATE_UNASSIGN, ClosecovEnv, Warehouse, assign, at, closed, recv, sent

UTC = timezone.utc

ASSIGNMENT_COLS = "assignee_id, valid_from, valid_to, cause"

UNASSIGN_ONCE = """\
id: unassign-once
name: "Unassign after close, once per contact"
enabled: true
trigger:
  type: conversation.closed
  conditions:
    match: all
    rules:
      - {field: source, operator: is_equal_to, value: user}
settings:
  trigger_once_per_contact: true
steps:
  - {id: unassign, type: assign_to, action: unassign}
"""


def ts(hhmmss: str, day: str = "2026-03-02") -> datetime:
    return datetime.fromisoformat(at(hhmmss, day).replace("Z", "+00:00")).astimezone(UTC)


def run_with_template(env: ClosecovEnv) -> Warehouse:
    env.use_unassign_template()
    return env.run()


def a8_events(contact: str = "c1", close_source: str = "user", prefix: str = "a8") -> list[dict]:
    close_kw = {"user": "u1"} if close_source == "user" else {}
    return [
        assign("09:00", "u1", source="user", contact=contact, user_id="admin", event_id=f"{prefix}-assign"),
        recv("09:01", contact=contact, event_id=f"{prefix}-recv"),
        sent("09:02", source="user", user="u1", contact=contact, event_id=f"{prefix}-sent"),
        closed("09:10", source=close_source, contact=contact, event_id=f"{prefix}-close", **close_kw),
    ]


def assignments(wh: Warehouse, contact: str = "c1") -> list[tuple]:
    return [tuple(r.values()) for r in wh.rows(
        f"SELECT {ASSIGNMENT_COLS} FROM assignments WHERE contact_id = ? ORDER BY seq", [contact])]


def cli_flags(env: ClosecovEnv) -> list[str]:
    return ["--landing", str(env.landing), "--warehouse", str(env.warehouse_path),
            "--workflows", str(env.workflows), "--reference", str(env.reference), "--timezone", "UTC"]


def cli_run(env: ClosecovEnv):
    from closeconv.cli import main

    return CliRunner().invoke(main, ["run", "--quiet", *cli_flags(env)])


# --------------------------------------------------------------------------------------
# A8: a user close unassigns the agent


def test_a8_user_close_unassigns_the_agent(closeconv_env):
    closeconv_env.write_jsonl("a8.jsonl", a8_events())
    wh = run_with_template(closeconv_env)

    (run,) = wh.rows("SELECT * FROM workflow_runs")
    assert run["workflow_id"] == "unassign-after-close"
    assert run["outcome"] == "completed"
    assert run["skip_reason"] is None
    assert run["trigger_event_id"] == "a8-close"
    assert run["contact_id"] == "c1"
    assert run["triggered_at"] == ts("09:10")
    assert run["trigger_type"] == "conversation.closed"
    assert run["action_count"] == 1
    conv = wh.rows("SELECT * FROM conversations")
    assert len(conv) == 1
    assert run["conversation_id"] == conv[0]["conversation_id"]
    assert len(run["workflow_version"]) == 12 and len(run["run_id"]) == 20

    (action,) = wh.rows("SELECT * FROM workflow_actions")
    assert action["run_id"] == run["run_id"]
    assert action["step_id"] == "unassign"
    assert action["action"] == "unassign"
    assert action["strategy"] == "unassign"
    assert action["contact_id"] == "c1"
    assert action["from_assignee_id"] == "u1"
    assert action["to_assignee_id"] is None
    assert action["effective_at"] == ts("09:10")
    assert action["reconciled_event_id"] is None  # the platform recorded nothing

    assert assignments(wh) == [
        ("u1", ts("09:00"), ts("09:10"), "event"),
        (None, ts("09:10"), None, "workflow"),
    ]
    wf_row = wh.rows("SELECT * FROM assignments WHERE cause = 'workflow'")[0]
    assert (wf_row["run_id"], wf_row["action_id"], wf_row["trigger_event_id"]) == (
        run["run_id"], action["action_id"], "a8-close")

    c = conv[0]
    assert c["assignee_at_close"] == "u1"  # the agent keeps credit for the close
    assert c["first_assignee_id"] == "u1"
    assert c["first_assigned_at"] == ts("09:01")  # already assigned at open: the open time
    assert c["closed_by_user_id"] == "u1"

    # The pipeline run record counts what the replay wrote.
    (pr,) = wh.rows("SELECT workflow_runs, workflow_actions, workflow_drift FROM pipeline_runs")
    assert pr["workflow_runs"] == 1 and pr["workflow_actions"] == 1


# --------------------------------------------------------------------------------------
# A9: a close by a workflow or by the API does not fire the template


def test_a9_close_by_workflow_or_api_does_not_fire(closeconv_env):
    closeconv_env.write_jsonl("a9.jsonl", a8_events("c-wf", "workflow", "wf") + a8_events("c-api", "api", "api"))
    wh = run_with_template(closeconv_env)

    # Spec §6: "one row per trigger event that matched a workflow" - a non-matching close has none.
    assert wh.scalar("SELECT count(*) FROM workflow_runs") == 0
    assert wh.scalar("SELECT count(*) FROM workflow_actions") == 0
    assert wh.scalar("SELECT count(*) FROM workflow_drift") == 0
    for contact in ("c-wf", "c-api"):
        assert assignments(wh, contact) == [("u1", ts("09:00"), None, "event")]  # u1 stays assigned
    convs = {r["contact_id"]: r for r in wh.rows("SELECT * FROM conversations")}
    assert convs["c-wf"]["closed_by_source"] == "workflow"
    assert convs["c-api"]["closed_by_source"] == "api"
    for c in convs.values():
        assert c["status"] == "closed"
        assert c["assignee_at_close"] == "u1"
        assert c["first_assignee_id"] == "u1"


# --------------------------------------------------------------------------------------
# A10: no assignee: the run is skipped


def test_a10_no_assignee_run_is_skipped(closeconv_env):
    closeconv_env.write_jsonl("a10.jsonl", [
        recv("09:01", event_id="a10-recv"),
        closed("09:10", source="user", user="u1", event_id="a10-close"),
    ])
    wh = run_with_template(closeconv_env)

    (run,) = wh.rows("SELECT * FROM workflow_runs")
    assert run["outcome"] == "skipped"
    assert run["skip_reason"] == "contact has no assignee"
    assert run["trigger_event_id"] == "a10-close"
    assert run["action_count"] == 0
    assert wh.scalar("SELECT count(*) FROM workflow_actions") == 0
    assert wh.scalar("SELECT count(*) FROM assignments") == 0
    assert wh.scalar("SELECT count(*) FROM workflow_drift") == 0
    c = wh.rows("SELECT * FROM conversations")[0]
    assert c["assignee_at_close"] is None and c["first_assignee_id"] is None


# --------------------------------------------------------------------------------------
# A11: a recorded workflow update is the same change as the replayed action


def test_a11_recorded_workflow_unassignment_counted_once(closeconv_env):
    closeconv_env.write_jsonl("a11.jsonl", a8_events() + [
        assign("09:10:02", None, source="workflow", event_id="a11-recorded"),
    ])
    wh = run_with_template(closeconv_env)

    (run,) = wh.rows("SELECT * FROM workflow_runs")
    assert run["outcome"] == "completed"
    (action,) = wh.rows("SELECT * FROM workflow_actions")
    assert action["action"] == "unassign" and action["from_assignee_id"] == "u1"
    assert action["effective_at"] == ts("09:10")
    assert action["reconciled_event_id"] == "a11-recorded"

    # Once: no separate `event` row for the recorded update; the workflow row carries its id.
    assert assignments(wh) == [
        ("u1", ts("09:00"), ts("09:10"), "event"),
        (None, ts("09:10"), None, "workflow"),
    ]
    assert wh.scalar("SELECT count(*) FROM assignments WHERE event_id = 'a11-recorded'") == 1
    assert wh.scalar("SELECT event_id FROM assignments WHERE cause = 'workflow'") == "a11-recorded"
    assert wh.scalar("SELECT count(*) FROM workflow_drift") == 0
    # The recorded event itself is still in `events`.
    assert wh.scalar("SELECT count(*) FROM events WHERE event_id = 'a11-recorded'") == 1
    assert wh.rows("SELECT assignee_at_close, first_assignee_id FROM conversations") == [
        {"assignee_at_close": "u1", "first_assignee_id": "u1"}]


# --------------------------------------------------------------------------------------
# A15: trigger once per contact


def test_a15_trigger_once_per_contact(closeconv_env):
    env = closeconv_env
    env.workflows.mkdir(exist_ok=True)
    (env.workflows / "unassign-once.yaml").write_text(UNASSIGN_ONCE)
    env.write_jsonl("a15.jsonl", a8_events() + [
        # The contact is assigned again, so without the setting the second close would unassign.
        assign("10:00", "u2", source="user", user_id="admin", event_id="a15-assign2"),
        recv("11:00", event_id="a15-recv2"),
        sent("11:05", source="user", user="u2", event_id="a15-sent2"),
        closed("11:30", source="user", user="u2", event_id="a15-close2"),
    ])
    wh = env.run()

    runs = wh.rows("SELECT trigger_event_id, workflow_id, outcome, skip_reason, action_count "
                   "FROM workflow_runs ORDER BY trigger_event_order")
    assert runs == [
        {"trigger_event_id": "a8-close", "workflow_id": "unassign-once", "outcome": "completed",
         "skip_reason": None, "action_count": 1},
        {"trigger_event_id": "a15-close2", "workflow_id": "unassign-once", "outcome": "skipped",
         "skip_reason": "already triggered once for this contact", "action_count": 0},
    ]
    (action,) = wh.rows("SELECT * FROM workflow_actions")
    assert (action["trigger_event_id"], action["from_assignee_id"], action["effective_at"]) == (
        "a8-close", "u1", ts("09:10"))
    assert assignments(wh) == [
        ("u1", ts("09:00"), ts("09:10"), "event"),
        (None, ts("09:10"), ts("10:00"), "workflow"),
        ("u2", ts("10:00"), None, "event"),
    ]
    convs = wh.rows("SELECT assignee_at_close, first_assignee_id FROM conversations ORDER BY opened_at")
    assert convs == [{"assignee_at_close": "u1", "first_assignee_id": "u1"},
                     {"assignee_at_close": "u2", "first_assignee_id": "u2"}]


# --------------------------------------------------------------------------------------
# Drift: replayed unassignments that the recorded events contradict


def test_drift_lists_a_contact_the_recorded_events_keep_assigned(closeconv_env):
    """A8 as recorded: nothing shows u1 being unassigned after the close, so the replay's
    unassignment is contradicted (no reconciled update, u1 still assigned 60 s after)."""
    closeconv_env.write_jsonl("drift.jsonl", a8_events())
    closeconv_env.use_unassign_template()
    result = cli_run(closeconv_env)
    assert result.exit_code == 0, result.output
    wh = Warehouse(closeconv_env.warehouse_path)
    (d,) = wh.rows("SELECT * FROM workflow_drift")
    action_id, run_id = wh.rows("SELECT action_id, run_id FROM workflow_actions")[0].values()
    assert d["contact_id"] == "c1"
    assert d["workflow_id"] == "unassign-after-close"
    assert (d["action_id"], d["run_id"], d["trigger_event_id"]) == (action_id, run_id, "a8-close")
    assert d["expected_unassigned_at"] == ts("09:10")
    assert d["replayed_from_assignee_id"] == "u1"
    assert d["recorded_assignee_id"] == "u1"
    assert d["recorded_assignee_since"] == ts("09:00")
    assert d["recorded_assignee_until"] is None  # still assigned at the end of the data
    assert d["conversation_id"] == wh.scalar("SELECT conversation_id FROM conversations")
    assert wh.scalar("SELECT workflow_drift FROM pipeline_runs") == 1

    line = next(x for x in result.stdout.splitlines() if x.strip().startswith("workflow runs"))
    assert "1 drifted contact" in line, line


def test_drift_counts_contacts_not_rows_in_the_run_summary(closeconv_env):
    """One contact reassigned to u1 before each of two user closes, never recorded as
    unassigned: two drift rows for one contact. The summary names contacts."""
    env = closeconv_env
    env.use_unassign_template()
    env.write_jsonl("drift2.jsonl", a8_events() + [
        assign("10:00", "u1", source="user", user_id="admin", event_id="d-assign2"),
        recv("10:01", event_id="d-recv2"),
        closed("10:30", source="user", user="u1", event_id="d-close2"),
    ])
    result = cli_run(env)
    assert result.exit_code == 0, result.output
    wh = Warehouse(env.warehouse_path)
    drift = wh.rows("SELECT contact_id, trigger_event_id, recorded_assignee_since, recorded_assignee_until "
                    "FROM workflow_drift ORDER BY expected_unassigned_at")
    assert drift == [
        {"contact_id": "c1", "trigger_event_id": "a8-close", "recorded_assignee_since": ts("09:00"),
         "recorded_assignee_until": ts("10:00")},
        {"contact_id": "c1", "trigger_event_id": "d-close2", "recorded_assignee_since": ts("10:00"),
         "recorded_assignee_until": None},
    ]
    line = next(x for x in result.stdout.splitlines() if x.strip().startswith("workflow runs"))
    assert "2 actions" in line and "1 drifted contact" in line, line


def test_no_drift_when_the_recorded_events_show_the_unassignment(closeconv_env):
    """The contact was unassigned within 60 s by another source (not reconciled, as it is no
    `workflow` update), and another contact only 5 minutes after: the first is no drift, the
    second is (still assigned 60 s after the close), until the recorded unassignment."""
    env = closeconv_env
    env.write_jsonl("nodrift.jsonl", a8_events("c1", prefix="p") + [
        assign("09:10:30", None, source="user", contact="c1", user_id="u1", event_id="p-unassign"),
    ] + a8_events("c2", prefix="q") + [
        assign("09:15", None, source="workflow", contact="c2", event_id="q-late"),
    ])
    wh = run_with_template(env)
    actions = wh.rows("SELECT contact_id, reconciled_event_id FROM workflow_actions ORDER BY contact_id")
    assert actions == [{"contact_id": "c1", "reconciled_event_id": None},
                       {"contact_id": "c2", "reconciled_event_id": None}]  # q-late is after 60 s
    drift = wh.rows("SELECT contact_id, recorded_assignee_id, recorded_assignee_until FROM workflow_drift")
    assert drift == [{"contact_id": "c2", "recorded_assignee_id": "u1", "recorded_assignee_until": ts("09:15")}]
    assert assignments(wh, "c1") == [
        ("u1", ts("09:00"), ts("09:10"), "event"),
        (None, ts("09:10"), ts("09:10:30"), "workflow"),
        (None, ts("09:10:30"), None, "event"),
    ]


# --------------------------------------------------------------------------------------
# Folder handling: disabled and invalid workflows


def test_disabled_copy_of_the_template_does_nothing(closeconv_env):
    env = closeconv_env
    env.workflows.mkdir(exist_ok=True)
    text = TEMPLATE_UNASSIGN.read_text()
    assert "enabled: true" in text
    (env.workflows / "unassign-after-close.yaml").write_text(text.replace("enabled: true", "enabled: false"))
    env.write_jsonl("a8.jsonl", a8_events())
    wh = env.run()
    for table in ("workflow_runs", "workflow_actions", "workflow_drift"):
        assert wh.scalar(f"SELECT count(*) FROM {table}") == 0, table
    # The assignment timeline is exactly the recorded one.
    assert assignments(wh) == [("u1", ts("09:00"), None, "event")]
    assert wh.rows("SELECT assignee_at_close, first_assignee_id FROM conversations") == [
        {"assignee_at_close": "u1", "first_assignee_id": "u1"}]


def _snapshot(folder) -> dict[str, tuple[str, int]]:
    out = {}
    for root, _dirs, files in os.walk(folder):
        for name in files:
            p = os.path.join(root, name)
            with open(p, "rb") as fh:
                out[os.path.relpath(p, folder)] = (hashlib.sha256(fh.read()).hexdigest(), os.stat(p).st_mtime_ns)
    return out


def test_invalid_workflow_fails_the_run_with_file_and_line_and_keeps_the_warehouse(closeconv_env):
    env = closeconv_env
    env.write_jsonl("a8.jsonl", a8_events())
    env.use_unassign_template()
    first = cli_run(env)
    assert first.exit_code == 0, first.output
    wh_bytes = env.warehouse_path.read_bytes()
    wh_mtime = env.warehouse_path.stat().st_mtime_ns
    published = Warehouse(env.warehouse_path).scalar("SELECT run_id FROM pipeline_runs")

    bad = env.workflows / "broken.yaml"
    bad.write_text(UNASSIGN_ONCE.replace("id: unassign-once", "id: broken")
                   .replace("operator: is_equal_to", "operator: equals"))
    line = next(i for i, t in enumerate(bad.read_text().splitlines(), 1) if "equals" in t)
    env.write_jsonl("more.jsonl", [recv("12:00", contact="c2"), closed("12:10", source="user", user="u2", contact="c2")])

    result = cli_run(env)
    assert result.exit_code == 2, result.output
    assert f"broken.yaml:{line}:" in result.output
    assert "equals" in result.output and "Fix:" in result.output
    assert env.warehouse_path.read_bytes() == wh_bytes
    assert env.warehouse_path.stat().st_mtime_ns == wh_mtime
    wh = Warehouse(env.warehouse_path)
    assert wh.scalar("SELECT run_id FROM pipeline_runs") == published
    assert wh.scalar("SELECT count(*) FROM conversations") == 1
