"""How little of the published warehouse a run has to rewrite: per-table fingerprints and deltas.

`publish` starts from a byte copy of the published file (attached as `publish_target`) and
brings each public table to the staging table's content in the cheapest exact way:
- kept: the staging table's fingerprint equals the one recorded when the published file was
  written, so its copy is already right;
- delta: few rows differ, so the rows gone are DELETEd and the rows new INSERTed (a multiset
  difference of whole-row hashes against those recorded at the last publish: no key needed,
  duplicates counted, the published file read only for the tables patched);
- rewritten: its columns changed, or too many rows differ (a global renumbering such as
  `events.event_order` changes every row), so it is dropped and created again;
- by contact: the run's steps journaled which contacts' rows changed (closeconv/changes.py,
  the PUBLISH scope), so a table keyed by contact has those contacts' rows deleted and
  inserted again, and only those rows are hashed.

The row hashes recorded for the published file carry the row's contact (for the tables keyed
by contact), so a patch by contact updates the record for those contacts alone and the record
stays exact whichever way the next publish goes; a table of no contact patched by row has its
record patched by the same delta.
"""

from __future__ import annotations

import duckdb

from closeconv import changes

KEPT, DELTA, REWRITTEN, BY_CONTACT = "kept", "delta", "rewritten", "by contact"

# Past this share of changed rows (deleted + inserted, over the table's rows) a DELETE/INSERT
# costs more than a CREATE and leaves the table scattered over many partly deleted row groups.
DELTA_MAX_SHARE = 0.2

TARGET = "publish_target"

# Where staging records what the published file holds (closeconv/warehouse.py).
STATE_TABLES = ("published_tables", "published_row_hashes")

# The temp table of the row hashes whose number of rows a DELTA publish changed, per table:
# `record_hash_deltas` brings the recorded hashes up to date from it.
HASH_DELTAS = "published_hash_deltas"


def unpublished_changes(con: duckdb.DuckDBPyConnection) -> changes.Scope:
    """The contacts whose rows changed since the published file was written: the PUBLISH scope
    (everything when this staging database has published nothing). What a publish patches and
    what the blocking checks read; the other rows passed the checks when they were published."""
    return changes.scope_of(con, changes.PUBLISH, outputs=STATE_TABLES)


def table_columns(con: duckdb.DuckDBPyConnection, database: str) -> dict[str, list[tuple[str, str]]]:
    """(column, type) of every table of `database`, in column order: one catalog query for a
    whole publish (one per table cost ~60 queries and 0.1-0.3 s at 5M events)."""
    found: dict[str, list[tuple[str, str]]] = {}
    for table, column, data_type in con.sql(
        "SELECT table_name, column_name, data_type FROM duckdb_columns() WHERE database_name = ? "
        "AND schema_name = 'main' ORDER BY table_name, column_index",
        params=[database],
    ).fetchall():
        found.setdefault(table, []).append((column, data_type))
    return found


def _columns_text(columns: list[tuple[str, str]]) -> str:
    return ", ".join(f"{c} {ty}" for c, ty in columns)


def _stage_hashes(con: duckdb.DuckDBPyConnection, table: str, keyed: bool) -> None:
    """Add the hashes of `table`'s rows to `staged_row_hashes`, each with the row's contact if
    the table is `keyed` by contact (NULL otherwise)."""
    con.sql(
        f"INSERT INTO staged_row_hashes SELECT ?, {'hashed_row.contact_id' if keyed else 'NULL'}, hash(hashed_row) "
        f"FROM {table} AS hashed_row",
        params=[table],
    )


def _start_staging_hashes(con: duckdb.DuckDBPyConnection, tables: list[str]) -> dict[str, list[tuple[str, str]]]:
    """Empty `staged_row_hashes` of `tables` (creating it if needed); return the staging
    database's columns per table."""
    con.sql("CREATE TEMP TABLE IF NOT EXISTS staged_row_hashes (table_name VARCHAR, contact_id VARCHAR, h UBIGINT)")
    con.sql("DELETE FROM staged_row_hashes WHERE list_contains(?, table_name)", params=[tables])
    return table_columns(con, con.sql("SELECT current_database()").fetchall()[0][0])


def stage_row_hashes(con: duckdb.DuckDBPyConnection, tables: list[str]) -> dict[str, str]:
    """Hash every row of the staging `tables` into the temp table `staged_row_hashes`; return
    each table's fingerprint: row count, order-independent sum of the row hashes, columns.

    One scan per table inside DuckDB (about 0.2 s for 1M events). The hashes are kept (in
    `published_row_hashes`, by the caller) so the next publish can count the rows that changed
    without reading the published file."""
    staged = _start_staging_hashes(con, tables)
    for table in tables:
        _stage_hashes(con, table, keyed=any(c == "contact_id" for c, _ in staged[table]))
    sums = dict(con.sql(
        "SELECT table_name, count(*) || ':' || sum(h::HUGEINT) FROM staged_row_hashes "
        "WHERE list_contains(?, table_name) GROUP BY table_name", params=[tables]
    ).fetchall())
    return {t: f"{sums.get(t, '0:0')}:" + _columns_text(staged[t]) for t in tables}


