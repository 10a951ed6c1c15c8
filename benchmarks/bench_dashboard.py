"""Latency of every query behind a dashboard page (closeconv.reports), on a generated warehouse.

    uv run python benchmarks/bench_dashboard.py --conversations 1000000 --dir /tmp/cc-bench-1m
    uv run python benchmarks/bench_dashboard.py --conversations 20000 --dir /tmp/cc-bench --repeat 5
    uv run python benchmarks/bench_dashboard.py --conversations 150000 --replicate 6 --dir /tmp/cc-bench-150k

The folder holds the landing files, reference data and warehouse; a later run with the same
--conversations, --days and --seed reuses them (delete the folder to rebuild). Each query runs
--repeat times after one warm-up, through the same `Warehouse` the app uses (so each timing
includes attaching and detaching the file). Printed per query: median and p95 milliseconds, and
the ratio of the median to a baseline measured in the same run, `SELECT count(*) FROM
conversations` through the same path (these machines are noisy; the ratio travels better).
--replicate K is a quick stand-in for a K-times larger run, not a substitute for it: after
building the warehouse through the pipeline it copies every table K times with suffixed ids
(same days, so K times the conversations per day) into warehouse-xK.duckdb and measures that.

Targets (issue 6, point 10): median <= 100 ms and p95 <= 250 ms per query at 1M closed
conversations. The exit status is 1 when a query misses them.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from closeconv.sample import generate_sample, write_reference  # noqa: E402
from closeconv.reports import charts, conversations, health, kpis, users, workflows  # noqa: E402
from closeconv.reports.access import Warehouse  # noqa: E402
from closeconv.reports.filters import Filters, resolve_period  # noqa: E402

TARGET_MEDIAN_MS = 100.0
TARGET_P95_MS = 250.0


def build(folder: Path, n: int, days: int, seed: int, timezone: str) -> Path:
    """Generate the sample and run the real pipeline (`closeconv run`) unless the folder has it."""
    marker = folder / "bench.json"
    wanted = {"conversations": n, "days": days, "seed": seed, "timezone": timezone}
    warehouse = folder / "warehouse.duckdb"
    if warehouse.exists() and marker.exists() and json.loads(marker.read_text()) == wanted:
        print(f"reusing {warehouse}", flush=True)
        return warehouse
    landing, reference = folder / "landing", folder / "reference"
    for d in (landing, reference):
        d.mkdir(parents=True, exist_ok=True)
        for old in d.iterdir():
            old.unlink()
    started = time.perf_counter()
    generate_sample(landing, conversations=n, seed=seed, days=days, files=max(1, n // 250_000))
    write_reference(reference)
    print(f"generated {n:,} conversations over {days} days in {time.perf_counter() - started:.0f}s", flush=True)
    env = dict(os.environ, CLOSECONV_LANDING=str(landing), CLOSECONV_WAREHOUSE=str(warehouse),
               CLOSECONV_REFERENCE=str(reference), CLOSECONV_WORKFLOWS=str(REPO / "workflows"),
               CLOSECONV_TIMEZONE=timezone, DAGSTER_HOME=str(folder / "dagster"))
    (folder / "dagster").mkdir(exist_ok=True)
    env.pop("CLOSECONV_STATE", None)
    started = time.perf_counter()
    subprocess.run([str(Path(sys.executable).parent / "closeconv"), "run"], env=env, cwd=folder, check=True,
                   stdout=subprocess.DEVNULL)
    print(f"pipeline built {warehouse} in {time.perf_counter() - started:.0f}s", flush=True)
    marker.write_text(json.dumps(wanted))
    return warehouse


# Tables copied K times by --replicate, with these id columns suffixed per copy.
REPLICATED_IDS: dict[str, tuple[str, ...]] = {
    "events": ("event_id", "contact_id", "conversation_id"),
    "conversations": ("conversation_id", "contact_id"),
    "assignments": ("contact_id", "event_id", "run_id", "action_id", "trigger_event_id"),
    "workflow_runs": ("run_id", "trigger_event_id", "contact_id", "conversation_id"),
    "workflow_actions": ("action_id", "run_id", "contact_id", "trigger_event_id", "conversation_id", "reconciled_event_id"),
    "workflow_drift": ("contact_id", "run_id", "action_id", "trigger_event_id", "conversation_id"),
}
# Physical order the pipeline writes (zone maps depend on it).
REPLICATED_ORDER = {"events": "occurred_at, event_id", "conversations": "opened_at, conversation_id",
                    "workflow_runs": "triggered_at", "workflow_drift": "expected_unassigned_at"}


def replicate(source: Path, copies: int) -> Path:
    """source's tables, `copies` times over with suffixed ids, in a new file beside it."""
    import duckdb

    target = source.with_name(f"warehouse-x{copies}.duckdb")
    marker = target.with_suffix(".source")
    stamp = f"{source.stat().st_ino}:{source.stat().st_mtime_ns}"
    if target.exists() and marker.exists() and marker.read_text() == stamp:
        print(f"reusing {target}", flush=True)
        return target
    target.unlink(missing_ok=True)
    started = time.perf_counter()
    con = duckdb.connect(str(target))
    con.sql("SET TimeZone = 'UTC'")
    con.sql(f"ATTACH '{source}' AS src (READ_ONLY)")
    for (table,) in con.sql("SELECT table_name FROM duckdb_tables() WHERE database_name = 'src'").fetchall():
        ids = REPLICATED_IDS.get(table)
        if ids is None:
            con.sql(f"CREATE TABLE {table} AS SELECT * FROM src.{table}")
            continue
        replaced = ", ".join(f"{c} || '_' || k AS {c}" for c in ids)
        order = REPLICATED_ORDER.get(table, ids[0])
        con.sql(f"CREATE TABLE {table} AS SELECT * REPLACE ({replaced}) FROM src.{table}, range({copies}) r(k) "
                f"ORDER BY {order}, k")
    con.close()
    marker.write_text(stamp)
    print(f"replicated {source.name} x{copies} into {target} in {time.perf_counter() - started:.0f}s", flush=True)
    return target


