"""Reference files are read one way (strictly, only user_id required); workflows validate
warns about ids the reference files do not know; the shipped round-robin template names a
team the sample has; the drift figure is the same in the summary and in pipeline_runs."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from closeconv.cli import main
from closeconv.config import ConfigError
from closeconv.reference import load_reference
from closeconv.workflows import load_workflows, parse_workflow_text
from closeconv.workflows.loader import shipped_templates_dir
from closeconv.workflows.whatif import run_whatif
from conftest import TEMPLATE_UNASSIGN, assign, closed, recv

REPO = Path(__file__).resolve().parent.parent


def test_users_csv_needs_only_user_id(tmp_path):
    (tmp_path / "users.csv").write_text("user_id\nu1\nu2\n")
    users = load_reference(tmp_path, "users.csv")
    assert users.get_column("user_id").to_list() == ["u1", "u2"]
    assert users.get_column("team_id").to_list() == [None, None]  # optional columns are null


def test_users_csv_without_user_id_names_the_fix(tmp_path):
    (tmp_path / "users.csv").write_text("name,email\nAmara,a@example.com\n")
    with pytest.raises(ConfigError, match=r"users.csv:1: header lacks column\(s\) user_id.*optional: name, email"):
        load_reference(tmp_path, "users.csv")


def test_what_if_reads_users_csv_as_strictly_as_the_pipeline(closeconv_env, tmp_path):
    closeconv_env.write_jsonl("e.jsonl", [recv("09:00"), closed("09:10", user="u1")])
    closeconv_env.run()
    bad = tmp_path / "whatif-ref"
    bad.mkdir()
    (bad / "users.csv").write_text("user_id,team_id\nu1,t1\n,t1\n")  # a row without user_id
    draft = closeconv_env.root / "draft.yaml"
    shutil.copy(TEMPLATE_UNASSIGN, draft)
    with pytest.raises(ConfigError, match=r"users.csv:3: user_id is empty"):
        run_whatif(draft, closeconv_env.warehouse_path, None, None, reference_dir=bad)


def test_shipped_round_robin_template_names_a_team_of_the_sample():
    from closeconv.sample.workspace import TEAMS

    wf, problems = parse_workflow_text((shipped_templates_dir() / "round-robin-in-team.yaml").read_text())
    assert not problems
    assert wf.steps[0].team_id in {team_id for team_id, _ in TEAMS}


GOOD_RR = """id: rr
name: rr
enabled: true
trigger:
  type: conversation.opened
  conditions:
    match: all
    rules:
      - {field: user_id, operator: is_one_of, value: [u_amara, u_nobody]}
steps:
  - id: assign
    type: assign_to
    action: round_robin
    team_id: t_suport
"""


def test_validate_warns_about_ids_the_reference_files_do_not_know(tmp_path):
    wfdir, ref = tmp_path / "workflows", tmp_path / "ref"
    wfdir.mkdir()
    ref.mkdir()
    (wfdir / "rr.yaml").write_text(GOOD_RR)
    (ref / "users.csv").write_text("user_id,team_id\nu_amara,t_support\n")
    (ref / "teams.csv").write_text("team_id,name\nt_support,Support\nt_sales,Sales\n")
    result = CliRunner().invoke(main, ["workflows", "validate", str(wfdir), "--reference", str(ref)])
    assert result.exit_code == 0, result.output  # warnings, not errors
    out = result.output
    assert f"{wfdir / 'rr.yaml'}:14: warning: team 't_suport' is not in the reference data" in out
    assert "did you mean 't_support'?" in out
    assert f"{wfdir / 'rr.yaml'}:9: warning: user 'u_nobody' is not in the reference data (users.csv)" in out
    assert "u_amara'" not in out.split("OK:")[0].replace("use one of u_amara", "")
    assert "1 workflow(s)" in out and "2 warning(s)" in out
    # Without reference files nothing is known, so nothing is reported.
    quiet = CliRunner().invoke(main, ["workflows", "validate", str(wfdir), "--reference", str(tmp_path / "none")])
    assert quiet.exit_code == 0 and "warning" not in quiet.output


def test_drift_figure_is_contacts_in_the_summary_and_in_pipeline_runs(closeconv_env):
    closeconv_env.use_unassign_template()
    # c1 stays assigned through two closes by a user (u1, then u2): the replay unassigns twice,
    # the history never shows it. Two drift rows, one drifted contact.
    closeconv_env.write_jsonl("e.jsonl", [
        assign("08:00", "u1"), recv("09:00"), closed("09:10", user="u1"),
        assign("09:30", "u2"), recv("10:00"), closed("10:10", user="u2"),
    ])
    flags = ["--landing", str(closeconv_env.landing), "--warehouse", str(closeconv_env.warehouse_path),
             "--workflows", str(closeconv_env.workflows), "--reference", str(closeconv_env.reference)]
    result = CliRunner().invoke(main, ["run", "--quiet", *flags])
    assert result.exit_code == 0, result.output
    from conftest import Warehouse

    wh = Warehouse(closeconv_env.warehouse_path)
    assert wh.scalar("SELECT count(*) FROM workflow_drift") == 2
    assert wh.scalar("SELECT workflow_drift FROM pipeline_runs") == 1
    assert "1 drifted contacts" in result.output
    assert load_workflows(closeconv_env.workflows)  # the template is what ran
