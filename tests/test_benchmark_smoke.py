"""The pipeline benchmark command runs end to end at a tiny size and prints every row.

Times are not asserted (benchmarks measure; tests check behaviour): only that each figure is
there and is a number, and that the per-asset times were found in the run's progress lines.
"""

from __future__ import annotations

import re
import subprocess
import sys

from conftest import REPO

ROWS = [
    "events read",
    "full run: closeconv run (s)",
    "DuckDB alone: load the same files (s)",
    "ratio run / DuckDB load",
    "events per second (run)",
    "peak RSS, process tree (MiB)",
    "memory limit (--memory-limit)",
    "asset landing_files (s)",
    "asset events (s)",
    "asset workflows (s)",
    "asset conversations (s)",
    "asset warehouse (s)",
    "incremental run, +1% events (s)",
    "incremental / full run",
    "run with nothing new (s)",
    "nothing new / full run",
    "publish, full run (s)",
    "publish, incremental run (s)",
    "dashboard: closed conversations",
    "dashboard: slowest query median (ms)",
    "dashboard: slowest query p95 (ms)",
    "dashboard: queries within target",
    "dashboard: slowest query (by median)",
    "replay, unassign template (closes/s)",
]
# Rows that are not a single number.
WORDS = {"memory limit (--memory-limit)", "dashboard: queries within target", "dashboard: slowest query (by median)"}
NUMBER = re.compile(r"^[\d,]+(\.\d+)?(x|%)?$")


def test_benchmark_prints_every_row_at_a_tiny_size(tmp_path):
    proc = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "bench.py"), "--conversations", "60", "--replay-closes", "600",
         "--keep", str(tmp_path / "bench")],
        capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].split() == ["metric", "jsonl"]
    values = {}
    for line in lines[2:]:
        name, _, value = line.strip().rpartition("  ")
        values[name.strip()] = value.strip()
    assert list(values) == ROWS
    for name, value in values.items():
        assert name in WORDS or NUMBER.match(value), (name, value)
    within, of = re.match(r"^(\d+)/(\d+) \(median<=100, p95<=250 ms\)$", values["dashboard: queries within target"]).groups()
    assert int(of) == 27 and 0 <= int(within) <= 27
    assert values["dashboard: slowest query (by median)"].split(":")[0] in {"list", "drill-down", "reports", "users", "workflows", "health"}
    assert int(values["dashboard: closed conversations"].replace(",", "")) > 0
    assert int(values["events read"].replace(",", "")) > 500
    assert int(values["peak RSS, process tree (MiB)"].replace(",", "")) > 50  # Python + Dagster at least
