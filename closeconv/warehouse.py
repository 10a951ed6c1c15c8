"""Staging database and atomic publishing of the analyst-facing warehouse.

DuckDB allows one writer per file, and any other process holding the file open (even
read-only) makes a write connection fail. So the pipeline never writes the published file:
it builds in a private staging database, then copies the public tables into a new file and
swaps it in with an atomic rename. Readers that hold the old file open keep reading the old
version; the next connection sees the new one. A run that fails or is killed before the
rename leaves the previous warehouse untouched.
"""

from __future__ import annotations

import fcntl
import os
import time
import uuid
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator

import duckdb

from closeconv.config import Settings

SCHEMA_VERSION = 1
PUBLISH_STORAGE_VERSION = "v1.5.0"

# Tables analysts see, in the order they are documented (docs/warehouse.md).
PUBLIC_TABLES: tuple[str, ...] = (
    "events",
    "rejected_events",
    "conversations",
    "workflow_runs",
    "workflow_actions",
    "assignments",
    "workflow_drift",
    "daily_conversation_metrics",
    "pipeline_runs",
    "users",
    "teams",
    "categories",
)

LOCK_TIMEOUT_S = 600.0


class PipelineBusyError(RuntimeError):
    pass


def connect_memory() -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    con.sql("SET TimeZone = 'UTC'")
    return con


@contextmanager
def pipeline_lock(settings: Settings, timeout_s: float = LOCK_TIMEOUT_S) -> Iterator[None]:
    """Serialize pipeline steps across processes (a schedule and a sensor may overlap)."""
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    with open(settings.state_dir / "pipeline.lock", "w") as fh:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise PipelineBusyError(
                        f"another closeconv run holds {settings.state_dir / 'pipeline.lock'} "
                        f"for over {timeout_s:.0f}s"
                    ) from None
                time.sleep(0.2)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


@contextmanager
def staging_connection(settings: Settings) -> Iterator[duckdb.DuckDBPyConnection]:
    """The pipeline-private staging database, under the pipeline lock."""
    with pipeline_lock(settings):
        con = duckdb.connect(str(settings.staging_path))
        try:
            con.sql("SET TimeZone = 'UTC'")
            yield con
        finally:
            con.close()


@contextmanager
def transaction(con: duckdb.DuckDBPyConnection) -> Iterator[None]:
    con.sql("BEGIN TRANSACTION")
    try:
        yield
    except BaseException:
        con.sql("ROLLBACK")
        raise
    con.sql("COMMIT")


def ensure_pipeline_runs(con: duckdb.DuckDBPyConnection) -> None:
    con.sql(
        """
        CREATE TABLE IF NOT EXISTS pipeline_runs (
            run_id VARCHAR, published_at TIMESTAMPTZ, timezone VARCHAR, landing_files BIGINT,
            records_read BIGINT, events_loaded BIGINT, duplicates_dropped BIGINT,
            records_rejected BIGINT, conversations_open BIGINT, conversations_closed BIGINT,
            workflow_runs BIGINT, workflow_actions BIGINT, workflow_drift BIGINT,
            schema_version INTEGER)
        """
    )


def publish(con: duckdb.DuckDBPyConnection, settings: Settings, run_id: str) -> dict[str, int]:
    """Copy the public tables from staging (`con`) into a new file and swap it in atomically."""
    target = settings.warehouse_path
    target.parent.mkdir(parents=True, exist_ok=True)
    for stale in target.parent.glob(f".{target.name}.publish-*"):
        stale.unlink(missing_ok=True)  # left by a run that was killed mid-publish
    tmp = target.parent / f".{target.name}.publish-{uuid.uuid4().hex[:12]}"
    ensure_pipeline_runs(con)
    counts = {
        t: con.sql(f"SELECT count(*) FROM {t}").fetchall()[0][0] for t in PUBLIC_TABLES if t != "pipeline_runs"
    }
    conv = dict(con.sql("SELECT status, count(*) FROM conversations GROUP BY status").fetchall())
    landing = con.sql("SELECT count(*), coalesce(sum(records), 0) FROM landing_files").fetchall()[0]
    con.sql(
        "INSERT INTO pipeline_runs VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        params=[
            run_id, datetime.now(timezone.utc), settings.timezone, landing[0], landing[1],
            counts["events"], con.sql("SELECT coalesce(max(duplicates_dropped), 0) FROM ingest_counts").fetchall()[0][0],
            counts["rejected_events"], conv.get("open", 0), conv.get("closed", 0),
            counts["workflow_runs"], counts["workflow_actions"], counts["workflow_drift"], SCHEMA_VERSION,
        ],
    )
    tmp_sql = str(tmp).replace("'", "''")
    try:
        con.sql(f"ATTACH '{tmp_sql}' AS publish_target (STORAGE_VERSION '{PUBLISH_STORAGE_VERSION}')")
        for t in PUBLIC_TABLES:
            con.sql(f"CREATE TABLE publish_target.{t} AS SELECT * FROM {t}")
        con.sql(
            "CREATE TABLE publish_target.closeconv_meta AS "
            "SELECT ? AS schema_version, ? AS run_id, ?::TIMESTAMPTZ AS published_at, ? AS timezone",
            params=[SCHEMA_VERSION, run_id, datetime.now(timezone.utc), settings.timezone],
        )
        con.sql("DETACH publish_target")
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        # A WAL beside the target belongs to the old file; replayed onto the new one it would corrupt it.
        Path(str(target) + ".wal").unlink(missing_ok=True)
        os.replace(tmp, target)
    except BaseException:
        # Nothing was published: forget this run, or the next publish would list it as published.
        con.sql("DETACH DATABASE IF EXISTS publish_target")
        con.sql("DELETE FROM pipeline_runs WHERE run_id = ?", params=[run_id])
        tmp.unlink(missing_ok=True)
        raise
    return counts


def open_warehouse_readonly(path: Path) -> duckdb.DuckDBPyConnection:
    """How readers (dashboard, what-if, tests) open the warehouse: read-only, never blocking a run."""
    con = duckdb.connect(str(path), read_only=True)
    con.sql("SET TimeZone = 'UTC'")
    return con
