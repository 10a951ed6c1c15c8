"""The pipeline benchmark: one command, one table, every figure measured in the same run.

    .venv/bin/python benchmarks/bench.py --events 5M                   # JSON lines
    .venv/bin/python benchmarks/bench.py --events 1M --format all      # JSONL, CSV and Parquet
    .venv/bin/python benchmarks/bench.py --conversations 2000 --keep /tmp/bench

For each format it generates the data (`closeconv generate --format ...`), then measures:

- the full `closeconv run` (the real CLI in a subprocess, Dagster included) and the time
  DuckDB alone takes to load the same landing files into a table (`CREATE TABLE t AS SELECT *
  FROM read_json(...)` / `read_csv` / `read_parquet`, into a DuckDB file), and their ratio;
- events per second of the run, and the peak RSS of the whole process tree (polled from /proc);
- per-asset times, parsed from the run's progress lines (`  events: ... [3.2s]`);
- an incremental run after adding 1% new events, as a share of the full run, and then a run
  with nothing new (the floor of every run);
- replay throughput of the shipped unassign template (close events/s; as bench_replay.py);
- every dashboard page query (as bench_dashboard.py) on the full run's warehouse: slowest median and p95.

Figures are ratios against baselines taken on the same machine in the same run; this is a
measurement, never a test (no time is asserted anywhere). See docs/performance.md.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import duckdb

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
BIN = Path(sys.executable).parent
FORMATS = ("jsonl", "csv", "parquet")
EVENTS_PER_CONVERSATION = 11.3  # what `closeconv generate` writes per conversation, reopens included
PROGRESS_LINE = re.compile(r"^\s+(?P<asset>[a-z_]+): .*\[(?P<seconds>\d+(?:\.\d+)?)s\]\s*$")
ASSETS = ("landing_files", "events", "workflows", "conversations", "warehouse")


def parse_size(text: str) -> int:
    match = re.fullmatch(r"(\d+(?:\.\d+)?)([kKmM]?)", text.strip())
    if not match:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (use 100000, 500k, 1M, 5M, 10M)")
    factor = {"": 1, "k": 1_000, "m": 1_000_000}[match.group(2).lower()]
    return int(float(match.group(1)) * factor)


# --------------------------------------------------------------------------------------
# Peak RSS of a process tree, polled from /proc (psutil is not a dependency)


def _children(pid: int) -> list[int]:
    found = []
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{tid}/children") as fh:
                found += [int(c) for c in fh.read().split()]
    except OSError:
        pass
    return found


def _rss_bytes(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, IndexError, ValueError):
        return 0


class TreePeakRss:
    """Polls the summed RSS of a process and all its descendants; keeps the peak."""

    def __init__(self, pid: int, interval: float = 0.05):
        self.pid, self.interval, self.peak = pid, interval, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def _poll(self) -> None:
        while not self._stop.is_set():
            tree, todo = [], [self.pid]
            while todo:
                pid = todo.pop()
                tree.append(pid)
                todo += _children(pid)
            self.peak = max(self.peak, sum(_rss_bytes(p) for p in tree))
            self._stop.wait(self.interval)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


# --------------------------------------------------------------------------------------
# The measured steps


@dataclass
class RunResult:
    seconds: float
    peak_rss: int
    records_read: int
    assets: dict[str, float] = field(default_factory=dict)


def closeconv(*args: str) -> list[str]:
    return [str(BIN / "closeconv"), *args]


def generate(landing: Path, reference: Path, fmt: str, conversations: int, seed: int) -> None:
    cmd = closeconv("generate", "-n", str(conversations), "--format", fmt, "--seed", str(seed),
                    "--out", str(landing), "--reference", str(reference))
    help_text = subprocess.run(closeconv("generate", "--help"), capture_output=True, text=True).stdout
    if "--force" in help_text:  # `generate` refuses to overwrite without it (issue 7); older CLIs lack it
        cmd.append("--force")
    subprocess.run(cmd, check=True, capture_output=True, text=True)


def closeconv_run(work: Path, landing: Path, reference: Path, memory_limit: str | None = None) -> RunResult:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLOSECONV_") and k != "DAGSTER_HOME"}
    cmd = closeconv("run", "--landing", str(landing), "--warehouse", str(work / "warehouse.duckdb"),
                    "--workflows", str(ROOT / "workflows"), "--reference", str(reference), "--timezone", "UTC")
    if memory_limit:
        cmd += ["--memory-limit", memory_limit]
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=work, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    with TreePeakRss(proc.pid) as rss:
        output, _ = proc.communicate()
    seconds = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"closeconv run failed (exit {proc.returncode}):\n{output}")
    assets = {}
    for line in output.splitlines():
        match = PROGRESS_LINE.match(line)
        if match:
            assets[match["asset"]] = float(match["seconds"])
    read = re.search(r"records read\s+([\d,]+)", output)
    return RunResult(seconds, rss.peak, int(read.group(1).replace(",", "")) if read else 0, assets)


def duckdb_load(work: Path, landing: Path, fmt: str) -> float:
    """The floor: DuckDB alone loading the same files into a table in a DuckDB file."""
    reader = {
        "jsonl": f"read_json('{landing}/**/*.jsonl*', format='newline_delimited', ignore_errors=true)",
        "csv": f"read_csv('{landing}/**/*.csv*', header=true, all_varchar=true, ignore_errors=true)",
        "parquet": f"read_parquet('{landing}/**/*.parquet', union_by_name=true)",
    }[fmt]
    path = work / "baseline.duckdb"
    path.unlink(missing_ok=True)
    con = duckdb.connect(str(path))
    try:
        started = time.perf_counter()
        con.sql(f"CREATE TABLE t AS SELECT * FROM {reader}")
        con.sql("CHECKPOINT")
        return time.perf_counter() - started
    finally:
        con.close()
        path.unlink(missing_ok=True)


def replay_closes_per_second(closes: int) -> float:
    sys.path.insert(0, str(HERE))
    from bench_replay import build_events  # the same synthetic closes as bench_replay.py

    from closeconv.workflows import load_workflows, replay_workflows

    con = duckdb.connect()
    con.sql("SET TimeZone='UTC'")
    build_events(con, closes)
    workflows = [w for w in load_workflows(ROOT / "workflows") if w.id == "unassign-after-close"] or \
        load_workflows(ROOT / "workflows")
    stats = replay_workflows(con, workflows)
    con.close()
    return closes / stats.seconds


# --------------------------------------------------------------------------------------


def dashboard_figures(warehouse: Path, repeat: int) -> dict[str, str]:
    """Every dashboard page query (bench_dashboard.py's set, through the app's `Warehouse`) on the
    full run's warehouse: the slowest median and p95, and how many meet issue 6's target."""
    sys.path.insert(0, str(HERE))
    from bench_dashboard import TARGET_MEDIAN_MS, TARGET_P95_MS, measure_page_queries

    from closeconv.reports.access import Warehouse

    wh = Warehouse(warehouse)
    closed = wh.scalar("SELECT count(*) FROM conversations WHERE status = 'closed'")
    pages = measure_page_queries(wh, repeat)[1:]  # the first is the count(*) baseline
    slowest_median = max(pages, key=lambda r: r.median_ms)
    slowest_p95 = max(pages, key=lambda r: r.p95_ms)
    return {
        "dashboard: closed conversations": f"{closed:,}",
        "dashboard: slowest query median (ms)": f"{slowest_median.median_ms:.1f}",
        "dashboard: slowest query p95 (ms)": f"{slowest_p95.p95_ms:.1f}",
        "dashboard: queries within target": (f"{sum(r.meets_target for r in pages)}/{len(pages)}"
                                             f" (median<={TARGET_MEDIAN_MS:.0f}, p95<={TARGET_P95_MS:.0f} ms)"),
        "dashboard: slowest query (by median)": slowest_median.name,
    }


def settle() -> None:
    """Write back every dirty page before a timed step, so that each step pays for its own writes
    only: without it, the full run's and the generator's gigabytes still being written back made
    the next step's own writes wait (the +1% run's byte copy of the published file took 4.5 s
    right after a 5M full run, 0.3-1.3 s otherwise)."""
    os.sync()


def measure_format(root: Path, fmt: str, conversations: int, dashboard_repeat: int = 10,
                   memory_limit: str | None = None) -> dict[str, str]:
    work = root / fmt
    landing, reference = work / "landing", work / "reference"
    landing.mkdir(parents=True)
    generate(landing, reference, fmt, conversations, seed=42)
    settle()
    baseline = duckdb_load(work, landing, fmt)
    settle()
    full = closeconv_run(work, landing, reference, memory_limit)
    # 1% new events in a new file (another seed: new ids, new contacts), then the next run.
    extra = work / "extra"
    generate(extra, work / "reference-extra", fmt, max(1, conversations // 100), seed=4242)
    for i, path in enumerate(sorted(p for p in extra.rglob("*") if p.is_file())):
        shutil.move(path, landing / f"incremental-{i}-{path.name}")
    dashboard = dashboard_figures(work / "warehouse.duckdb", repeat=dashboard_repeat)
    settle()
    incremental = closeconv_run(work, landing, reference, memory_limit)
    settle()
    # What every run of a quiet hour costs: the same folder again, no new file.
    nothing_new = closeconv_run(work, landing, reference, memory_limit)
    row = {
        "events read": f"{full.records_read:,}",
        "full run: closeconv run (s)": f"{full.seconds:.2f}",
        "DuckDB alone: load the same files (s)": f"{baseline:.2f}",
        "ratio run / DuckDB load": f"{full.seconds / baseline:.1f}x",
        "events per second (run)": f"{full.records_read / full.seconds:,.0f}",
        "peak RSS, process tree (MiB)": f"{full.peak_rss / 2**20:,.0f}",
        "memory limit (--memory-limit)": memory_limit or "none",
    }
    for asset in ASSETS:
        row[f"  asset {asset} (s)"] = f"{full.assets[asset]:.2f}" if asset in full.assets else "not reported"
    row["incremental run, +1% events (s)"] = f"{incremental.seconds:.2f}"
    row["incremental / full run"] = f"{incremental.seconds / full.seconds:.0%}"
    row["run with nothing new (s)"] = f"{nothing_new.seconds:.2f}"
    row["nothing new / full run"] = f"{nothing_new.seconds / full.seconds:.0%}"
    # The warehouse asset is the publish step (copy into a new file + atomic rename).
    for label, run in (("full", full), ("incremental", incremental)):
        seconds = run.assets.get("warehouse")
        row[f"publish, {label} run (s)"] = f"{seconds:.2f}" if seconds is not None else "not reported"
    row.update(dashboard)
    return row


def print_table(columns: dict[str, dict[str, str]]) -> None:
    names = list(next(iter(columns.values())))
    width = max(len(n) for n in names)
    col = max(12, *(len(v) for c in columns.values() for v in c.values()), *(len(f) for f in columns))
    print(f"{'metric':<{width}}  " + "  ".join(f"{f:>{col}}" for f in columns))
    print("-" * (width + (col + 2) * len(columns)))
    for name in names:
        print(f"{name:<{width}}  " + "  ".join(f"{c.get(name, ''):>{col}}" for c in columns.values()))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--events", type=parse_size, help="about this many events: 1M, 5M, 10M, 200k")
    size.add_argument("--conversations", type=int, help="this many generated conversations")
    parser.add_argument("--format", choices=[*FORMATS, "all"], default="jsonl")
    parser.add_argument("--replay-closes", type=parse_size, default=None,
                        help="closes for the replay figure (default: the number of conversations)")
    parser.add_argument("--memory-limit", help="pass --memory-limit to both runs (e.g. 3GB): DuckDB spills past it")
    parser.add_argument("--dashboard-repeat", type=int, default=10,
                        help="timed runs of each dashboard page query (after one warm-up)")
    parser.add_argument("--keep", type=Path, help="work in this folder and keep it (default: a temp folder)")
    args = parser.parse_args(argv)
    conversations = args.conversations or round((args.events or 1_000_000) / EVENTS_PER_CONVERSATION)
    formats = FORMATS if args.format == "all" else (args.format,)

    root = args.keep or Path(tempfile.mkdtemp(prefix="closeconv-bench-"))
    root.mkdir(parents=True, exist_ok=True)
    try:
        columns = {}
        for fmt in formats:
            print(f"bench: {fmt}, {conversations:,} conversations …", file=sys.stderr, flush=True)
            columns[fmt] = measure_format(root, fmt, conversations, args.dashboard_repeat, args.memory_limit)
        closes_per_s = replay_closes_per_second(args.replay_closes or conversations)
        for column in columns.values():
            column["replay, unassign template (closes/s)"] = f"{closes_per_s:,.0f}"
        print_table(columns)
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
