"""`closeconv workflows new | validate | list | replay` (the what-if leaves the warehouse untouched)."""

from __future__ import annotations

import hashlib
import json
from datetime import datetime, timezone
from pathlib import Path

import duckdb
import pytest
from click.testing import CliRunner

from closeconv.cli import main
from closeconv.workflows import load_workflows
from helpers.events import at, ev, make_events_table

ROOT = Path(__file__).resolve().parents[1]


def run(*args: str, env: dict | None = None):
    return CliRunner().invoke(main, list(args), env=env or {}, catch_exceptions=False)


def test_new_copies_a_template_and_refuses_to_overwrite(tmp_path):
    folder = tmp_path / "workflows"
    result = run("workflows", "new", "--template", "unassign-after-close", "--dir", str(folder))
    assert result.exit_code == 0, result.output
    dest = folder / "unassign-after-close.yaml"
    assert dest.read_text() == (ROOT / "workflows/templates/unassign-after-close.yaml").read_text()
    assert "enabled" in result.output

    again = run("workflows", "new", "--template", "unassign-after-close", "--dir", str(folder))
    assert again.exit_code != 0
    assert "already exists" in again.output and "not overwriting" in again.output
    assert dest.read_text() == (ROOT / "workflows/templates/unassign-after-close.yaml").read_text()

    # a second copy under another id, by template name
    other = run("workflows", "new", "--template", "Assignment: Round Robin in a Team", "--dir", str(folder), "--id", "rr-sales")
    assert other.exit_code == 0, other.output
    text = (folder / "rr-sales.yaml").read_text()
    assert text.startswith("# Assign each newly opened conversation")  # comments kept
    assert [w.id for w in load_workflows(folder)] == ["rr-sales", "unassign-after-close"]

    unknown = run("workflows", "new", "--template", "nope", "--dir", str(folder))
    assert unknown.exit_code != 0 and "unassign-after-close" in unknown.output


def test_validate_ok_and_broken(tmp_path):
    ok = run("workflows", "validate", str(ROOT / "workflows"))
    assert ok.exit_code == 0 and "OK: 1 workflow(s)" in ok.output

    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "id: bad\nname: bad\nenabled: true\ntrigger:\n  type: conversation.closed\n  conditions:\n    rules:\n"
        "      - {field: source, operator: is_equal_too, value: user}\n"
        "steps:\n  - {id: s, type: assign_to, action: unassign}\n"
    )
    result = CliRunner().invoke(main, ["workflows", "validate", str(tmp_path)])
    assert result.exit_code == 1
    assert f"{bad}:8: unknown operator 'is_equal_too' in rule 1 (did you mean 'is_equal_to'?). Fix: use one of" in result.output
    single = CliRunner().invoke(main, ["workflows", "validate", str(bad)])
    assert single.exit_code == 1 and f"{bad}:8:" in single.output

    env_default = CliRunner().invoke(main, ["workflows", "validate"], env={"CLOSECONV_WORKFLOWS": str(tmp_path)})
    assert env_default.exit_code == 1


def test_list_shows_workflows_and_templates():
    result = run("workflows", "list", "--dir", str(ROOT / "workflows"))
    assert result.exit_code == 0
    out = result.output
    assert "[enabled ] unassign-after-close" in out
    assert "source is_equal_to user" in out
    assert "round-robin-in-team" in out and "least-open-contacts" in out