def scope_parts(scope_table: str) -> tuple[str, str]:
    """SQL predicates of the scope's rows: the row's contact is in the scope, or it has none
    (such rows are few and belong to no contact, so every patch by contact rewrites them too).
    Two, for a statement (or a UNION ALL branch) each: joined by `OR`, DuckDB cannot push the
    contact filter into the scan, so a table clustered by contact (`published_row_hashes`,
    `events`) is read whole instead of only the row groups holding the scope's contacts."""
    return f"contact_id IN (SELECT contact_id FROM {scope_table})", "contact_id IS NULL"


def scoped_rows(table: str) -> str:
    """The temp table holding the scope's staging rows of `table` during a publish."""
    return f"scoped_{table}"


def stage_scope_hashes(
    con: duckdb.DuckDBPyConnection, tables: list[str], scope_table: str, recorded: dict[str, str]
) -> dict[str, str]:
    """Copy the scope's rows of the staging `tables` (keyed by contact) into temp tables
    (`scoped_rows`: one scan of each table, whose rows of a contact are spread over all its row
    groups) and their hashes into `staged_row_hashes`; return each table's new fingerprint,
    derived from its `recorded` one: the published rows of the scope's contacts go out, the
    staging ones come in."""
    staged = _start_staging_hashes(con, tables)
    prints = {}
    for table in tables:
        rows = scoped_rows(table)
        con.sql(f"CREATE OR REPLACE TEMP TABLE {rows} AS "
                + " UNION ALL ".join(f"SELECT * FROM {table} WHERE {part}" for part in scope_parts(scope_table)))
        con.sql(f"INSERT INTO staged_row_hashes SELECT ?, contact_id, hash(hashed_row) FROM {rows} AS hashed_row",
                params=[table])
        (new_n, new_sum), = con.sql(
            "SELECT count(*), coalesce(sum(h::HUGEINT), 0) FROM staged_row_hashes WHERE table_name = ?", params=[table]
        ).fetchall()
        recorded_scope = " UNION ALL ".join(
            f"SELECT h FROM published_row_hashes WHERE table_name = $t AND {part}" for part in scope_parts(scope_table))
        (old_n, old_sum), = con.sql(
            f"SELECT count(*), coalesce(sum(h::HUGEINT), 0) FROM ({recorded_scope})", params={"t": table}
        ).fetchall()
        n, total, _ = recorded[table].split(":", 2)
        prints[table] = f"{int(n) - old_n + new_n}:{int(total) - old_sum + new_sum}:" + _columns_text(staged[table])
    return prints


def patch_by_contact(con: duckdb.DuckDBPyConnection, tables: list[str], scope_table: str) -> None:
    """Replace the scope's rows of each of `tables` in `publish_target` by staging's (copied by
    `stage_scope_hashes`): a semi-join on contact_id, no row hashing."""
    for table in tables:
        for part in scope_parts(scope_table):
            con.sql(f"DELETE FROM {TARGET}.{table} WHERE {part}")
        con.sql(f"INSERT INTO {TARGET}.{table} SELECT * FROM {scoped_rows(table)}")


def _delta(con: duckdb.DuckDBPyConnection, table: str) -> tuple[int, int]:
    """Stage (in `delta_changes`) the row hashes whose number of rows changed since the last
    publish; returns how many rows to delete and to insert.

    Rows are compared by a 64-bit hash of the whole row: a wrong result needs a deleted and an
    inserted row with the same hash (odds about D*I/2^64, D and I in the thousands)."""
    # One aggregate over both sides (not two and a full join of them: ~40% less at 5M events).
    con.sql(
        "CREATE OR REPLACE TEMP TABLE delta_changes AS "
        "SELECT h, count(*) FILTER (WHERE NOT staged) AS old_n, count(*) FILTER (WHERE staged) AS new_n FROM ("
        "  SELECT h, false AS staged FROM published_row_hashes WHERE table_name = $t"
        "  UNION ALL SELECT h, true FROM staged_row_hashes WHERE table_name = $t"
        ") GROUP BY h HAVING old_n <> new_n",
        params={"t": table},
    )
    return con.sql(
        "SELECT coalesce(sum(greatest(old_n - new_n, 0)), 0), coalesce(sum(greatest(new_n - old_n, 0)), 0) "
        "FROM delta_changes"
    ).fetchall()[0]


