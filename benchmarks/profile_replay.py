"""Per-phase profile of `replay_workflows` (the unassign template, vectorized engine) over the
synthetic closes of bench_replay.py (docs/performance.md, "Replay").

    nice .venv/bin/python benchmarks/profile_replay.py --closes 1000000 --rounds 3

Each phase function (reading the timeline, the trigger frame, the engine, the writers' md5
ids, table creates, assignments and drift) is wrapped with wall and process-CPU timers (CPU
includes DuckDB's and Polars' threads: the steadier figure on a shared machine); the nested
writer phases are also inside `write_tables`. The load average is printed with each round.
"""

from __future__ import annotations

import argparse
import functools
import os
import time

import duckdb

import closeconv.workflows.replay as replay
import closeconv.workflows.writers as writers
from bench_replay import ROOT, build_events
from closeconv.workflows import load_workflows

PHASES = {
    replay: ("load_timeline", "recorded_frame", "trigger_frame", "replay_vectorized", "write_tables"),
    writers: ("_md5_ids", "_create", "_write_assignments", "_write_drift"),
}


def timed(totals: dict[str, list[float]], name: str, fn):
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        wall, cpu = time.perf_counter(), time.process_time()
        try:
            return fn(*args, **kwargs)
        finally:
            t = totals.setdefault(name, [0.0, 0.0])
            t[0] += time.perf_counter() - wall
            t[1] += time.process_time() - cpu
    return wrapper


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--closes", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    totals: dict[str, list[float]] = {}
    for module, names in PHASES.items():
        for name in names:
            setattr(module, name, timed(totals, name, getattr(module, name)))
    con = duckdb.connect()
    con.sql("SET TimeZone='UTC'")
    build_events(con, args.closes)
    workflows = load_workflows(ROOT / "workflows")
    for rnd in range(1, args.rounds + 1):
        totals.clear()
        load = os.getloadavg()[0]
        wall, cpu = time.perf_counter(), time.process_time()
        replay.replay_workflows(con, workflows)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        phases = "  ".join(f"{k} {w:.2f}/{c:.2f}" for k, (w, c) in totals.items())
        print(f"round {rnd} (load {load:.1f}): total {wall:.2f}/{cpu:.2f} s (wall/cpu)  {phases}")


if __name__ == "__main__":
    main()
