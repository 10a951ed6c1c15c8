"""Deleted rows: left where they are at each checkpoint, reclaimed by rewriting a table past a share.

An incremental run deletes the rows of the contacts it recomputes and appends their new rows,
in staging and in the published file alike. At a checkpoint, DuckDB then merges row groups
whose deletes let two or three of them fit in fewer ("vacuum"), recompressing every column of
them: 0.5-2 s of a +1% run at 5M events, in both the staging commit and the publish, for a
few thousand contacts (docs/performance.md, "Checkpoints without merging row groups"). Those
merges do not bound the deleted rows either: deletes scattered over the whole table rarely
free a row group, so the deleted share kept growing with or without them (13.6 % against
16.3 % after 16 simulated runs of 1 %).

So checkpoints never merge (`leave_deleted_rows`), and what deleted rows cost is bounded
here: a staging table whose deleted rows pass DELETED_ROWS_SHARE of its stored rows is written
again, once (`rewrite_wasteful_tables`), and so is the published file, whole, when one of its
tables does (`warehouse._previous_state`, beside its rule on the file's bytes per row).
"""

from __future__ import annotations

import logging

import duckdb

log = logging.getLogger("closeconv.progress")

# Past this share of deleted rows among a table's stored rows, a staging table is written again
# and the published file is written whole.
DELETED_ROWS_SHARE = 0.25
# Tables storing fewer rows are left out: their deleted rows cost nothing.
MIN_STORED_ROWS = 2 * 122_880  # two of DuckDB's row groups


def leave_deleted_rows(con: duckdb.DuckDBPyConnection) -> None:
    """Checkpoints of this database instance (and of the files it attaches) write deletes
    as they are instead of merging the row groups that hold them."""
    con.sql("SET max_vacuum_tasks = 0")


def deleted_shares(con: duckdb.DuckDBPyConnection, database: str | None = None) -> dict[str, float]:
    """Share of the stored rows that are deleted, per table of `database` (default: the current
    one) storing at least MIN_STORED_ROWS. DuckDB's `estimated_size` counts the rows stored,
    deleted ones included; `count(*)` the live ones."""
    database = database or con.sql("SELECT current_database()").fetchall()[0][0]
    tables = con.sql(
        "SELECT table_name, estimated_size FROM duckdb_tables() WHERE database_name = ? AND schema_name = 'main' "
        "AND NOT temporary AND estimated_size >= ? ORDER BY table_name", params=[database, max(MIN_STORED_ROWS, 1)],
    ).fetchall()
    shares = {}
    for table, stored in tables:
        live = con.sql(f'SELECT count(*) FROM "{database}".main."{table}"').fetchall()[0][0]
        shares[table] = (stored - live) / stored
    return shares


def rewrite_wasteful_tables(con: duckdb.DuckDBPyConnection, share: float) -> list[str]:
    """Write again, rows in their stored order, every table of the current database whose
    deleted rows are more than `share` of its stored rows; return their names.

    Only tables without constraints or indexes are candidates (`CREATE OR REPLACE TABLE ... AS`
    keeps columns and types, not keys or indexes): the pipeline's big tables are all created
    from queries, and a table with an index is one DuckDB's checkpoints never vacuum anyway."""
    wasteful = {t: w for t, w in deleted_shares(con).items() if w > share}
    if not wasteful:
        return []  # every run's case: nothing more to look up
    keyed = {r[0] for r in con.sql(
        """
        SELECT table_name FROM duckdb_constraints() WHERE database_name = current_database()
        UNION SELECT table_name FROM duckdb_indexes() WHERE database_name = current_database()
        """
    ).fetchall()}
    wasteful = {t: w for t, w in wasteful.items() if t not in keyed}
    if not con.sql("SELECT current_setting('preserve_insertion_order')").fetchall()[0][0]:
        raise RuntimeError("rewrite_wasteful_tables needs preserve_insertion_order (the stored order is kept)")
    for table, wasted in wasteful.items():
        con.sql("BEGIN TRANSACTION")
        try:
            # In the stored order (DuckDB's default, preserve_insertion_order): the table keeps
            # its clustering by contact. Half the time of an ORDER BY rowid (2.8 s against 5.5 s
            # for `events` at 5M).
            con.sql(f'CREATE OR REPLACE TABLE "{table}" AS SELECT * FROM "{table}"')
            con.sql("COMMIT")
        except BaseException:
            con.sql("ROLLBACK")
            raise
        log.info(f"rewrote staging table {table}: {wasted:.0%} of its stored rows were deleted rows")
    return list(wasteful)
