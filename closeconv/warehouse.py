"""Staging database and atomic publishing of the analyst-facing warehouse.

DuckDB allows one writer per file, and any other process holding the file open (even
read-only) makes a write connection fail. So the pipeline never writes the published file:
it builds in a private staging database, then writes a new file (a copy of the published
one with only the changed tables brought up to date) and swaps it in with an atomic rename.
Readers that hold the old file open keep reading the old version; the next connection sees
the new one. A run that fails or is killed before the
rename leaves the previous warehouse untouched.
"""

from __future__ import annotations

import logging
import os
import threading
import uuid
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator

import duckdb
from filelock import FileLock, Timeout

from closeconv import changes
from closeconv.allocators import keep_duckdb_memory, use_jemalloc_for_arrow
from closeconv.config import Settings
from closeconv.deleted_rows import DELETED_ROWS_SHARE, deleted_shares, leave_deleted_rows, rewrite_wasteful_tables
from closeconv.file_copy import copy_file
from closeconv.published_tables import (
    BY_CONTACT,
    DELTA,
    HASH_DELTAS,
    KEPT,
    REWRITTEN,
    bring_up_to_date,
    patch_by_contact,
    record_hash_deltas,
    scope_parts,
    scoped_rows,
    stage_row_hashes,
    stage_scope_hashes,
    table_columns,
    unpublished_changes,
)
from closeconv.transactions import transaction  # also re-exported for the pipeline steps
from closeconv.workflows.drift import drift_contacts

SCHEMA_VERSION = 2
PUBLISH_STORAGE_VERSION = "v1.5.0"
# Bump when the staging tables change shape: an older staging database is rebuilt, not migrated
# (it is a cache of the landing folder; rebuilding it costs one full parse).
STAGING_SCHEMA_VERSION = 3

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
    "conversation_assignees",
    "user_messages_15min",
    "user_closes",
    "pipeline_runs",
    "users",
    "teams",
    "categories",
)

# The public tables keyed by contact: every row belongs to one contact, so a publish can patch
# them by the contacts the run's steps journaled (the PUBLISH scope, closeconv/changes.py).
# The others (cross-contact aggregates, reference tables, rejected records) are small and go
# by their fingerprints and row hashes.
CONTACT_TABLES: tuple[str, ...] = (
    "events", "conversations", "workflow_runs", "workflow_actions", "assignments", "workflow_drift",
)

# pipeline_runs, in documented order. A column added later reads NULL on older rows.
PIPELINE_RUNS_COLUMNS: tuple[tuple[str, str], ...] = (
    ("run_id", "VARCHAR"), ("published_at", "TIMESTAMPTZ"), ("timezone", "VARCHAR"),
    ("landing_files", "BIGINT"), ("files_unknown_type", "BIGINT"), ("records_read", "BIGINT"),
    ("events_loaded", "BIGINT"), ("duplicates_dropped", "BIGINT"), ("records_rejected", "BIGINT"),
    ("conversations_open", "BIGINT"), ("conversations_closed", "BIGINT"), ("workflow_runs", "BIGINT"),
    ("workflow_actions", "BIGINT"), ("workflow_drift", "BIGINT"), ("schema_version", "INTEGER"),
)

# Past this growth of bytes per row over the last file written whole, the next publish writes
# a new file instead of patching a copy: blocks of dropped tables are reused by later
# checkpoints but never given back, and rows deleted by deltas stay in their row groups. A file
# written whole from a copy of the staging file already holds the free blocks of staging's own
# tables: the growth is counted from its size as written. Deleted rows can fill those free
# blocks unseen by the size, so a table past DELETED_ROWS_SHARE of deleted rows also has the
# file written whole (closeconv/deleted_rows.py).
VACUUM_WASTE_SHARE = 0.25

# How long a second run waits for the one holding the pipeline before giving up.
LOCK_TIMEOUT_S = 3600.0

log = logging.getLogger("closeconv.progress")


class PipelineBusyError(RuntimeError):
    pass


class ShrinkRefused(RuntimeError):
    """The new warehouse would hold fewer events than the published one (see `publish`)."""


def connect_memory() -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    con.sql("SET TimeZone = 'UTC'")
    return con