def timed(fn, repeat: int) -> list[float]:
    fn()  # warm-up: OS page cache, DuckDB extension loading
    out = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        out.append((time.perf_counter() - started) * 1000)
    return out


def p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]


@dataclass(frozen=True)
class QueryTiming:
    name: str
    median_ms: float
    p95_ms: float

    @property
    def meets_target(self) -> bool:
        return self.median_ms <= TARGET_MEDIAN_MS and self.p95_ms <= TARGET_P95_MS


def describe(wh: Warehouse) -> str:
    closed = wh.scalar("SELECT count(*) FROM conversations WHERE status = 'closed'")
    events = wh.scalar("SELECT count(*) FROM events")
    return f"{closed:,} closed conversations, {events:,} events, timezone {wh.timezone}"


def page_queries(wh: Warehouse) -> dict:
    """Every query behind a dashboard page, as the app calls it; the first is the baseline."""
    today = wh.closed_day_range()[1]  # presets relative to the data's last day, so they select data
    some_id = wh.scalar("SELECT conversation_id FROM conversations WHERE status = 'closed' "
                        "ORDER BY closed_at DESC LIMIT 1 OFFSET 100")
    user = wh.scalar("SELECT closed_by_user_id FROM conversations WHERE closed_by_user_id IS NOT NULL LIMIT 1")
    all_time = Filters()
    month = Filters(preset="last_30_days")
    week = Filters(preset="last_7_days")
    billing = Filters(preset="last_30_days", category=("Billing",), closed_by_source=("user",))
    search = Filters(q=some_id)
    return {
        "baseline: SELECT count(*) FROM conversations": lambda: wh.scalar("SELECT count(*) FROM conversations"),
        "list: count, all time": lambda: conversations.count_conversations(wh, all_time, today),
        "list: page 1, all time, by close time": lambda: conversations.list_conversations(wh, all_time, today),
        "list: page 200, last 30 days": lambda: conversations.list_conversations(wh, month, today, offset=200 * 50),
        "list: count, Billing by user, 30 days": lambda: conversations.count_conversations(wh, billing, today),
        "list: page 1 by FRT, Billing, 30 days": lambda: conversations.list_conversations(
            wh, billing, today, sort="first_response_time_s"),
        "list: page 1 by resolution, all time": lambda: conversations.list_conversations(
            wh, all_time, today, sort="resolution_time_s"),
        "list: search by conversation id": lambda: conversations.list_conversations(wh, search, today),
        "list: filter options": lambda: conversations.filter_options(wh),
        "drill-down: one conversation": lambda: conversations.conversation_detail(wh, some_id),
        "reports: KPIs, last 7 days + previous": lambda: kpis.kpis(wh, week, today),
        "reports: KPIs, all time": lambda: kpis.kpis(wh, all_time, today),
        "reports: opened vs closed per day, 30 days": lambda: charts.opened_vs_closed_per_day(wh, month, today),
        "reports: opened vs closed per day, all time": lambda: charts.opened_vs_closed_per_day(wh, all_time, today),
        "reports: FRT breakdown, 30 days": lambda: charts.frt_breakdown(wh, month, today),
        "reports: by category, 30 days": lambda: charts.by_category(wh, month, today),
        "reports: by channel, 30 days": lambda: charts.by_channel(wh, month, today),
        "reports: by closed-by source, 30 days": lambda: charts.by_closed_by_source(wh, month, today),
        "users: report, last 7 days": lambda: users.users_report(wh, week, today),
        "users: report, all time": lambda: users.users_report(wh, all_time, today),
        "users: report, one closer, 30 days": lambda: users.users_report(
            wh, Filters(preset="last_30_days", closed_by_user=(user,)), today),
        "workflows: runs per day": lambda: workflows.runs_per_day(wh),
        "workflows: unassignments per day": lambda: workflows.unassign_actions_per_day(wh),
        "workflows: skipped by reason": lambda: workflows.skipped_by_reason(wh),
        "workflows: drift list page": lambda: workflows.drift_list(wh),
        "health: last run": lambda: health.last_run(wh),
        "health: freshness": lambda: health.freshness(wh, wh.data_as_of),
        "health: rejected by reason": lambda: health.rejected_by_reason(wh),
    }