def _apply_delta(con: duckdb.DuckDBPyConnection, table: str, deleted: int, inserted: int) -> None:
    """Each statement reads the whole table it works on, so it runs only if it has rows to do."""
    if deleted:
        con.sql(
            f"DELETE FROM {TARGET}.{table} WHERE rowid IN ("
            "  SELECT row_id FROM ("
            "    SELECT o.row_id, row_number() OVER (PARTITION BY o.h ORDER BY o.row_id) AS k, c.new_n"
            f"    FROM (SELECT rowid AS row_id, hash(old_row) AS h FROM {TARGET}.{table} AS old_row) AS o"
            "    JOIN delta_changes AS c USING (h) WHERE c.old_n > c.new_n)"
            "  WHERE k > new_n)"
        )
    if inserted:
        con.sql(
            f"INSERT INTO {TARGET}.{table} "
            "SELECT * EXCLUDE (closeconv_delta_h, closeconv_delta_k, closeconv_delta_extra) FROM ("
            "  SELECT r.*, c.new_n - c.old_n AS closeconv_delta_extra,"
            "         row_number() OVER (PARTITION BY r.closeconv_delta_h) AS closeconv_delta_k"
            f"  FROM (SELECT new_row.*, hash(new_row) AS closeconv_delta_h FROM {table} AS new_row) AS r"
            "  JOIN delta_changes AS c ON c.h = r.closeconv_delta_h WHERE c.new_n > c.old_n)"
            "WHERE closeconv_delta_k <= closeconv_delta_extra"
        )


def record_hash_deltas(con: duckdb.DuckDBPyConnection, tables: list[str]) -> None:
    """Bring `published_row_hashes` of `tables` (patched as DELTA, rows of no contact) to the
    staged hashes by the changes alone (`HASH_DELTAS`), not by rewriting all their hashes:
    of each hash whose rows went, that many recorded rows are deleted; of each that came, added."""
    con.sql(
        "DELETE FROM published_row_hashes WHERE rowid IN ("
        "  SELECT row_id FROM ("
        "    SELECT p.row_id, row_number() OVER (PARTITION BY p.table_name, p.h ORDER BY p.row_id) AS k,"
        "           d.old_n - d.new_n AS gone"
        "    FROM (SELECT rowid AS row_id, table_name, h FROM published_row_hashes WHERE list_contains($t, table_name)) AS p"
        f"    JOIN {HASH_DELTAS} AS d USING (table_name, h) WHERE d.old_n > d.new_n)"
        "  WHERE k <= gone)",
        params={"t": tables},
    )
    con.sql(
        "INSERT INTO published_row_hashes SELECT table_name, NULL, h FROM ("
        f"  SELECT table_name, h, unnest(range(new_n - old_n)) FROM {HASH_DELTAS}"
        "  WHERE new_n > old_n AND list_contains($t, table_name)) ORDER BY table_name",
        params={"t": tables},
    )


def bring_up_to_date(
    con: duckdb.DuckDBPyConnection, tables: list[str], staging_db: str
) -> dict[str, str]:
    """Make `publish_target`'s copy of each of `tables` (all changed since it was published)
    equal to staging's; returns how each was written (DELTA or REWRITTEN). Needs
    `staged_row_hashes` (stage_row_hashes) and `published_row_hashes` (the hashes of the
    published file's rows, recorded when it was written).

    Tables to rewrite are dropped and checkpointed first, so their blocks are free again
    before the new ones are written and the file does not grow by their size."""
    how: dict[str, str] = {}
    target_columns, staged_columns = table_columns(con, TARGET), table_columns(con, staging_db)
    con.sql(f"CREATE OR REPLACE TEMP TABLE {HASH_DELTAS} (table_name VARCHAR, h UBIGINT, old_n BIGINT, new_n BIGINT)")
    for table in tables:
        if target_columns.get(table) != staged_columns[table]:
            how[table] = REWRITTEN
            continue
        deleted, inserted = _delta(con, table)
        rows = con.sql(f"SELECT count(*) FROM {table}").fetchall()[0][0]
        if deleted + inserted <= DELTA_MAX_SHARE * rows:
            _apply_delta(con, table, deleted, inserted)
            con.sql(f"INSERT INTO {HASH_DELTAS} SELECT ?, h, old_n, new_n FROM delta_changes", params=[table])
            how[table] = DELTA
        else:
            how[table] = REWRITTEN
    con.sql("DROP TABLE IF EXISTS delta_changes")
    rewritten = [t for t in tables if how[t] == REWRITTEN]
    for table in rewritten:
        con.sql(f"DROP TABLE IF EXISTS {TARGET}.{table}")
    con.sql(f"CHECKPOINT {TARGET}")
    for table in rewritten:
        con.sql(f"CREATE TABLE {TARGET}.{table} AS SELECT * FROM {table}")
    return how
