"""One way to configure (issue 7, point 5): flags > environment > `.env` > defaults for every
entry point, and every configuration problem found before any work, exit 2, with the fix."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from closeconv.cli import main
from closeconv.config import ConfigError, Settings, resolve_settings
from operations_helpers import closeconv, hermetic_env, project, run_flags, scalar, write_events


@pytest.fixture(autouse=True)
def _no_developer_settings(monkeypatch):
    for name in list(__import__("os").environ):
        if name.startswith("CLOSECONV_") or name == "DAGSTER_HOME":
            monkeypatch.delenv(name)


def _run(root: Path, *extra: str, env: dict[str, str] | None = None):
    return CliRunner(env=env).invoke(main, ["run", "--quiet", *run_flags(root), *extra])


def _nothing_was_done(root: Path) -> None:
    assert not (root / "wh").exists(), "a configuration error must stop the run before any work"


@pytest.mark.parametrize("name", ["localtime", "posixrules"])
def test_system_timezone_aliases_duckdb_rejects_exit_2(tmp_path, name):
    root = project(tmp_path)
    result = _run(root, "--timezone", name)
    assert result.exit_code == 2, result.output
    assert f"unknown timezone {name!r} (from --timezone)" in result.output
    _nothing_was_done(root)


def test_timezone_error_suggests_the_closest_names(tmp_path):
    root = project(tmp_path)
    result = _run(root, "--timezone", "europe/berlin")
    assert result.exit_code == 2
    assert "Did you mean 'Europe/Berlin'" in result.output
    result = _run(root, "--timezone", "America/New_Yrok")
    assert "Did you mean 'America/New_York'" in result.output


def test_malformed_users_csv_exits_2_before_any_work(tmp_path):
    root = project(tmp_path)
    write_events(root / "landing" / "a.jsonl", range(3))
    (root / "reference" / "users.csv").write_text("user_id,name,email,team_id,role\nu1,Ann,a@x,t1\n")
    result = _run(root)
    assert result.exit_code == 2, result.output
    assert "users.csv:2" in result.output and "Fix:" in result.output
    _nothing_was_done(root)


def test_unreadable_reference_file_exits_2_before_any_work(tmp_path):
    root = project(tmp_path)
    write_events(root / "landing" / "a.jsonl", range(3))
    (root / "reference" / "categories.csv").write_bytes(b"name,description\n\xff\xfe billing,x\n")
    result = _run(root)
    assert result.exit_code == 2, result.output
    assert "categories.csv" in result.output and "UTF-8" in result.output
    _nothing_was_done(root)


def test_bad_workflow_folder_exits_2_before_any_work(tmp_path):
    root = project(tmp_path)
    write_events(root / "landing" / "a.jsonl", range(3))
    (root / "workflows" / "broken.yaml").write_text("id: [unclosed\n")
    result = _run(root)
    assert result.exit_code == 2, result.output
    assert "broken.yaml" in result.output
    _nothing_was_done(root)


def test_invalid_boolean_setting_exits_2_naming_the_variable(tmp_path):
    root = project(tmp_path)
    result = _run(root, env={"CLOSECONV_ALLOW_SHRINK": "perhaps"})
    assert result.exit_code == 2, result.output
    assert "CLOSECONV_ALLOW_SHRINK" in result.output


def test_precedence_flags_over_environment_over_dotenv_over_defaults(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    Path(".env").write_text("CLOSECONV_TIMEZONE=Asia/Tokyo\nCLOSECONV_LANDING=from-dotenv\n")
    s = resolve_settings()
    assert (s.timezone, s.origin("timezone")) == ("Asia/Tokyo", "CLOSECONV_TIMEZONE in .env")
    assert s.landing_dir == Path("from-dotenv")
    assert s.warehouse_path == Path("data/warehouse.duckdb") and s.origin("warehouse_path") == "default"
    monkeypatch.setenv("CLOSECONV_TIMEZONE", "Europe/Berlin")
    s = resolve_settings()
    assert (s.timezone, s.origin("timezone")) == ("Europe/Berlin", "CLOSECONV_TIMEZONE")
    s = resolve_settings({"timezone": "UTC", "landing_dir": None})
    assert (s.timezone, s.origin("timezone")) == ("UTC", "--timezone")
    assert s.landing_dir == Path("from-dotenv")
    # The plain class resolves the same way (what the dashboard and Dagster's resources use).
    assert Settings().timezone == "Europe/Berlin" and Settings().landing_dir == Path("from-dotenv")


def test_dotenv_reaches_closeconv_run(tmp_path):
    """Today `.env` reached only Dagster: `closeconv run` in the project folder must read it too."""
    root = project(tmp_path)
    write_events(root / "landing" / "a.jsonl", range(2), day="2026-03-08")  # 00:00–00:01 UTC
    (root / ".env").write_text("CLOSECONV_TIMEZONE=America/New_York\n"
                               f"CLOSECONV_WAREHOUSE={root / 'wh' / 'warehouse.duckdb'}\n")
    proc = closeconv(["run", "--quiet", "--landing", "landing", "--workflows", "workflows"], cwd=root)
    assert proc.returncode == 0, proc.stderr
    warehouse = root / "wh" / "warehouse.duckdb"
    assert scalar(warehouse, "SELECT timezone FROM closeconv_meta") == "America/New_York"
    assert str(scalar(warehouse, "SELECT min(day) FROM daily_conversation_metrics")) == "2026-03-07"
    # A bad value in .env is named as coming from .env.
    (root / ".env").write_text("CLOSECONV_TIMEZONE=localtime\n")
    bad = closeconv(["run", "--quiet", "--landing", "landing"], cwd=root)
    assert bad.returncode == 2
    assert "CLOSECONV_TIMEZONE in .env" in bad.stderr


def test_whatif_reads_dates_in_the_warehouse_timezone(tmp_path):
    """A warehouse built in New York: `--from/--to 2026-03-07` are New York days, with no
    --timezone and no CLOSECONV_TIMEZONE (today they were UTC days)."""
    root = project(tmp_path)
    write_events(root / "landing" / "a.jsonl", range(2), day="2026-03-08")
    template = Path(__file__).resolve().parent.parent / "workflows" / "templates" / "unassign-after-close.yaml"
    draft = root / "draft.yaml"
    draft.write_text(template.read_text())
    warehouse = root / "wh" / "warehouse.duckdb"
    built = _run(root, "--timezone", "America/New_York")
    assert built.exit_code == 0, built.output
    proc = closeconv(["workflows", "replay", str(draft), "--from", "2026-03-07", "--to", "2026-03-07",
                      "--warehouse", str(warehouse), "--json"], cwd=root)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["timezone"] == "America/New_York"
    from datetime import datetime, timezone

    assert datetime.fromisoformat(report["from"]) == datetime(2026, 3, 7, 5, tzinfo=timezone.utc)  # NY midnight


def test_settings_check_is_usable_without_the_landing_folder(tmp_path):
    s = Settings(warehouse_path=tmp_path / "w.duckdb", landing_dir=tmp_path / "absent")
    s.check(landing=False)
    with pytest.raises(ConfigError, match="does not exist"):
        s.check()


def test_config_module_imports_no_dagster():
    import subprocess
    import sys

    code = "import sys, closeconv.config; print('dagster' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=hermetic_env())
    assert out.stdout.strip() == "False", out.stderr


def test_demo_hints_work_without_uv_on_path(tmp_path):
    from operations_helpers import CLOSECONV

    env = hermetic_env(PATH="/usr/bin:/bin", CLOSECONV_WORKFLOWS=str(Path(__file__).resolve().parent.parent / "workflows"))
    import subprocess

    proc = subprocess.run([str(CLOSECONV), "demo", "--no-serve", "--conversations", "30", "--seed", "1"], cwd=tmp_path,
                          env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    hints = proc.stdout.split("Next:", 1)[1].strip().splitlines()
    assert len(hints) >= 3
    for hint in hints:
        tool = Path(hint.split()[0])
        assert tool.is_absolute() and os.access(tool, os.X_OK), hint
    shell = [h for h in hints if "duckdb" in h.split()[0]][0].split("#")[0].split()
    out = subprocess.run([*shell, "-csv", "SELECT count(*) > 0 AS ok FROM conversations"], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and out.stdout.split() == ["ok", "true"], out.stderr


def test_generated_state_is_git_ignored():
    import subprocess

    repo = Path(__file__).resolve().parent.parent
    for path in ("data/reference/users.csv", "data/.dagster/history/runs.db", "data/.closeconv/pipeline.lock",
                 "data/warehouse.duckdb", ".tmp_dagster_home_abc/x"):
        proc = subprocess.run(["git", "check-ignore", "-q", path], cwd=repo)
        assert proc.returncode == 0, f"{path} is not git-ignored"
