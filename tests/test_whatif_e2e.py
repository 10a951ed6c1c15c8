"""What-if replay (`closeconv workflows replay`) against a warehouse built by the real pipeline.

The warehouse is published by the real Dagster job (with the shipped template enabled in
production); then a draft workflow is replayed over one day through the CLI. The tests check
the printed counts against what the draft would do on that day only, and that the warehouse
and its folder are left exactly as they were - also while another process holds the
warehouse open read-only.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys

import pytest
from click.testing import CliRunner

from conftest import ClosecovEnv, assign, closed, recv, sent

D1, D2, D3 = "2026-03-01", "2026-03-02", "2026-03-03"

# The draft: unassign after a close by a user OR the API. A draft, so disabled.
DRAFT = """\
id: draft-unassign
name: "Draft: unassign after user or API close"
enabled: false
trigger:
  type: conversation.closed
  conditions:
    match: all
    rules:
      - {field: source, operator: is_one_of, value: [user, api]}
steps:
  - {id: unassign, type: assign_to, action: unassign}
"""


def t(day: str, hhmmss: str) -> str:
    if hhmmss.count(":") == 1:
        hhmmss += ":00"
    return f"{day}T{hhmmss}Z"


def history() -> list[dict]:
    """Two days of history plus edges around the window 2026-03-02 (UTC).

    What the draft would do on 2026-03-02 alone (against the recorded history):
      c1 (user close; u1 recorded since 03-01, the 03-01 close is outside the window) -> unassign, not recorded
      c3 (user close; u2) + recorded workflow unassignment 5 s later               -> unassign, already recorded
      c4 (user close; never assigned)                                               -> skipped, no assignee
      c5 (API close; u3)                                                            -> unassign, not recorded
      c6 (close by a workflow)                                                      -> no run
      c8 (user close at 23:59:59; u2)                                               -> unassign, not recorded
    Outside the window: c1's and c2's closes on 03-01, c9 at 03-01 23:59:59, c7 at 03-03 00:00:00.
    """
    return [
        # --- 2026-03-01
        assign(t(D1, "08:00"), "u1", contact="c1", user_id="admin", event_id="c1-assign"),
        recv(t(D1, "09:00"), contact="c1"),
        sent(t(D1, "09:05"), user="u1", contact="c1"),
        closed(t(D1, "09:30"), source="user", user="u1", contact="c1", event_id="c1-close-d1"),
        assign(t(D1, "09:50"), "u2", contact="c2", user_id="admin"),
        recv(t(D1, "10:00"), contact="c2"),
        closed(t(D1, "10:30"), source="api", contact="c2", event_id="c2-close-d1"),
        assign(t(D1, "23:00"), "u1", contact="c9", user_id="admin"),
        recv(t(D1, "23:30"), contact="c9"),
        closed(t(D1, "23:59:59"), source="user", user="u1", contact="c9", event_id="c9-close-edge"),
        # --- 2026-03-02 (the window)
        recv(t(D2, "09:00"), contact="c1"),
        sent(t(D2, "09:10"), user="u1", contact="c1"),
        closed(t(D2, "09:20"), source="user", user="u1", contact="c1", event_id="c1-close-d2"),
        assign(t(D2, "08:00"), "u2", contact="c3", user_id="admin"),
        recv(t(D2, "08:05"), contact="c3"),
        closed(t(D2, "08:30"), source="user", user="u2", contact="c3", event_id="c3-close"),
        assign(t(D2, "08:30:05"), None, source="workflow", contact="c3", event_id="c3-recorded-unassign"),
        recv(t(D2, "11:00"), contact="c4"),
        closed(t(D2, "11:10"), source="user", user="u3", contact="c4", event_id="c4-close"),
        assign(t(D2, "12:00"), "u3", contact="c5", user_id="admin"),
        recv(t(D2, "12:01"), contact="c5"),
        closed(t(D2, "12:30"), source="api", contact="c5", event_id="c5-close"),
        assign(t(D2, "12:50"), "u1", contact="c6", user_id="admin"),
        recv(t(D2, "13:00"), contact="c6"),
        closed(t(D2, "13:05"), source="workflow", contact="c6", event_id="c6-close"),
        assign(t(D2, "23:00"), "u2", contact="c8", user_id="admin"),
        recv(t(D2, "23:30"), contact="c8"),
        closed(t(D2, "23:59:59"), source="user", user="u2", contact="c8", event_id="c8-close"),
        assign(t(D2, "23:50"), "u1", contact="c7", user_id="admin"),
        recv(t(D2, "23:55"), contact="c7"),
        # --- 2026-03-03
        closed(t(D3, "00:00:00"), source="user", user="u1", contact="c7", event_id="c7-close-edge"),
        recv(t(D3, "09:00"), contact="c4"),
        closed(t(D3, "09:30"), source="api", contact="c4", event_id="c4-close-d3"),
    ]


@pytest.fixture(scope="module")
def published(tmp_path_factory):
    env = ClosecovEnv(tmp_path_factory.mktemp("whatif"))
    env.write_jsonl("history.jsonl", history())
    env.use_unassign_template()  # production: the shipped template, enabled
    wh = env.run()
    # Sanity: the production replay differs from the draft's what-if (e.g. c1 was unassigned on 03-01).
    assert wh.scalar("SELECT outcome FROM workflow_runs WHERE trigger_event_id = 'c1-close-d2'") == "skipped"
    assert wh.scalar("SELECT count(*) FROM events") == len(history())
    draft = env.root / "drafts" / "draft.yaml"
    draft.parent.mkdir()
    draft.write_text(DRAFT)
    return env, draft


def snapshot(folder) -> dict[str, tuple[str, int, int]]:
    """Every file under `folder`: content hash, size and mtime."""
    out = {}
    for root, dirs, files in os.walk(folder):
        for name in files + [d + "/" for d in dirs]:
            p = os.path.join(root, name.rstrip("/"))
            st = os.stat(p)
            digest = "dir"
            if not name.endswith("/"):
                with open(p, "rb") as fh:
                    digest = hashlib.sha256(fh.read()).hexdigest()
            out[os.path.relpath(p, folder) + ("/" if name.endswith("/") else "")] = (digest, st.st_size, st.st_mtime_ns)
    return out


def replay(env: ClosecovEnv, draft, *extra: str):
    from closeconv.cli import main

    return CliRunner().invoke(
        main,
        ["workflows", "replay", str(draft), "--from", D2, "--to", D2, "--warehouse", str(env.warehouse_path),
         "--timezone", "UTC", *extra],
        env={"CLOSECONV_WORKFLOWS": str(env.workflows), "CLOSECONV_REFERENCE": str(env.reference)},
    )


def value(out: str, label: str) -> str:
    (line,) = [x for x in out.splitlines() if x.strip().startswith(label)]
    return line.split(label, 1)[1].strip()


EXPECTED = {
    "trigger_events": 6,  # closes in the window: c1, c3, c4, c5, c6, c8
    "runs": 5,
    "completed": 4,
    "skipped_by_reason": {"contact has no assignee": 1},
    "actions": 4,
    "actions_by_type": {"unassign": 4},
    "contacts_affected": 4,
    "already_recorded": 1,
    "not_recorded_still_assigned": 3,
}


def test_whatif_prints_the_drafts_counts_for_the_window_only(published):
    env, draft = published
    wh_dir = env.warehouse_path.parent
    before = snapshot(wh_dir)
    wh_bytes = env.warehouse_path.read_bytes()
    wh_mtime = env.warehouse_path.stat().st_mtime_ns

    result = replay(env, draft)
    assert result.exit_code == 0, result.output
    out = result.output
    assert "What-if replay of 'draft-unassign'" in out
    assert "alone against the recorded history" in out
    assert "window: 2026-03-02 00:00:00 to 2026-03-03 00:00:00 (UTC, end exclusive)" in out
    assert value(out, "Trigger events in the window:") == "6"
    assert value(out, "Runs (conditions matched):") == "5"
    assert value(out, "completed:") == "4"
    assert value(out, "skipped:") == "1"
    assert value(out, "contact has no assignee:") == "1"
    assert value(out, "Actions:") == "4 (unassign 4)"
    assert value(out, "Contacts affected:") == "4"
    assert value(out, "already recorded by the platform (same change within 60s):") == "1"
    assert value(out, "unassignments the history does not show (contact stayed assigned):") == "3"
    sample = [x for x in out.splitlines() if x.startswith("  2026-")]
    assert [x.split("contact ")[1].split()[0] for x in sample] == ["c3", "c1", "c5", "c8"]  # time order
    assert all(x.split()[0] == "2026-03-02" for x in sample)
    assert "[already recorded]" in next(x for x in sample if "contact c3" in x)
    assert "unassign u1 -> (none)" in next(x for x in sample if "contact c1" in x)
    assert "already triggered" not in out

    # The same as JSON.
    result = replay(env, draft, "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert {k: data[k] for k in EXPECTED} == EXPECTED
    assert data["production_workflows"] == []
    assert {s["trigger_event_id"] for s in data["sample"]} == {"c1-close-d2", "c3-close", "c5-close", "c8-close"}

    # Nothing was written: same bytes, same mtime, no new file beside the warehouse.
    assert env.warehouse_path.read_bytes() == wh_bytes
    assert env.warehouse_path.stat().st_mtime_ns == wh_mtime
    assert snapshot(wh_dir) == before


def test_whatif_window_edges_and_other_days(published):
    env, draft = published
    from closeconv.cli import main

    def counts(date_from: str, date_to: str) -> dict:
        result = CliRunner().invoke(main, [
            "workflows", "replay", str(draft), "--from", date_from, "--to", date_to,
            "--warehouse", str(env.warehouse_path), "--timezone", "UTC", "--json"])
        assert result.exit_code == 0, result.output
        d = json.loads(result.output)
        return {k: d[k] for k in ("trigger_events", "runs", "completed", "actions")} | {
            "triggers": sorted(s["trigger_event_id"] for s in d["sample"])}

    # 03-01: c1 (u1) and c2 (API, u2) and c9 at 23:59:59 all unassign.
    assert counts(D1, D1) == {"trigger_events": 3, "runs": 3, "completed": 3, "actions": 3,
                              "triggers": ["c1-close-d1", "c2-close-d1", "c9-close-edge"]}
    # 03-03: c7 at 00:00:00 (u1) unassigns; c4's API close finds no assignee.
    assert counts(D3, D3) == {"trigger_events": 2, "runs": 2, "completed": 1, "actions": 1,
                              "triggers": ["c7-close-edge"]}
    # Over both first days, c1's second close sees the contact already unassigned by the draft.
    both = CliRunner().invoke(main, ["workflows", "replay", str(draft), "--from", D1, "--to", D2,
                                     "--warehouse", str(env.warehouse_path), "--timezone", "UTC", "--json"])
    data = json.loads(both.output)
    assert data["runs"] == 8 and data["actions"] == 6
    assert data["skipped_by_reason"] == {"contact has no assignee": 2}


_HOLDER = """
import sys, time, duckdb
con = duckdb.connect(sys.argv[1], read_only=True)
print(con.sql("SELECT count(*) FROM events").fetchall()[0][0], flush=True)
time.sleep(120)
"""


def test_whatif_while_another_process_holds_the_warehouse_open(published):
    env, draft = published
    before = snapshot(env.warehouse_path.parent)
    holder = subprocess.Popen([sys.executable, "-c", _HOLDER, str(env.warehouse_path)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == str(len(history())), holder.stderr.read()
        result = replay(env, draft, "--json")
        assert result.exit_code == 0, result.output
        data = json.loads(result.output)
        assert {k: data[k] for k in EXPECTED} == EXPECTED
        assert holder.poll() is None  # the reader is still there
    finally:
        holder.terminate()
        holder.wait(timeout=30)
    assert snapshot(env.warehouse_path.parent) == before


def test_whatif_while_this_process_holds_the_warehouse_open(published):
    """A reader in the same process (a notebook, the dashboard) does not block the what-if."""
    env, draft = published
    import duckdb

    con = duckdb.connect(str(env.warehouse_path), read_only=True)
    try:
        result = replay(env, draft, "--json")
        assert result.exit_code == 0, result.output
        assert {k: json.loads(result.output)[k] for k in EXPECTED} == EXPECTED
        assert con.sql("SELECT count(*) FROM events").fetchall()[0][0] == len(history())
    finally:
        con.close()
