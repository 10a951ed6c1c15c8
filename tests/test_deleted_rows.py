"""Deleted rows (closeconv/deleted_rows.py): checkpoints leave them in their row groups instead
of merging row groups, and a staging table past the share of deleted rows is written again,
same rows in the same order, when a run opens staging."""

from __future__ import annotations

import logging

import duckdb
import pytest

from closeconv.config import resolve_settings
from closeconv.deleted_rows import DELETED_ROWS_SHARE, MIN_STORED_ROWS, deleted_shares, leave_deleted_rows, rewrite_wasteful_tables
from closeconv.warehouse import staging_connection

ROW_GROUP = 122_880


@pytest.fixture(autouse=True)
def _no_developer_settings(monkeypatch):
    for name in list(__import__("os").environ):
        if name.startswith("CLOSECONV_") or name == "DAGSTER_HOME":
            monkeypatch.delenv(name)


def _stored_and_live(con: duckdb.DuckDBPyConnection, table: str) -> tuple[int, int]:
    stored = con.sql("SELECT estimated_size FROM duckdb_tables() WHERE table_name = ?", params=[table]).fetchall()[0][0]
    return stored, con.sql(f"SELECT count(*) FROM {table}").fetchall()[0][0]


def _three_row_groups_half_deleted(con: duckdb.DuckDBPyConnection) -> None:
    """Three full row groups; every other row of the first two deleted: DuckDB's vacuum would
    merge those two into one at the checkpoint."""
    con.sql(f"CREATE TABLE t AS SELECT range AS id, 'contact ' || range AS contact_id FROM range({3 * ROW_GROUP})")
    con.sql("CHECKPOINT")
    con.sql(f"DELETE FROM t WHERE id < {2 * ROW_GROUP} AND id % 2 = 0")
    con.sql("CHECKPOINT")


def test_duckdb_merges_row_groups_at_a_checkpoint_by_default(tmp_path):
    """The behaviour `leave_deleted_rows` turns off (if DuckDB stops merging, this fails and the
    setting can go)."""
    con = duckdb.connect(str(tmp_path / "default.duckdb"))
    _three_row_groups_half_deleted(con)
    assert _stored_and_live(con, "t") == (2 * ROW_GROUP, 2 * ROW_GROUP)


def test_leave_deleted_rows_keeps_deletes_in_place_at_a_checkpoint(tmp_path):
    con = duckdb.connect(str(tmp_path / "kept.duckdb"))
    leave_deleted_rows(con)
    _three_row_groups_half_deleted(con)
    assert _stored_and_live(con, "t") == (3 * ROW_GROUP, 2 * ROW_GROUP)
    assert deleted_shares(con) == {"t": pytest.approx(1 / 3)}
    # and the rows read back are the live ones
    assert con.sql("SELECT min(id), count(*) FILTER (WHERE id % 2 = 0 AND id < ?) FROM t",
                   params=[2 * ROW_GROUP]).fetchall() == [(1, 0)]


def test_rewrite_wasteful_tables_rewrites_only_tables_past_the_share(tmp_path):
    con = duckdb.connect(str(tmp_path / "staging.duckdb"))
    leave_deleted_rows(con)
    _three_row_groups_half_deleted(con)  # t: a third of its stored rows deleted
    # u: a tenth deleted, under the share; k: past it but with a key; small: past it but tiny
    con.sql(f"CREATE TABLE u AS SELECT range AS id FROM range({3 * ROW_GROUP})")
    con.sql(f"CREATE TABLE k (id BIGINT PRIMARY KEY, v VARCHAR)")
    con.sql(f"INSERT INTO k SELECT range, 'v' FROM range({3 * ROW_GROUP})")
    con.sql("CREATE TABLE small AS SELECT range AS id FROM range(1000)")
    con.sql(f"CREATE TABLE x AS SELECT range AS id FROM range({3 * ROW_GROUP})")  # past it, with an index
    con.sql("CREATE INDEX x_id ON x (id)")
    con.sql("CHECKPOINT")
    con.sql("DELETE FROM u WHERE id % 10 = 0")
    con.sql("DELETE FROM k WHERE id % 2 = 0")
    con.sql("DELETE FROM small WHERE id % 2 = 0")
    con.sql("DELETE FROM x WHERE id % 2 = 0")
    con.sql("CHECKPOINT")
    t_rows = con.sql("SELECT id, contact_id FROM t").fetchall()  # the stored order
    u_before, k_before, x_before = (_stored_and_live(con, n) for n in ("u", "k", "x"))

    assert rewrite_wasteful_tables(con, 0.25) == ["t"]

    assert _stored_and_live(con, "t") == (2 * ROW_GROUP, 2 * ROW_GROUP)
    assert con.sql("SELECT id, contact_id FROM t").fetchall() == t_rows  # same rows, same order
    assert con.sql("DESCRIBE t").fetchall() == [
        ("id", "BIGINT", "YES", None, None, None), ("contact_id", "VARCHAR", "YES", None, None, None)]
    assert _stored_and_live(con, "u") == u_before
    assert _stored_and_live(con, "k") == k_before
    assert _stored_and_live(con, "x") == x_before and x_before[1] == x_before[0] // 2
    assert con.sql("SELECT count(*) FROM duckdb_indexes() WHERE table_name = 'x'").fetchall() == [(1,)]
    assert _stored_and_live(con, "small") == (1000, 500) and 1000 < MIN_STORED_ROWS
    assert set(deleted_shares(con)) == {"t", "u", "k", "x"}  # not the small one
    con.sql("CHECKPOINT")
    assert _stored_and_live(con, "t") == (2 * ROW_GROUP, 2 * ROW_GROUP)


def test_a_run_opening_staging_rewrites_a_wasteful_table(tmp_path, caplog):
    settings = resolve_settings({"warehouse_path": tmp_path / "wh.duckdb"}, env_file=None)
    with staging_connection(settings) as con:
        _three_row_groups_half_deleted(con)
        assert deleted_shares(con)["t"] > DELETED_ROWS_SHARE  # staging's checkpoints left them
    with caplog.at_level(logging.INFO, logger="closeconv.progress"):
        with staging_connection(settings) as con:
            assert _stored_and_live(con, "t") == (2 * ROW_GROUP, 2 * ROW_GROUP)
            assert con.sql("SELECT count(*), min(id), max(id) FROM t").fetchall() == [(2 * ROW_GROUP, 1, 3 * ROW_GROUP - 1)]
    assert "rewrote staging table t: 33% of its stored rows were deleted rows" in caplog.text
