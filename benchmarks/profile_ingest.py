"""Profile of the `landing_files` asset (parse + validate of landing files) against DuckDB's own
JSON load of the same files (docs/performance.md, "Profile: ingest before/after").

    closeconv generate -n 88496 --seed 42 --out /tmp/land1m --reference /tmp/ref
    python benchmarks/profile_ingest.py --landing /tmp/land1m

Every step runs on a fresh DuckDB file in a temporary folder and is timed in wall seconds and
process CPU seconds (user + system over all threads: DuckDB's included; on a shared machine CPU
is the steadier figure). Steps:

- `duckdb untyped`: CREATE TABLE t AS SELECT * FROM read_json(...) (what bench.py compares with);
- `duckdb typed`: the same with the contract's columns given as VARCHAR (no schema sniffing);
- `read lines`: closeconv's line reader alone (blocks of lines as Arrow, UTF-8 checked);
- `stage_landing_files`: the asset's domain call (read + validate + store), and its statements
  over 0.1 s (`--statements`).
Run it with PYTHONPATH pointing at another checkout to profile that checkout's code.
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
from pathlib import Path

import duckdb

from closeconv import ingest
from closeconv.contract import EVENT_FIELDS, PLATFORM_FIELDS


def _timed(label: str, fn, results: list) -> None:
    wall, cpu = time.perf_counter(), _cpu()
    fn()
    results.append((label, time.perf_counter() - wall, _cpu() - cpu))


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _duckdb_load(landing: Path, db: Path, typed: bool) -> None:
    columns = ""
    if typed:
        fields = ", ".join(f"'{n}': 'VARCHAR'" for n in (*EVENT_FIELDS, *PLATFORM_FIELDS))
        columns = f", columns={{{fields}}}"
    con = duckdb.connect(str(db))
    con.sql(f"CREATE TABLE t AS SELECT * FROM read_json('{landing}/**/*.jsonl*', "
            f"format='newline_delimited', ignore_errors=true{columns})")
    con.close()


def _read_lines(landing: Path) -> None:
    for path in sorted(landing.rglob("*.jsonl")):
        for _ in ingest._jsonl_blocks(path):
            pass


class _StatementLog:
    """Wraps DuckDBPyConnection.execute/sql to record statements over 0.1 s."""

    def __init__(self):
        self.rows: list[tuple[float, float, str]] = []

    def wrap(self, con):
        log = self.rows

        class Timed:
            def __getattr__(self, name):
                return getattr(con, name)

            def _run(self, method, query, *args, **kwargs):
                wall, cpu = time.perf_counter(), _cpu()
                result = getattr(con, method)(query, *args, **kwargs)
                spent = time.perf_counter() - wall
                if spent > 0.1:
                    log.append((spent, _cpu() - cpu, " ".join(query.split())[:100]))
                return result

            def sql(self, query, *args, **kwargs):
                return self._run("sql", query, *args, **kwargs)

            def execute(self, query, *args, **kwargs):
                return self._run("execute", query, *args, **kwargs)

        return Timed()


def _stage(landing: Path, db: Path, log: _StatementLog | None) -> None:
    con = duckdb.connect(str(db))
    try:
        ingest.stage_landing_files(log.wrap(con) if log else con, landing)
    finally:
        con.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--landing", type=Path, required=True)
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--statements", action="store_true", help="list the asset's statements over 0.1 s")
    parser.add_argument("--skip-duckdb", action="store_true")
    args = parser.parse_args()
    results: list = []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.repeat):
            if not args.skip_duckdb:
                _timed("duckdb untyped read_json", lambda: _duckdb_load(args.landing, Path(tmp, f"u{i}.duckdb"), False), results)
                _timed("duckdb typed read_json", lambda: _duckdb_load(args.landing, Path(tmp, f"t{i}.duckdb"), True), results)
                _timed("closeconv read lines", lambda: _read_lines(args.landing), results)
            log = _StatementLog() if args.statements else None
            _timed("stage_landing_files", lambda: _stage(args.landing, Path(tmp, f"s{i}.duckdb"), log), results)
            size = Path(tmp, f"s{i}.duckdb").stat().st_size
            results.append((f"  staging file {size / 2**20:.0f} MiB", 0.0, 0.0))
            for wall, cpu, label in log.rows if log else []:
                results.append((f"    {label}", wall, cpu))
    for label, wall, cpu in results:
        print(f"{wall:8.2f} s {cpu:8.2f} CPU-s  {label}")
    print(f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")


if __name__ == "__main__":
    main()
