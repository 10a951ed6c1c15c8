"""Per-statement profile of the steps after validation: build_events, the workflow replay and
build_conversation_tables, on a copy of a staging file (docs/performance.md, "Profile:
sessionize and metrics").

    closeconv generate -n 88500 --seed 42 --out /tmp/land1m --reference /tmp/ref
    python benchmarks/profile_downstream.py --landing /tmp/land1m --reference /tmp/ref --staging /tmp/stage1m.duckdb

The first call parses and validates the landing folder into --staging (kept, so later calls
and other checkouts start from the same file); every call works on a copy of it. Each
statement is timed around `con.sql` (wall and process CPU, which includes DuckDB's threads;
on a shared machine CPU is the steadier figure), and so is each fetch of a query result.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

import duckdb

from closeconv import pipeline
from closeconv.ingest import stage_landing_files, validate_and_dedupe

ROOT = Path(__file__).resolve().parents[1]


class _Timed:
    """A connection whose `sql` (and the fetches of its results) record their time."""

    def __init__(self, con: duckdb.DuckDBPyConnection, log: list):
        self._con, self._log = con, log

    def sql(self, query: str, *args, **kwargs):
        label = " ".join(query.split())[:90]
        wall, cpu = time.perf_counter(), time.process_time()
        result = self._con.sql(query, *args, **kwargs)
        self._log.append((time.perf_counter() - wall, time.process_time() - cpu, label))
        return _TimedResult(result, label, self._log) if result is not None else None

    def __getattr__(self, name):
        return getattr(self._con, name)


class _TimedResult:
    def __init__(self, result, label: str, log: list):
        self._result, self._label, self._log = result, label, log

    def fetchall(self):
        wall, cpu = time.perf_counter(), time.process_time()
        rows = self._result.fetchall()
        self._log.append((time.perf_counter() - wall, time.process_time() - cpu, "fetch: " + self._label))
        return rows

    def __getattr__(self, name):
        return getattr(self._result, name)


def _connect(path: Path) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect(str(path))
    con.sql("SET TimeZone = 'UTC'")
    return con


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--landing", type=Path, required=True)
    parser.add_argument("--reference", type=Path)
    parser.add_argument("--staging", type=Path, required=True, help="parsed and validated staging file (made if absent)")
    parser.add_argument("--timezone", default="America/New_York")
    parser.add_argument("--auto-close-hours", type=float)
    parser.add_argument("--min-seconds", type=float, default=0.03, help="list statements at least this long")
    args = parser.parse_args()

    if not args.staging.exists():
        con = _connect(args.staging)
        stage_landing_files(con, args.landing)
        validate_and_dedupe(con)
        con.close()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp) / "staging.duckdb"
        shutil.copy(args.staging, work)
        steps = (
            ("events", lambda con: pipeline.build_events(con, auto_close_hours=args.auto_close_hours)),
            ("workflows", lambda con: pipeline.build_workflow_tables(con, ROOT / "workflows", args.reference)),
            ("conversations", lambda con: pipeline.build_conversation_tables(con, args.timezone, args.reference)),
        )
        print(f"load average {os.getloadavg()[0]:.2f}")
        for name, step in steps:
            log: list = []
            con = _connect(work)  # one connection per step, as the Dagster assets do
            wall, cpu = time.perf_counter(), time.process_time()
            step(_Timed(con, log))
            print(f"{name}: wall {time.perf_counter() - wall:.2f} s, cpu {time.process_time() - cpu:.2f} s")
            con.close()
            for w, c, label in log:
                if w >= args.min_seconds or c >= args.min_seconds:
                    print(f"  wall {w:6.2f}  cpu {c:6.2f}  {label}")
        print(f"load average {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