def pipeline_lock_for(settings: Settings) -> FileLock:
    """The lock one closeconv run holds from its first step to its last.

    A singleton per path, so a step inside a run that holds it re-enters instead of waiting."""
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    return FileLock(settings.lock_path, is_singleton=True, thread_local=False)


@contextmanager
def pipeline_lock(settings: Settings, timeout_s: float = LOCK_TIMEOUT_S) -> Iterator[None]:
    """Hold the pipeline; wait (saying so) while another run holds it."""
    lock = pipeline_lock_for(settings)
    try:
        lock.acquire(timeout=0)
    except Timeout:
        log.warning(f"waiting for the closeconv run that holds {settings.lock_path} to finish …")
        try:
            lock.acquire(timeout=timeout_s)
        except Timeout:
            raise PipelineBusyError(
                f"another closeconv run has held {settings.lock_path} for over {timeout_s:.0f}s; "
                "wait for it to end (or stop it), then run again"
            ) from None
    try:
        yield
    finally:
        lock.release()


def pipeline_busy(settings: Settings) -> bool:
    """True while some process holds the pipeline (a probe: never waits)."""
    lock = FileLock(settings.lock_path, thread_local=False)  # not the singleton: a real probe
    if not settings.lock_path.exists():
        return False
    try:
        lock.acquire(timeout=0)
    except Timeout:
        return True
    lock.release()
    return False


def _set_aside(path: Path, why: str) -> None:
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S")
    aside = path.with_name(f"{path.name}.{why}-{stamp}")
    path.rename(aside)
    wal = Path(str(path) + ".wal")
    if wal.exists():
        wal.rename(Path(str(aside) + ".wal"))
    log.warning(f"staging database {path} was {why}; moved it to {aside.name} and rebuilding it from the landing folder")


