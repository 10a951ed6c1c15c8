"""Benchmark: the workflows and conversations steps over everything vs over a +1% batch's contacts.

    nice .venv/bin/python benchmarks/bench_scoped_steps.py --work /tmp/bss            # 1M events
    nice .venv/bin/python benchmarks/bench_scoped_steps.py --work /tmp/bss --sequential

Builds, once per --work folder, the staging file of bench.py's +1% run just before its
downstream steps: `closeconv generate -n 88496 --seed 42` (about 1M events) run through every
step, then the +1% files (`-n 884 --seed 4242`) staged and `build_events` run. Then, in
alternated rounds on fresh copies of that file, it times `build_workflow_tables` and
`build_conversation_tables` (wall and process CPU seconds) with the journal saying
"everything" or naming the batch's contacts (what the events step journals for them), and
`user_messages_15min` alone (recomputed in full by a scoped run). A measurement, not a test.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import duckdb

from closeconv import changes
from closeconv.ingest import stage_landing_files
from closeconv.pipeline import build_conversation_tables, build_events, build_workflow_tables
from closeconv.user_activity import build_user_messages

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
TZ = "UTC"


def generate(out: Path, reference: Path, conversations: int, seed: int) -> None:
    subprocess.run([str(BIN / "closeconv"), "generate", "-n", str(conversations), "--seed", str(seed),
                    "--out", str(out), "--reference", str(reference), "--force"], check=True, capture_output=True)


def workflows_dir(work: Path, sequential: bool) -> Path:
    if not sequential:
        return ROOT / "workflows"
    folder = work / "workflows-sequential"
    folder.mkdir(exist_ok=True)
    shutil.copy(ROOT / "workflows" / "unassign-after-close.yaml", folder)
    for name, team in (("round-robin-in-team.yaml", "t_support"), ("least-open-contacts.yaml", "t_tech")):
        text = (ROOT / "workflows" / "templates" / name).read_text()
        (folder / name).write_text(text.replace("enabled: false", "enabled: true").replace("team_id: support", f"team_id: {team}"))
    return folder


def prepare(work: Path, conversations: int, wf_dir: Path) -> Path:
    base = work / f"base-{wf_dir.name}.duckdb"
    if base.exists():
        return base
    landing, reference, extra = work / "landing", work / "reference", work / "extra"
    if not landing.exists():
        generate(landing, reference, conversations, seed=42)
        generate(extra, work / "reference-extra", max(1, conversations // 100), seed=4242)
    for f in landing.glob("incremental-*"):
        f.unlink()
    staging = work / "building.duckdb"
    staging.unlink(missing_ok=True)
    with duckdb.connect(str(staging)) as con:
        stage_landing_files(con, landing)
        build_events(con)
        build_workflow_tables(con, wf_dir, reference)
        build_conversation_tables(con, TZ, reference)
        changes.clear(con, changes.PUBLISH)
        extra_files = sorted(extra.glob("events-*"))
        for i, path in enumerate(extra_files):
            shutil.copy(path, landing / f"incremental-{i}-{path.name}")
        con.sql("CREATE OR REPLACE TABLE _bench_batch_contacts AS SELECT DISTINCT contact_id FROM read_json_auto(?, ignore_errors = true) "
                "WHERE contact_id IS NOT NULL", params=[[str(p) for p in extra_files]])
        stage_landing_files(con, landing)
        build_events(con)
    staging.rename(base)
    return base


def timed(fn, *args) -> tuple[float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    fn(*args)
    return time.perf_counter() - wall, time.process_time() - cpu


def one_round(base: Path, work: Path, wf_dir: Path, scoped: bool) -> dict[str, tuple[float, float]]:
    path = work / "run.duckdb"
    shutil.copy(base, path)
    reference = work / "reference"
    out = {}
    with duckdb.connect(str(path)) as con:
        for step in (changes.WORKFLOWS, changes.CONVERSATIONS):
            changes.clear(con, step)
        if scoped:
            changes.mark_contacts(con, [changes.WORKFLOWS, changes.CONVERSATIONS], "SELECT contact_id FROM _bench_batch_contacts")
        else:
            changes.mark_everything(con, [changes.WORKFLOWS, changes.CONVERSATIONS])
        out["workflows"] = timed(build_workflow_tables, con, wf_dir, reference)
        after = changes.scope_of(con, changes.CONVERSATIONS)
        print(f"  conversations scope: {'everything' if after.everything else f'{after.contacts:,} contacts'} "
              f"of {con.sql('SELECT count(DISTINCT contact_id) FROM conversations').fetchall()[0][0]:,}")
        out["conversations"] = timed(build_conversation_tables, con, TZ, reference)
        out["user_messages_15min alone"] = timed(build_user_messages, con)
    path.unlink()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--conversations", type=int, default=88_496)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--sequential", action="store_true", help="round robin + least open contacts enabled")
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    wf_dir = workflows_dir(args.work, args.sequential)
    base = prepare(args.work, args.conversations, wf_dir)
    with duckdb.connect(str(base), read_only=True) as con:
        events, contacts = con.sql("SELECT (SELECT count(*) FROM events), (SELECT count(*) FROM _bench_batch_contacts)").fetchall()[0]
    print(f"{events:,} events; the +1% batch touches {contacts:,} contacts; workflows: {wf_dir}")
    results: dict[tuple[str, str], list[tuple[float, float]]] = {}
    for r in range(args.rounds):
        for scoped in ((False, True) if r % 2 == 0 else (True, False)):
            mode = "scoped" if scoped else "everything"
            for step, figures in one_round(base, args.work, wf_dir, scoped).items():
                results.setdefault((step, mode), []).append(figures)
                print(f"round {r + 1} {mode:10} {step:26} {figures[0]:6.2f} s wall {figures[1]:6.2f} s CPU", flush=True)
    print("median wall / CPU s:")
    for (step, mode), runs in sorted(results.items()):
        print(f"  {step:26} {mode:10} {statistics.median(w for w, _ in runs):6.2f} / "
              f"{statistics.median(c for _, c in runs):6.2f}")


if __name__ == "__main__":
    main()
