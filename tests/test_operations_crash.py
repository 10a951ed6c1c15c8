"""Crash-safe caches (issue 7, point 2): a run SIGKILLed at any moment leaves the published
warehouse readable and unchanged, and the next run produces the same tables as a run from an
empty staging folder; a damaged or outdated staging database is rebuilt by itself."""

from __future__ import annotations

import os
import random
import signal
import sys
import subprocess
import time
from pathlib import Path

import duckdb
import pytest
from click.testing import CliRunner

from closeconv.cli import main
from closeconv.config import Settings
from operations_helpers import CLOSECONV, content_hash, hermetic_env, project, run_flags, scalar, write_events

BIG_CONTACTS = 70_000  # 210k records: validation of this one file takes seconds, not milliseconds


@pytest.fixture(autouse=True)
def _no_developer_settings(monkeypatch):
    for name in list(os.environ):
        if name.startswith("CLOSECONV_") or name == "DAGSTER_HOME":
            monkeypatch.delenv(name)


def _kill_after(root: Path, marker: str | None, delay: float) -> str:
    """Start `closeconv run`, SIGKILL it `delay` s after it prints `marker` (or after start)."""
    proc = subprocess.Popen([str(CLOSECONV), "run", *run_flags(root)], cwd=root, env=hermetic_env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    seen = []
    try:
        deadline = time.monotonic() + 240
        while marker is not None:
            line = proc.stderr.readline()
            assert line or proc.poll() is None, f"run ended before {marker!r}: {''.join(seen)}"
            seen.append(line)
            if line.strip().startswith(marker):
                break
            assert time.monotonic() < deadline
        time.sleep(delay)
        assert proc.poll() is None, f"run ended before the kill: {''.join(seen)}"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stderr.close()
    return "".join(seen)


def test_sigkill_at_random_moments_never_changes_the_published_warehouse_and_the_next_run_is_correct(tmp_path):
    root = project(tmp_path / "p")
    write_events(root / "landing" / "small.jsonl", range(200))
    warehouse = root / "wh" / "warehouse.duckdb"
    first = CliRunner().invoke(main, ["run", "--quiet", *run_flags(root)])
    assert first.exit_code == 0, first.output
    published = content_hash(warehouse)
    write_events(root / "landing" / "big.jsonl", range(200, 200 + BIG_CONTACTS))

    rng = random.Random(7)
    kill_points = [
        ("landing_files:", rng.uniform(0.2, 1.0)),  # big.jsonl parsed; its validation under way
        (None, rng.uniform(2.0, 8.0)),              # anywhere from start-up to parsing
        ("events:", rng.uniform(0.0, 0.5)),         # replay, metrics or publish under way
    ]
    for marker, delay in kill_points:
        _kill_after(root, marker, delay)
        # Readable, unchanged, and no run recorded that did not publish.
        assert content_hash(warehouse) == published, f"killed after {marker!r}+{delay:.2f}s"
        assert scalar(warehouse, "SELECT count(*) FROM pipeline_runs") == 1

    after = CliRunner().invoke(main, ["run", "--quiet", *run_flags(root)])
    assert after.exit_code == 0, after.output
    assert scalar(warehouse, "SELECT count(*) FROM events") == 3 * (200 + BIG_CONTACTS)

    # The same tables as a run from an empty staging folder (and an empty instance).
    clean = root / "clean" / "warehouse.duckdb"
    fresh = CliRunner().invoke(main, ["run", "--quiet", *run_flags(root, warehouse=clean)])
    assert fresh.exit_code == 0, fresh.output
    assert content_hash(warehouse) == content_hash(clean)


def _run(root: Path):
    result = CliRunner().invoke(main, ["run", "--quiet", *run_flags(root)])
    assert result.exit_code == 0, result.output
    return result


def test_damaged_or_outdated_staging_is_rebuilt_by_itself_with_a_message(tmp_path):
    root = project(tmp_path)
    write_events(root / "landing" / "a.jsonl", range(300))
    write_events(root / "landing" / "b.jsonl", range(300, 500))
    (root / "landing" / "bad.jsonl").write_text('{"event_id": "x"}\nnot json\n')
    warehouse = root / "wh" / "warehouse.duckdb"
    _run(root)
    expected = content_hash(warehouse)
    staging = Settings(warehouse_path=warehouse).staging_path

    # A corrupt file (a disk error, a copy cut short): set aside, rebuilt, same result.
    data = bytearray(staging.read_bytes())
    data[:4096] = os.urandom(4096)
    staging.write_bytes(bytes(data))
    result = _run(root)
    assert "was damaged" in result.output and "rebuilding it" in result.output
    assert content_hash(warehouse) == expected
    assert any(p.name.startswith(staging.name + ".damaged-") for p in staging.parent.iterdir())

    # A staging database from an older closeconv: rebuilt, not misread.
    con = duckdb.connect(str(staging))
    con.sql("UPDATE staging_meta SET value = '1' WHERE key = 'staging_schema'")
    con.close()
    result = _run(root)
    assert "outdated" in result.output
    assert content_hash(warehouse) == expected

    # A cache entry that disagrees with its own bookkeeping (half a file validated): redone.
    con = duckdb.connect(str(staging))
    con.sql("DELETE FROM validated_records WHERE file = 'a.jsonl' AND line > 450")
    con.sql("DELETE FROM validated_records WHERE file = 'b.jsonl' AND line > 300")
    con.close()
    result = _run(root)
    assert "were incomplete" in result.output
    assert content_hash(warehouse) == expected
    assert scalar(warehouse, "SELECT count(*) FROM pipeline_runs") == 4


def test_run_history_survives_a_lost_staging_folder(tmp_path):
    import shutil

    root = project(tmp_path)
    write_events(root / "landing" / "a.jsonl", range(5))
    warehouse = root / "wh" / "warehouse.duckdb"
    _run(root)
    shutil.rmtree(Settings(warehouse_path=warehouse).state_dir)
    _run(root)
    assert scalar(warehouse, "SELECT count(*) FROM pipeline_runs") == 2


KILLED_BETWEEN_CHUNKS = """
import os, sys
from pathlib import Path
import closeconv.ingest as ingest
from closeconv.config import Settings
from closeconv.commands.run import run_pipeline

ingest.VALIDATION_CHUNK_ROWS = 1000  # many chunks in one file
real_sql, chunks = ingest._validation_sql, []

def validation_sql(source):
    if "'big.jsonl'" in source:
        chunks.append(source)
        if len(chunks) == 3:  # two chunks of big.jsonl done: die as SIGKILL would, no cleanup
            os._exit(137)
    return real_sql(source)

ingest._validation_sql = validation_sql
root = Path(sys.argv[1])
run_pipeline(Settings(landing_dir=root / "landing", warehouse_path=root / "wh" / "warehouse.duckdb",
                      workflows_dir=root / "workflows", reference_dir=root / "reference"), quiet=True)
"""


def test_killed_between_validation_chunks_of_one_file_the_next_run_is_correct(tmp_path):
    """Deterministic form of a kill mid-validation: the process dies after two of the many
    validation chunks of one file. That file must not count as validated."""
    root = project(tmp_path / "p")
    write_events(root / "landing" / "big.jsonl", range(3000))  # 9000 records, 9 validation chunks
    proc = subprocess.run([sys.executable, "-c", KILLED_BETWEEN_CHUNKS, str(root)], env=hermetic_env(),
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 137, proc.stderr
    warehouse = root / "wh" / "warehouse.duckdb"
    assert not warehouse.exists()
    after = _run(root)
    assert scalar(warehouse, "SELECT count(*) FROM events") == 9000, after.output
    clean = root / "clean" / "warehouse.duckdb"
    assert CliRunner().invoke(main, ["run", "--quiet", *run_flags(root, warehouse=clean)]).exit_code == 0
    assert content_hash(warehouse) == content_hash(clean)
