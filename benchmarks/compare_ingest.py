"""`stage_landing_files` (the `landing_files` asset's domain call) of two checkouts, alternated in
one process on fresh staging files, so that both see the same machine load.

    python benchmarks/compare_ingest.py --landing /tmp/land1m --rounds 3 /tmp/main-checkout .

Prints wall and process CPU seconds (user + system over all threads) of every call, then the
minimum and median per checkout (docs/performance.md, "Profile: ingest before/after").
"""

from __future__ import annotations

import argparse
import importlib
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

import duckdb


def _load_ingest(root: str):
    """closeconv.ingest as found under `root` (the package is imported afresh for each root)."""
    sys.path.insert(0, root)
    try:
        for name in [m for m in sys.modules if m == "closeconv" or m.startswith("closeconv.")]:
            del sys.modules[name]
        return importlib.import_module("closeconv.ingest")
    finally:
        sys.path.remove(root)


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--landing", type=Path, required=True)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("roots", nargs=2, help="two checkouts (folders holding closeconv/)")
    args = parser.parse_args()
    modules = [(root, _load_ingest(os.path.abspath(root))) for root in args.roots]
    times: dict[str, list[tuple[float, float]]] = {root: [] for root, _ in modules}
    with tempfile.TemporaryDirectory() as tmp:
        for round_ in range(args.rounds):
            for i, (root, ingest) in enumerate(modules):
                con = duckdb.connect(str(Path(tmp, f"{round_}-{i}.duckdb")))
                con.sql("SET TimeZone = 'UTC'")
                wall, cpu = time.perf_counter(), _cpu()
                ingest.stage_landing_files(con, args.landing)
                con.close()
                times[root].append((time.perf_counter() - wall, _cpu() - cpu))
                print(f"{root}: {times[root][-1][0]:.2f} s, {times[root][-1][1]:.2f} CPU-s, "
                      f"load {os.getloadavg()[0]:.1f}", flush=True)
    for root, rows in times.items():
        walls, cpus = sorted(w for w, _ in rows), sorted(c for _, c in rows)
        print(f"{root}: wall min {walls[0]:.2f} median {walls[len(walls) // 2]:.2f} s; "
              f"CPU min {cpus[0]:.2f} median {cpus[len(cpus) // 2]:.2f} s")
    print(f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024} MiB")


if __name__ == "__main__":
    main()