def measure_page_queries(wh: Warehouse, repeat: int = 15) -> list[QueryTiming]:
    """Median and p95 of each page query over `repeat` runs after one warm-up."""
    out = []
    for name, fn in page_queries(wh).items():
        ms = timed(fn, repeat)
        out.append(QueryTiming(name, statistics.median(ms), p95(ms)))
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--conversations", type=int, default=100_000)
    ap.add_argument("--days", type=int, default=60, help="Days of generated history.")
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--timezone", default="America/New_York")
    ap.add_argument("--dir", type=Path, default=None, help="Folder to build in or reuse (default: a temp folder).")
    ap.add_argument("--repeat", type=int, default=15)
    ap.add_argument("--replicate", type=int, default=1, help="Measure K copies of the built warehouse (a stand-in).")
    args = ap.parse_args()
    folder = args.dir or Path(tempfile.mkdtemp(prefix="cc-bench-dashboard-"))
    folder.mkdir(parents=True, exist_ok=True)
    path = build(folder, args.conversations, args.days, args.seed, args.timezone)
    if args.replicate > 1:
        path = replicate(path, args.replicate)
    wh = Warehouse(path)
    print(f"warehouse: {describe(wh)}; {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}", flush=True)
    results = measure_page_queries(wh, args.repeat)
    width = max(len(r.name) for r in results)
    print(f"\n{'query':<{width}}  median_ms  p95_ms  x_baseline  target")
    baseline = results[0].median_ms
    for r in results:
        print(f"{r.name:<{width}}  {r.median_ms:9.1f}  {r.p95_ms:6.1f}  {r.median_ms / baseline:10.1f}  "
              f"{'ok' if r.meets_target else 'MISSED'}", flush=True)
    missed = sum(not r.meets_target for r in results[1:])
    today = wh.closed_day_range()[1]
    all_time, month = Filters(), Filters(preset="last_30_days")

    dest = folder / "export.csv"
    period = resolve_period(month, wh.timezone, today)
    started = time.perf_counter()
    rows = conversations.export_conversations_csv(wh, all_time, today, dest)
    seconds = time.perf_counter() - started
    print(f"\nCSV export, every closed conversation: {rows:,} rows, {dest.stat().st_size / 1e6:.0f} MB "
          f"in {seconds:.1f}s ({rows / seconds:,.0f} rows/s); 30-day period {period.first_day}..{period.last_day}")
    dest.unlink()
    print(f"\n{missed} of {len(results) - 1} queries missed the target (median <= {TARGET_MEDIAN_MS:.0f} ms, "
          f"p95 <= {TARGET_P95_MS:.0f} ms)")
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
