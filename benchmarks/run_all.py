"""Run every benchmark and print its figures and ratios (each compares against a baseline
measured in the same run, since these machines are noisy).

    uv run python benchmarks/run_all.py            # default sizes (~1M events)
    uv run python benchmarks/run_all.py --quick    # small sizes, a smoke run
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    runs = [
        ("generate", ["bench_generate.py", "-n", "5000" if args.quick else "95000"]),
        ("pipeline", ["bench_pipeline.py", "--conversations", "5000" if args.quick else "95000"]),
        ("replay", ["bench_replay.py", *(["--closes", "50000"] if args.quick else [])]),
    ]
    failed = 0
    for name, cmd in runs:
        print(f"\n=== {name} ===", flush=True)
        rc = subprocess.run([sys.executable, str(HERE / cmd[0]), *cmd[1:]]).returncode
        failed += rc != 0
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
