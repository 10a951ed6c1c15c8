"""The import-linter contracts (.importlinter) hold: the domain imports no framework and
nothing above it, and no package has an import cycle. And they bite: a copy of the code with
a forbidden import or a cycle breaks them."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"


def lint(cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(LINT_IMPORTS), "--no-cache"], cwd=cwd, capture_output=True, text=True, timeout=300)


def test_the_contracts_hold():
    proc = lint(REPO)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert "2 kept, 0 broken" in proc.stdout


@pytest.fixture
def copy(tmp_path) -> Path:
    for package in ("closeconv", "pipelines"):
        shutil.copytree(REPO / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / ".importlinter", tmp_path / ".importlinter")
    return tmp_path


@pytest.mark.parametrize(("module", "line", "broken"), [
    ("closeconv/metrics.py", "import dagster", "imports no framework"),
    ("closeconv/sessionize.py", "import pipelines.defs.checks", "imports no framework"),
    ("closeconv/workflows/tables.py", "import closeconv.workflows.replay", "No import cycles"),
])
def test_a_forbidden_import_or_a_cycle_breaks_a_contract(copy, module, line, broken):
    path = copy / module
    path.write_text(path.read_text().replace("from __future__ import annotations\n",
                                             f"from __future__ import annotations\n\n{line}\n", 1))
    proc = lint(copy)
    assert proc.returncode != 0
    assert f"{broken}" in proc.stdout and "BROKEN" in proc.stdout, proc.stdout[-3000:]