@pytest.fixture
def warehouse(tmp_path) -> Path:
    """A small published warehouse: four contacts closed on 2026-03-02 and 2026-03-05."""
    path = tmp_path / "warehouse.duckdb"
    con = duckdb.connect(str(path))
    con.sql("SET TimeZone='UTC'")
    events = []
    for i, (c, day) in enumerate([("c1", 2), ("c2", 2), ("c3", 5), ("c4", 5)]):
        base = datetime(2026, 3, day, tzinfo=timezone.utc)
        events += [
            ev("assign", at("08:00", base), c, source="user", user_id="a", assignee_id=f"u{i + 1}"),
            ev("recv", at("09:00", base), c),
            ev("close", at("09:10", base), c, source="user" if c != "c4" else "api", user_id="u1"),
        ]
    # the platform recorded c1's unassignment
    events.append(ev("assign", at("09:10:03", datetime(2026, 3, 2, tzinfo=timezone.utc)), "c1", source="workflow"))
    make_events_table(con, events)
    con.sql("CREATE TABLE conversations AS SELECT 1 AS x")  # other production tables exist too
    con.close()
    return path


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_whatif_replay_prints_and_writes_nothing(warehouse, tmp_path):
    draft = tmp_path / "draft.yaml"
    draft.write_text((ROOT / "workflows/templates/unassign-after-close.yaml").read_text().replace("enabled: true", "enabled: false"))
    before = digest(warehouse)
    files_before = sorted(p.name for p in warehouse.parent.iterdir())

    result = run("workflows", "replay", str(draft), "--from", "2026-03-01", "--to", "2026-03-31", "--warehouse", str(warehouse))
    assert result.exit_code == 0, result.output
    out = result.output
    assert "alone against the recorded history" in out
    assert "Runs (conditions matched):     3" in out  # c4 was closed by the API
    assert "Actions:                       3 (unassign 3)" in out
    assert "already recorded by the platform (same change within 60s): 1" in out
    assert "contact stayed assigned): 2" in out
    assert "contact c1" in out and "[already recorded]" in out

    # a narrower window, JSON output, warehouse from the environment
    result = CliRunner().invoke(
        main,
        ["workflows", "replay", str(draft), "--from", "2026-03-05", "--to", "2026-03-05", "--json"],
        env={"CLOSECONV_WAREHOUSE": str(warehouse)},
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["runs"] == 1 and data["actions"] == 1 and data["sample"][0]["contact_id"] == "c3"
    assert data["from"].startswith("2026-03-05T00:00:00") and data["to"].startswith("2026-03-06T00:00:00")

    assert digest(warehouse) == before
    assert sorted(p.name for p in warehouse.parent.iterdir()) == files_before  # no .wal, no lock files
    con = duckdb.connect(str(warehouse), read_only=True)
    tables = {r[0] for r in con.sql("SHOW TABLES").fetchall()}
    con.close()
    assert "workflow_runs" not in tables


def test_whatif_refuses_an_invalid_draft_and_a_missing_warehouse(warehouse, tmp_path):
    draft = tmp_path / "draft.yaml"
    draft.write_text("id: d\nname: d\nenabled: true\ntrigger: {type: conversation.closed}\nsteps: []\n")
    result = CliRunner().invoke(main, ["workflows", "replay", str(draft), "--warehouse", str(warehouse)])
    assert result.exit_code != 0
    assert f"{draft}:5: 'steps' must be a non-empty list" in result.output

    good = tmp_path / "good.yaml"
    good.write_text((ROOT / "workflows/templates/unassign-after-close.yaml").read_text())
    missing = CliRunner().invoke(main, ["workflows", "replay", str(good), "--warehouse", str(tmp_path / "none.duckdb")])
    assert missing.exit_code != 0 and "does not exist" in missing.output
    bad_date = CliRunner().invoke(main, ["workflows", "replay", str(good), "--warehouse", str(warehouse), "--from", "2026-03-01T10:00"])
    assert bad_date.exit_code != 0 and "no UTC offset" in bad_date.output


def test_whatif_with_production_workflows(warehouse, tmp_path):
    folder = tmp_path / "wf"
    folder.mkdir()
    # production: unassign on API closes (c4); draft: unassign on user closes
    (folder / "api.yaml").write_text(
        (ROOT / "workflows/templates/unassign-after-close.yaml").read_text()
        .replace("id: unassign-after-close", "id: api-close").replace("value: user", "value: api")
    )
    draft = tmp_path / "draft.yaml"
    draft.write_text((ROOT / "workflows/templates/unassign-after-close.yaml").read_text())
    before = digest(warehouse)
    result = run("workflows", "replay", str(draft), "--warehouse", str(warehouse), "--dir", str(folder),
                 "--with-production", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["production_workflows"] == ["api-close"]
    assert data["runs"] == 3 and data["actions"] == 3  # the draft's own numbers
    assert data["trigger_events"] == 4
    assert digest(warehouse) == before