def _open_staging(path: Path, memory_limit_bytes: int | None = None) -> duckdb.DuckDBPyConnection:
    """Open the staging database; a damaged or outdated one is set aside and rebuilt.

    With `memory_limit_bytes`, DuckDB's memory is capped and whatever does not fit spills to
    a temp folder inside the (pipeline-private) staging folder, not to the system's /tmp."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        # A new staging file is written in the published file's storage format, so that a full
        # publish can start from a byte copy of it (`_start_from_staging_copy`); an existing
        # file keeps the format it was created with.
        con = duckdb.connect(str(path), config={"storage_compatibility_version": PUBLISH_STORAGE_VERSION})
        con.sql("SET TimeZone = 'UTC'")
        if memory_limit_bytes is not None:
            spill = path.parent / f"{path.stem}.spill"
            spill.mkdir(exist_ok=True)
            con.sql(f"SET memory_limit = '{int(memory_limit_bytes)}B'")
            con.sql(f"SET temp_directory = '{_sql_path(spill)}'")
            keep_duckdb_memory(con, memory_limit_bytes)
        use_jemalloc_for_arrow()
        leave_deleted_rows(con)  # staging's checkpoints and the publish's (closeconv/deleted_rows.py)
        con.sql("CREATE TABLE IF NOT EXISTS staging_meta (key VARCHAR PRIMARY KEY, value VARCHAR)")
        found = con.sql("SELECT value FROM staging_meta WHERE key = 'staging_schema'").fetchall()
        tables = con.sql("SELECT count(*) FROM duckdb_tables() WHERE database_name = current_database() AND table_name <> 'staging_meta'").fetchall()[0][0]
    except duckdb.Error as exc:
        if "lock" in str(exc).lower():  # held open by another process (a shell?), not damaged
            raise PipelineBusyError(
                f"the staging database {path} is open in another process ({str(exc).splitlines()[0]}); "
                "close that process (it is pipeline-private), then run again"
            ) from None
        _set_aside(path, "damaged")
        return _open_staging(path, memory_limit_bytes)
    version = found[0][0] if found else None
    if version is None and tables == 0:
        con.sql("INSERT OR REPLACE INTO staging_meta VALUES ('staging_schema', ?)", params=[str(STAGING_SCHEMA_VERSION)])
    elif version != str(STAGING_SCHEMA_VERSION):
        con.close()
        _set_aside(path, f"outdated (staging schema {version or 1}, expected {STAGING_SCHEMA_VERSION})")
        return _open_staging(path, memory_limit_bytes)
    return con


@contextmanager
def staging_connection(settings: Settings) -> Iterator[duckdb.DuckDBPyConnection]:
    """The pipeline-private staging database, under the pipeline lock."""
    with pipeline_lock(settings):
        con = _open_staging(settings.staging_path, settings.memory_limit_bytes())
        try:
            rewrite_wasteful_tables(con, DELETED_ROWS_SHARE)
            yield con
        finally:
            con.close()


def _sql_path(path: Path) -> str:
    return str(path).replace("'", "''")


def _attach_previous(con: duckdb.DuckDBPyConnection, target: Path) -> bool:
    """Attach the published warehouse read-only as `previous`, if there is a readable one."""
    if not target.exists():
        return False
    try:
        con.sql(f"ATTACH '{_sql_path(target)}' AS previous (READ_ONLY)")
        con.sql("SELECT count(*) FROM previous.events").fetchall()
        return True
    except duckdb.Error as exc:
        con.sql("DETACH DATABASE IF EXISTS previous")
        log.warning(f"the published warehouse {target} cannot be read ({exc}); replacing it, without its run history")
        return False


def _shrink_reason(con: duckdb.DuckDBPyConnection, before: int, after: int) -> str:
    gone = [r[0] for r in con.sql(
        "SELECT DISTINCT source_file FROM previous.events EXCEPT SELECT file FROM landing_files ORDER BY 1"
    ).fetchall()]
    rejected, read = con.sql(
        "SELECT (SELECT count(*) FROM rejected_events), coalesce((SELECT sum(records) FROM landing_files), 0)"
    ).fetchall()[0]
    why = []
    if gone:
        shown = ", ".join(gone[:5]) + (" …" if len(gone) > 5 else "")
        why.append(f"{len(gone)} file(s) that fed the published events are gone from the landing folder ({shown})")
    if read and rejected == read:
        why.append(f"all {read:,} records read were rejected (see the reasons above, or rejected_events)")
    elif rejected:
        why.append(f"{rejected:,} of {read:,} records read were rejected")
    if not read:
        why.append("the landing folder holds no records")
    return (
        f"refusing to publish: this run has {after:,} events, fewer than the {before:,} in the published "
        f"warehouse; {'; '.join(why) or 'events were removed from the landing files'}. The published "
        "warehouse was kept. If the smaller warehouse is intended, run again with --allow-shrink "
        "(or CLOSECONV_ALLOW_SHRINK=1)."
    )


STATE_COLUMNS = (
    "table_name VARCHAR PRIMARY KEY, fingerprint VARCHAR, written VARCHAR, warehouse_run_id VARCHAR, "
    "warehouse_bytes BIGINT, warehouse_mtime_ns BIGINT, compact_bytes BIGINT, compact_rows BIGINT"
)
ROW_HASH_COLUMNS = "table_name VARCHAR, contact_id VARCHAR, h UBIGINT"  # contact_id: see CONTACT_TABLES


def _create_state_tables(con: duckdb.DuckDBPyConnection) -> None:
    """The record of what was published, in staging; one of another shape is dropped (a cache:
    the next publish then writes the file in full)."""
    shapes = dict(con.sql(
        "SELECT table_name, string_agg(column_name, ',' ORDER BY column_index) FROM duckdb_columns() "
        "WHERE database_name = current_database() AND table_name IN ('published_tables', 'published_row_hashes') "
        "GROUP BY table_name"
    ).fetchall())
    expected = {"published_tables": STATE_COLUMNS, "published_row_hashes": ROW_HASH_COLUMNS}
    if any(shapes.get(t, cols) != cols for t, cols in (
            (t, ",".join(c.split()[0] for c in columns.split(", "))) for t, columns in expected.items())):
        con.sql("DROP TABLE IF EXISTS published_tables")
        con.sql("DROP TABLE IF EXISTS published_row_hashes")
    con.sql(f"CREATE TABLE IF NOT EXISTS published_tables ({STATE_COLUMNS})")
    con.sql(f"CREATE TABLE IF NOT EXISTS published_row_hashes ({ROW_HASH_COLUMNS})")


def _previous_state(
    con: duckdb.DuckDBPyConnection, target: Path, rows: int
) -> tuple[dict[str, str], tuple[int, int] | None, str]:
    """Fingerprints of the published file's tables as recorded when it was written, the size and
    rows of the last file written whole, and why the file cannot be patched ("" if it can).

    They are recorded in staging (pipeline-private) with the published run id and the file's
    size and mtime, so a file replaced or written by anyone else is never patched."""
    _create_state_tables(con)
    recorded = con.sql(
        "SELECT table_name, fingerprint, warehouse_run_id, warehouse_bytes, warehouse_mtime_ns, compact_bytes, "
        "compact_rows FROM published_tables"
    ).fetchall()
    if not recorded:
        return {}, None, "no record of the published tables"
    if Path(str(target) + ".wal").exists():
        return {}, None, "a write-ahead log lies beside the published file"
    stat = target.stat()
    has_meta = con.sql(
        "SELECT count(*) FROM duckdb_tables() WHERE database_name = 'previous' AND table_name = 'closeconv_meta'"
    ).fetchall()[0][0]
    run_id = con.sql("SELECT max(run_id) FROM previous.closeconv_meta").fetchall()[0][0] if has_meta else None
    if {(r[2], r[3], r[4]) for r in recorded} != {(run_id, stat.st_size, stat.st_mtime_ns)}:
        return {}, None, "the published file is not the one this staging database wrote"
    compact_bytes, compact_rows = recorded[0][5], recorded[0][6]
    # Free blocks, deleted rows and part-filled row groups, all at once: bytes per row against
    # those of the last file written whole.
    expected = compact_bytes * max(rows, 1) / max(compact_rows, 1)
    if stat.st_size > (1 + VACUUM_WASTE_SHARE) * expected:
        return {}, None, f"the file is {stat.st_size / expected - 1:.0%} larger than a fresh one would be (vacuum)"
    # Deleted rows first fill the free blocks of the dropped staging tables: the size misses them.
    wasted = {t: share for t, share in deleted_shares(con, "previous").items() if share > DELETED_ROWS_SHARE}
    if wasted:
        table = max(wasted, key=wasted.get)
        return {}, None, f"{wasted[table]:.0%} of the rows stored in {table} are deleted rows (vacuum)"
    return {r[0]: r[1] for r in recorded}, (compact_bytes, compact_rows), ""


def _record_state(
    con: duckdb.DuckDBPyConnection, target: Path, run_id: str, prints: dict[str, str], how: dict[str, str],
    compact: tuple[int, int], scope: changes.Scope,
) -> None:
    stat = target.stat()
    _create_state_tables(con)
    with transaction(con):
        con.sql("DELETE FROM published_tables")
        con.executemany(
            "INSERT INTO published_tables VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            [[t, prints[t], how[t], run_id, stat.st_size, stat.st_mtime_ns, *compact] for t in prints],
        )
        # Only the changed rows' hashes: those of kept tables and other contacts are still theirs.
        # A table of no contact patched by row has its hashes patched too (`record_hash_deltas`);
        # a table keyed by contact patched by row (a change no step journaled) is rewritten, as
        # the hash deltas do not carry the rows' contacts.
        deltas = [t for t in prints if how[t] == DELTA and t not in CONTACT_TABLES]
        changed = [t for t in prints if how[t] in (DELTA, REWRITTEN) and t not in deltas]
        con.sql("DELETE FROM published_row_hashes WHERE NOT list_contains(?, table_name)", params=[list(prints)])
        con.sql("DELETE FROM published_row_hashes WHERE list_contains(?, table_name)", params=[changed])
        if deltas:
            record_hash_deltas(con, deltas)
        by_contact = [t for t in prints if how[t] == BY_CONTACT]
        if by_contact:
            for part in scope_parts(scope.table):
                con.sql(f"DELETE FROM published_row_hashes WHERE list_contains(?, table_name) AND {part}",
                        params=[by_contact])
        # Clustered by table and contact, as `events` is: the next publish reads the scope's
        # hashes of each table (`stage_scope_hashes`) without scanning all of them. The hashes of
        # `events` were taken in its stored order, by contact already: only the others are sorted
        # (sorting all of them cost 1-2 CPU seconds more per 5M events; one insert per table, 14
        # scans of the staged hashes, cost more in a full run; docs/performance.md).
        recorded = changed + by_contact
        con.execute("INSERT INTO published_row_hashes SELECT * FROM staged_row_hashes "
                    "WHERE table_name = 'events' AND list_contains(?, table_name)", [recorded])
        con.execute("INSERT INTO published_row_hashes SELECT * FROM staged_row_hashes "
                    "WHERE table_name <> 'events' AND list_contains(?, table_name) ORDER BY table_name, contact_id",
                    [recorded])


class _CopyInBackground:
    """A byte copy of the published file, flushed to disk, made in a thread while the publish
    computes what changed: the copy only reads the published file, which is never written in
    place, and its reads, writes and fsync release the GIL."""

    def __init__(self, source: Path, dest: Path):
        self._error: BaseException | None = None
        self._dest = dest
        self._thread = threading.Thread(target=self._copy, args=(source, dest), name="closeconv-publish-copy", daemon=True)
        self._thread.start()

    def _copy(self, source: Path, dest: Path) -> None:
        try:
            copy_file(source, dest)  # on disk now, not written back by the publish's checkpoint
        except BaseException as e:  # re-raised in the publishing thread by wait()
            self._error = e

    def wait(self) -> None:
        """Return once the copy is complete, or raise what the copy raised."""
        self._thread.join()
        if self._error is not None:
            raise self._error

    def discard(self) -> None:
        """Wait for the thread (which would otherwise outlive the unlink), then remove its copy."""
        self._thread.join()
        self._dest.unlink(missing_ok=True)


def _start_from_staging_copy(con: duckdb.DuckDBPyConnection, staging_db: str, tmp: Path) -> bool:
    """Attach as `publish_target` a byte copy of the staging file with every table but the
    public ones dropped; False (nothing done) if the staging file is in another storage format
    than the published one, or not all in the file after a checkpoint.

    Copying the tables with `CREATE TABLE AS` decompresses and compresses every column again
    (9.5 CPU s for `events` alone at 5M events); the copy keeps staging's compressed blocks.
    The dropped tables' blocks stay in the file as free space (about half of it at 5M, the parse
    cache mostly), which later patched publishes reuse; analysts see only the public tables."""
    path, version = con.sql(
        "SELECT path, tags['storage_version'] FROM duckdb_databases() WHERE database_name = ?", params=[staging_db]
    ).fetchall()[0]
    if version != f"{PUBLISH_STORAGE_VERSION}+":
        return False
    try:
        con.sql("CHECKPOINT")
    except duckdb.Error as exc:  # e.g. another transaction open on staging: copy table by table
        log.info(f"staging cannot be checkpointed ({str(exc).splitlines()[0]}); copying the tables one by one")
        return False
    wal = Path(path + ".wal")
    if wal.exists() and wal.stat().st_size > 0:
        return False
    copy_file(path, tmp)
    con.sql(f"ATTACH '{_sql_path(tmp)}' AS publish_target")
    for (view,) in con.sql(
        "SELECT view_name FROM duckdb_views() WHERE database_name = 'publish_target' AND NOT internal"
    ).fetchall():
        con.sql(f'DROP VIEW publish_target."{view}"')
    for (table,) in con.sql(
        "SELECT table_name FROM duckdb_tables() WHERE database_name = 'publish_target' AND NOT list_contains(?, table_name)",
        params=[list(PUBLIC_TABLES)],
    ).fetchall():
        con.sql(f'DROP TABLE publish_target."{table}"')
    return True


def publish(
    con: duckdb.DuckDBPyConnection,
    settings: Settings,
    run_id: str,
    *,
    allow_shrink: bool = False,
) -> dict[str, int]:
    """Write the public tables from staging (`con`) into a new file and swap it in atomically.

    The new file starts as a byte copy of the published one in which only the tables that
    changed are brought up to date (closeconv/published_tables.py): the tables keyed by contact
    by the contacts journaled for PUBLISH (closeconv/changes.py), the others by their row
    hashes; the journal's PUBLISH scope is cleared once the new file is in place. Without a
    usable published file (first run, foreign or damaged file, too much free space) the new
    file starts as a byte copy of the staging file with its staging-only tables dropped
    (`_start_from_staging_copy`), or, for a staging file in another storage format, every
    table is copied into an empty file.
    The run history (`pipeline_runs`) comes from the published file itself, so only runs that
    really published are in it, whatever happened to the staging database. Raises
    ShrinkRefused, publishing nothing, if the new file would hold fewer events than the
    published one and `allow_shrink` is not set. How each table was written is recorded in
    staging's `published_tables`."""
    target = settings.warehouse_path
    target.parent.mkdir(parents=True, exist_ok=True)
    for stale in target.parent.glob(f".{target.name}.publish-*"):
        stale.unlink(missing_ok=True)  # left by a run that was killed mid-publish
    tmp = target.parent / f".{target.name}.publish-{uuid.uuid4().hex[:12]}"
    counts = {
        t: con.sql(f"SELECT count(*) FROM {t}").fetchall()[0][0] for t in PUBLIC_TABLES if t != "pipeline_runs"
    }
    conv = dict(con.sql("SELECT status, count(*) FROM conversations GROUP BY status").fetchall())
    landing = con.sql("SELECT count(*), coalesce(sum(records), 0) FROM landing_files").fetchall()[0]
    files_unknown_type = con.sql("SELECT count(*) FROM landing_unknown_files").fetchall()[0][0]
    staging_db = con.sql("SELECT current_database()").fetchall()[0][0]
    scope = unpublished_changes(con)
    has_previous = _attach_previous(con, target)
    # Most publishes patch a copy of the published file: it is made while the changes are computed.
    copy = _CopyInBackground(target, tmp) if has_previous else None
    try:
        history_select = "SELECT * FROM new_run"
        recorded, compact, why_full = {}, None, "no published warehouse"
        by_contact: list[str] = []  # tables patched by the scope's contacts, if their fingerprint moved
        if has_previous:
            before = con.sql("SELECT count(*) FROM previous.events").fetchall()[0][0]
            if counts["events"] < before and not allow_shrink:
                raise ShrinkRefused(_shrink_reason(con, before, counts["events"]))
            old = {r[0] for r in con.sql(
                "SELECT column_name FROM duckdb_columns() WHERE database_name = 'previous' AND table_name = 'pipeline_runs'"
            ).fetchall()}
            if old:
                cols = ", ".join(c if c in old else f"NULL::{t} AS {c}" for c, t in PIPELINE_RUNS_COLUMNS)
                history_select = f"SELECT {cols} FROM previous.pipeline_runs UNION ALL SELECT * FROM new_run"
            recorded, compact, why_full = _previous_state(con, target, sum(counts.values()))
            if recorded and not scope.everything:
                # A table whose columns changed is rewritten, which needs all its rows' hashes.
                published, staged = table_columns(con, "previous"), table_columns(con, staging_db)
                by_contact = [t for t in CONTACT_TABLES if t in recorded and published.get(t) == staged[t]]
        prints = stage_row_hashes(con, [t for t in counts if t not in by_contact])
        if by_contact:
            prints.update(stage_scope_hashes(con, by_contact, scope.table, recorded))
            # A row count the scope does not explain is a change no step journaled: that table
            # goes by its row hashes (an update in place without a journal entry is not seen).
            unjournaled = [t for t in by_contact if prints[t].split(":", 1)[0] != str(counts[t])]
            if unjournaled:
                log.warning(f"rows of {', '.join(unjournaled)} changed outside the journaled contacts; "
                            "comparing every row of those tables")
                by_contact = [t for t in by_contact if t not in unjournaled]
                prints.update(stage_row_hashes(con, unjournaled))
        values = {
            "run_id": run_id, "published_at": datetime.now(timezone.utc), "timezone": settings.timezone,
            "landing_files": landing[0], "files_unknown_type": files_unknown_type, "records_read": landing[1],
            "events_loaded": counts["events"],
            "duplicates_dropped": con.sql("SELECT coalesce(max(duplicates_dropped), 0) FROM ingest_counts").fetchall()[0][0],
            "records_rejected": counts["rejected_events"], "conversations_open": conv.get("open", 0),
            "conversations_closed": conv.get("closed", 0), "workflow_runs": counts["workflow_runs"],
            "workflow_actions": counts["workflow_actions"],
            # drifted contacts, the figure `closeconv run` prints (a contact can have several rows)
            "workflow_drift": drift_contacts(con),
            "schema_version": SCHEMA_VERSION,
        }
        con.sql(
            "CREATE OR REPLACE TEMP TABLE new_run AS SELECT "
            + ", ".join(f"?::{t} AS {c}" for c, t in PIPELINE_RUNS_COLUMNS),
            params=[values[c] for c, _ in PIPELINE_RUNS_COLUMNS],
        )
        con.sql(f"CREATE OR REPLACE TEMP TABLE new_history AS {history_select} ORDER BY published_at")
        con.sql("DETACH DATABASE IF EXISTS previous")
        if recorded:
            # The published file is never written in place, so a byte copy of it is consistent
            # even while analysts read it; the copy keeps its storage version (v1.5.0).
            copy.wait()
            con.sql(f"ATTACH '{_sql_path(tmp)}' AS publish_target")
            how = {t: KEPT for t in prints}
            patched = [t for t in by_contact if recorded[t] != prints[t]]
            patch_by_contact(con, patched, scope.table)
            how.update({t: BY_CONTACT for t in patched})
            how.update(bring_up_to_date(
                con, [t for t in prints if t not in by_contact and recorded.get(t) != prints[t]], staging_db))
            con.sql("CREATE OR REPLACE TABLE publish_target.pipeline_runs AS SELECT * FROM new_history")
        else:
            log.info(f"publishing every table in full: {why_full}")
            if copy is not None:
                copy.discard()
            if not _start_from_staging_copy(con, staging_db, tmp):
                con.sql(f"ATTACH '{_sql_path(tmp)}' AS publish_target (STORAGE_VERSION '{PUBLISH_STORAGE_VERSION}')")
                for t in PUBLIC_TABLES:
                    if t != "pipeline_runs":
                        con.sql(f"CREATE TABLE publish_target.{t} AS SELECT * FROM {t}")
            con.sql("CREATE TABLE publish_target.pipeline_runs AS SELECT * FROM new_history")
            how = {t: REWRITTEN for t in prints}
        con.sql(
            "CREATE OR REPLACE TABLE publish_target.closeconv_meta AS "
            "SELECT ? AS schema_version, ? AS run_id, ?::TIMESTAMPTZ AS published_at, ? AS timezone",
            params=[SCHEMA_VERSION, run_id, values["published_at"], settings.timezone],
        )
        con.sql("DETACH publish_target")
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        # Before the rename, with the new file's size and mtime (a rename keeps both): if the
        # rename then fails, the record matches no published file and the next run copies all.
        _record_state(con, tmp, run_id, prints, how, compact or (tmp.stat().st_size, sum(counts.values())), scope)
        # A WAL beside the target belongs to the old file; replayed onto the new one it would corrupt it.
        Path(str(target) + ".wal").unlink(missing_ok=True)
        os.replace(tmp, target)
        dir_fd = os.open(target.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)  # the rename itself survives a power cut
        finally:
            os.close(dir_fd)
    except BaseException:
        if copy is not None:
            copy.discard()
        con.sql("DETACH DATABASE IF EXISTS publish_target")
        con.sql("DETACH DATABASE IF EXISTS previous")
        tmp.unlink(missing_ok=True)
        raise
    finally:
        con.sql("DROP TABLE IF EXISTS new_run")
        con.sql("DROP TABLE IF EXISTS new_history")
        con.sql("DROP TABLE IF EXISTS staged_row_hashes")
        con.sql(f"DROP TABLE IF EXISTS {HASH_DELTAS}")
        for t in CONTACT_TABLES:
            con.sql(f"DROP TABLE IF EXISTS {scoped_rows(t)}")
    # Only now that the new file is in place: a run that stops before the rename keeps the
    # scope for the next one (publishing a scope twice is harmless, losing one is not).
    with transaction(con):
        changes.clear(con, changes.PUBLISH)
    if recorded:
        written = {w: sorted(t for t in how if how[t] == w) for w in (REWRITTEN, DELTA, BY_CONTACT)}
        log.info(f"published a copy of the warehouse with {len(written[REWRITTEN])} table(s) rewritten "
                 f"({', '.join(written[REWRITTEN]) or '-'}), {len(written[DELTA])} patched by row "
                 f"({', '.join(written[DELTA]) or '-'}), {len(written[BY_CONTACT])} patched for "
                 f"{scope.contacts:,} contacts ({', '.join(written[BY_CONTACT]) or '-'}), the others kept")
    return counts


def open_warehouse_readonly(path: Path) -> duckdb.DuckDBPyConnection:
    """How readers (dashboard, what-if, tests) open the warehouse: read-only, never blocking a run."""
    con = duckdb.connect(str(path), read_only=True)
    con.sql("SET TimeZone = 'UTC'")
    return con
