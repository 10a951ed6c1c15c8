"""The suite is hermetic and skips nothing silently (issue 7, point 10).

Proved from the outside: the real test files run in a child pytest whose parent environment
holds poisoned CLOSECONV_* values and a DAGSTER_HOME that cannot be used, and they still pass;
and a child session with one skipped test fails unless `--allow-skips` is given.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner

from closeconv.cli import main
from conftest import REPO

POISON = {
    "CLOSECONV_LANDING": "/nonexistent/poisoned-landing",
    "CLOSECONV_WAREHOUSE": "/nonexistent/poisoned.duckdb",
    "CLOSECONV_WORKFLOWS": "/nonexistent/poisoned-workflows",
    "CLOSECONV_REFERENCE": "/nonexistent/poisoned-reference",
    "CLOSECONV_TIMEZONE": "Mars/Olympus_Mons",
    "DAGSTER_HOME": "/nonexistent/poisoned-dagster-home",
}


def test_no_developer_setting_is_visible_inside_a_test(tmp_path):
    leaked = sorted(n for n in os.environ if n.startswith("CLOSECONV_") or n == "DAGSTER_HOME")
    assert leaked == []
    assert Path.cwd() == tmp_path  # relative defaults such as data/ land here, not in the repository


def test_the_poison_would_matter_without_the_fixture(monkeypatch, closeconv_env):
    """The poisoned values break a real command: so the child run below proves the fixture works."""
    for name, value in POISON.items():
        monkeypatch.setenv(name, value)
    result = CliRunner().invoke(main, ["run"])  # every setting from the environment
    assert result.exit_code == 2
    assert "poisoned-landing" in result.output or "Mars/Olympus_Mons" in result.output


def test_real_tests_pass_with_a_poisoned_parent_environment(tmp_path):
    tests = [
        # CLI runs with flags; the environment must not fill the gaps
        "tests/test_hostile_inputs.py::test_every_record_is_accounted_for",
        "tests/test_hostile_inputs.py::test_a_misspelled_workflows_folder_is_a_configuration_error",
        "tests/test_workflows_cli.py",  # `workflows validate/list/replay` read CLOSECONV_* by default
        "tests/test_warehouse_publish.py::test_duckdb_shell_for_analysts_opens_the_published_warehouse",
    ]
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", *tests],
        cwd=REPO, env={**os.environ, **POISON}, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert " passed" in proc.stdout and "skipped" not in proc.stdout


def _child_session(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    shutil.copy(REPO / "tests" / "conftest.py", tmp_path / "conftest.py")
    (tmp_path / "test_child.py").write_text(
        "import pytest\n\n"
        "def test_runs():\n    assert 1 + 1 == 2\n\n"
        "def test_skips():\n    pytest.skip('optional tool missing')\n"
    )
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--rootdir", str(tmp_path), *args, "test_child.py"],
        cwd=tmp_path, capture_output=True, text=True, timeout=120,
    )


def test_a_skipped_test_fails_the_session(tmp_path):
    proc = _child_session(tmp_path)
    assert proc.returncode == 1, proc.stdout
    assert "skipped tests fail this session" in proc.stdout
    assert "test_child.py::test_skips" in proc.stdout and "optional tool missing" in proc.stdout


def test_allow_skips_lets_a_session_with_skips_pass(tmp_path):
    proc = _child_session(tmp_path, "--allow-skips")
    assert proc.returncode == 0, proc.stdout
    assert "1 passed, 1 skipped" in proc.stdout
