"""Pipeline throughput and memory, against baselines measured in the same run.

    uv run python benchmarks/bench_pipeline.py [--conversations N]

Baselines (same data, same machine, same run):
- DuckDB's own `read_json` of the landing file: the floor for reading JSON lines;
- a plain per-event Python loop that sessionizes and computes FRT (what "no per-event Python"
  avoids), on the same events.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import tempfile
import time
from pathlib import Path

import duckdb

from closeconv.sample import generate_sample
from closeconv.pipeline import build_workflow_tables
from closeconv.ingest import stage_landing_files
from closeconv.pipeline import build_conversation_tables, build_events


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def python_loop_baseline(path: Path) -> tuple[float, int]:
    """Naive per-event Python: parse, sort, sessionize, first response per conversation."""
    started = time.perf_counter()
    rows = []
    with open(path) as fh:
        for line in fh:
            try:
                e = json.loads(line)
            except ValueError:
                continue
            if isinstance(e, dict) and e.get("contact_id") and isinstance(e.get("occurred_at"), str):
                rows.append(e)
    rank = {"conversation.opened": 0, "message.received": 1, "message.sent": 2,
            "contact.assignee.updated": 3, "conversation.closed": 4}
    rows.sort(key=lambda e: (e["contact_id"], e["occurred_at"], rank.get(e["event_type"], 9), e["event_id"]))
    open_conv: dict[str, list] = {}
    conversations = 0
    for e in rows:
        c, t = e["contact_id"], e["event_type"]
        conv = open_conv.get(c)
        if conv is None and t in ("message.received", "conversation.opened"):
            open_conv[c] = [e["occurred_at"], None]
            conversations += 1
        elif conv is not None and t == "message.sent" and e.get("source") == "user" and conv[1] is None:
            conv[1] = e["occurred_at"]
        elif conv is not None and t == "conversation.closed":
            del open_conv[c]
    return time.perf_counter() - started, conversations


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--conversations", type=int, default=100_000)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="closeconv-bench-"))
    try:
        landing = work / "landing"
        gen = generate_sample(landing, conversations=args.conversations, seed=1)
        events_file = gen.files[0]
        n = gen.events_written
        print(f"data: {n:,} events, {args.conversations:,} conversations, {events_file.stat().st_size / 1e6:.0f} MB JSONL")

        con = duckdb.connect(str(work / "stage.duckdb"))
        con.sql("SET TimeZone = 'UTC'")
        t0 = time.perf_counter()
        stage_landing_files(con, landing)
        t1 = time.perf_counter()
        counts = build_events(con)
        t2 = time.perf_counter()
        build_workflow_tables(con, Path("workflows"), None)
        build_conversation_tables(con, "America/New_York")
        t3 = time.perf_counter()
        # A second run with no new files: parsing is cached per file version.
        r0 = time.perf_counter()
        stage_landing_files(con, landing)
        build_events(con)
        build_workflow_tables(con, Path("workflows"), None)
        build_conversation_tables(con, "America/New_York")
        rerun = time.perf_counter() - r0
        con.close()

        base = duckdb.connect()
        b0 = time.perf_counter()
        base.sql(f"SELECT count(*) FROM read_json('{events_file}', format='newline_delimited', ignore_errors=true, union_by_name=true)").fetchall()
        raw_read = time.perf_counter() - b0
        loop_s, loop_convs = python_loop_baseline(events_file)

        total = t3 - t0
        print(f"parse landing (cached per file)  {t1 - t0:6.2f}s  {n / (t1 - t0):>12,.0f} events/s")
        print(f"validate+dedupe+sessionize       {t2 - t1:6.2f}s  {n / (t2 - t1):>12,.0f} events/s")
        print(f"replay + conversations + daily    {t3 - t2:6.2f}s")
        print(f"pipeline total (no Dagster)      {total:6.2f}s  {n / total:>12,.0f} events/s  loaded={counts.events_loaded:,} rejected={counts.rejected:,}")
        print(f"re-run, no new files (cached)    {rerun:6.2f}s  {n / rerun:>12,.0f} events/s")
        print(f"baseline duckdb read_json only   {raw_read:6.2f}s  {n / raw_read:>12,.0f} events/s")
        print(f"baseline per-event Python loop   {loop_s:6.2f}s  {n / loop_s:>12,.0f} events/s  (sessionize+FRT only, {loop_convs:,} convs)")
        print(f"ratio pipeline / read_json time  {total / raw_read:6.2f}x   (full validation, quarantine and metrics vs a bare read)")
        print(f"ratio python loop / pipeline     {loop_s / total:6.2f}x   (>1: pipeline faster; the loop validates nothing, quarantines nothing, computes FRT only)")
        print(f"ratio python loop / re-run       {loop_s / rerun:6.2f}x")
        print(f"peak RSS                          {rss_mb():,.0f} MB")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
