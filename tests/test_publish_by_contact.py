"""A publish scoped to the contacts the steps journaled (closeconv/changes.py, PUBLISH) patches
the tables keyed by contact by those contacts alone, and still gives exactly staging's tables;
the scope survives a publish that fails before the rename; a file it did not write is written
anew. Real pipeline runs build staging; the tests then change rows of a few contacts by hand
and journal those contacts, as the steps do."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil

import duckdb
import pytest

import closeconv.warehouse as warehouse_module
from closeconv import changes, deleted_rows
from closeconv.warehouse import CONTACT_TABLES, PUBLIC_TABLES, publish, staging_connection
from conftest import TEMPLATE_UNASSIGN, ClosecovEnv, assign, closed, recv, sent
from helpers.os_faults import RenameFails

DATA_TABLES = [t for t in PUBLIC_TABLES if t != "pipeline_runs"]  # pipeline_runs is the run history


def _conversation(contact: str, hour: int) -> list[dict]:
    return [recv(f"{hour:02d}:00", contact=contact), assign(f"{hour:02d}:01", "u2", contact=contact),
            sent(f"{hour:02d}:02", user="u1", contact=contact), closed(f"{hour:02d}:10", user="u1", contact=contact)]


@pytest.fixture
def env(closeconv_env: ClosecovEnv, monkeypatch) -> ClosecovEnv:
    # A file this small is mostly block overhead: the vacuum rule would write every publish in
    # full (tests/test_warehouse_publish.py checks that rule).
    monkeypatch.setattr(warehouse_module, "VACUUM_WASTE_SHARE", 1000.0)
    if TEMPLATE_UNASSIGN.exists():
        closeconv_env.use_unassign_template()
    closeconv_env.write_jsonl("day1.jsonl", [e for i in range(12) for h in (9, 14) for e in _conversation(f"c{i}", h)])
    closeconv_env.run()
    return closeconv_env


def _digests(con: duckdb.DuckDBPyConnection) -> dict[str, str]:
    """sha256 per data table over all its rows and columns, in a total order."""
    return {t: hashlib.sha256(json.dumps(con.sql(f"SELECT * FROM {t} ORDER BY ALL").fetchall(), default=str).encode())
            .hexdigest() for t in DATA_TABLES}


def _published(env: ClosecovEnv) -> dict[str, str]:
    con = duckdb.connect(str(env.warehouse_path), read_only=True)
    try:
        con.sql("SET TimeZone = 'UTC'")
        return _digests(con)
    finally:
        con.close()


def _written(env: ClosecovEnv) -> dict[str, str]:
    con = duckdb.connect(str(env.settings().staging_path), read_only=True)
    try:
        return dict(con.sql("SELECT table_name, written FROM published_tables").fetchall())
    finally:
        con.close()


def _scope(env: ClosecovEnv) -> list[str] | str:
    with staging_connection(env.settings()) as con:
        scope = changes.scope_of(con, changes.PUBLISH, outputs=["published_tables"])
        return "everything" if scope.everything else sorted(r[0] for r in con.sql(f"SELECT * FROM {scope.table}").fetchall())


def _publish(env: ClosecovEnv, run_id: str, change: str = "", contacts: list[str] = (), everything: bool = False):
    """Change staging by hand, journal it for PUBLISH, publish; return staging's digests."""
    settings = env.settings()
    with staging_connection(settings) as con:
        if change:
            con.sql(change)
        if contacts:
            changes.mark_contacts(con, [changes.PUBLISH], "SELECT unnest(?::VARCHAR[]) AS contact_id", [list(contacts)])
        if everything:
            changes.mark_everything(con, [changes.PUBLISH])
        staged = _digests(con)
        publish(con, settings, run_id)
    return staged


# Rows added (c1), removed (c2) and changed (c3), in every table keyed by contact.
CHANGE_THREE_CONTACTS = """
    INSERT INTO events SELECT * REPLACE (event_id || '-late' AS event_id, event_order + 100 AS event_order)
        FROM events WHERE contact_id = 'c1';
    INSERT INTO workflow_runs SELECT * REPLACE (run_id || '-again' AS run_id) FROM workflow_runs WHERE contact_id = 'c1';
    DELETE FROM events WHERE contact_id = 'c2';
    DELETE FROM conversations WHERE contact_id = 'c2';
    DELETE FROM workflow_actions WHERE contact_id = 'c2';
    DELETE FROM assignments WHERE contact_id = 'c2' AND seq > 1;
    UPDATE events SET summary = 'changed' WHERE contact_id = 'c3';
    UPDATE conversations SET summary = 'changed' WHERE contact_id = 'c3';
    UPDATE workflow_drift SET contact_id = contact_id WHERE contact_id = 'c3';
    UPDATE daily_conversation_metrics SET conversations_closed = conversations_closed + 1;
"""


def test_a_publish_scoped_to_contacts_equals_staging_and_keeps_the_record_exact(env):
    staged = _publish(env, "scoped", CHANGE_THREE_CONTACTS, contacts=["c1", "c2", "c3"])
    written = _written(env)
    assert {t: written[t] for t in ("events", "conversations", "workflow_runs", "workflow_actions", "assignments")} \
        == dict.fromkeys(("events", "conversations", "workflow_runs", "workflow_actions", "assignments"), "by contact")
    assert written["workflow_drift"] == "kept"  # its rows of c3 did not change
    assert written["daily_conversation_metrics"] in ("delta", "rewritten")  # not keyed by contact: by its hashes
    assert written["users"] == "kept"
    assert _published(env) == staged
    assert _scope(env) == []  # cleared with the publish

    # What the patch recorded equals a full hash of staging: a publish of everything keeps all.
    staged = _publish(env, "everything", everything=True)
    assert set(_written(env).values()) == {"kept"}
    assert _published(env) == staged

    # And the recorded row hashes are the published rows: a row delta on top is exact.
    staged = _publish(env, "by-row", "UPDATE events SET summary = 'again' WHERE contact_id IN ('c3', 'c4') "
                      "AND event_type = 'message.received'",
                      everything=True)
    assert _written(env)["events"] == "delta"
    assert _published(env) == staged


def _recorded_hashes_are_the_rows(env: ClosecovEnv, table: str) -> bool:
    """The row hashes recorded for `table` are those of staging's rows, duplicates counted."""
    with staging_connection(env.settings()) as con:
        recorded = con.sql(f"SELECT h, count(*) FROM published_row_hashes WHERE table_name = '{table}' "
                           "GROUP BY h ORDER BY ALL").fetchall()
        return recorded == con.sql(f"SELECT hash(r), count(*) FROM {table} AS r GROUP BY 1 ORDER BY ALL").fetchall()


def test_the_row_hashes_of_a_table_patched_by_row_are_patched_by_its_delta(env):
    # user_closes names no contact: a few rows changed go by row, and so does its hash record.
    staged = _publish(env, "twice", "INSERT INTO user_closes SELECT * FROM user_closes ORDER BY ALL LIMIT 1; "
                      "INSERT INTO user_closes SELECT * FROM user_closes ORDER BY ALL LIMIT 1")
    assert _written(env)["user_closes"] == "delta"
    assert _published(env) == staged
    assert _recorded_hashes_are_the_rows(env, "user_closes")

    # One of the two copies goes: the record keeps the other (a multiset, not a set).
    staged = _publish(env, "once", "DELETE FROM user_closes WHERE rowid = (SELECT max(rowid) FROM user_closes); "
                      "UPDATE user_closes SET previous_close_of_contact_at = NULL WHERE rowid = (SELECT min(rowid) FROM user_closes)")
    assert _written(env)["user_closes"] == "delta"
    assert _published(env) == staged
    assert _recorded_hashes_are_the_rows(env, "user_closes")


def test_an_empty_scope_keeps_every_table_keyed_by_contact(env):
    staged = _publish(env, "nothing-new")
    written = _written(env)
    assert {written[t] for t in CONTACT_TABLES} == {"kept"}
    assert _published(env) == staged


def test_rows_added_or_removed_outside_the_scope_are_still_published(env):
    # No step journaled c5: its row count gives it away and `events` goes by its row hashes.
    staged = _publish(env, "unjournaled", "INSERT INTO events SELECT * REPLACE (event_id || '-x' AS event_id, "
                      "event_order + 100 AS event_order) FROM events WHERE contact_id = 'c5' AND event_order = 1",
                      contacts=["c1"])
    assert _written(env)["events"] == "delta"
    assert _published(env) == staged


def test_a_publish_failing_at_the_rename_keeps_the_scope_for_the_next_run(env, monkeypatch):
    before = _published(env)
    monkeypatch.setattr(warehouse_module, "os", RenameFails())
    with pytest.raises(OSError, match="simulated"):
        _publish(env, "failed", CHANGE_THREE_CONTACTS, contacts=["c1", "c2", "c3"])
    assert _published(env) == before
    assert _scope(env) == ["c1", "c2", "c3"]

    monkeypatch.undo()
    staged = _publish(env, "next")  # the record matches no published file: written in full
    assert set(_written(env).values()) == {"rewritten"}
    assert _published(env) == staged
    assert _scope(env) == []


def test_a_publish_failing_while_patching_keeps_the_scope_and_the_next_one_patches_it(env, monkeypatch):
    before = _published(env)
    real = warehouse_module.patch_by_contact

    def half_done(con, tables, scope_table):
        real(con, tables[:1], scope_table)
        raise RuntimeError("simulated: killed while patching")

    monkeypatch.setattr(warehouse_module, "patch_by_contact", half_done)
    with pytest.raises(RuntimeError, match="simulated"):
        _publish(env, "failed", CHANGE_THREE_CONTACTS, contacts=["c1", "c2", "c3"])
    assert _published(env) == before
    assert _scope(env) == ["c1", "c2", "c3"]

    monkeypatch.undo()
    staged = _publish(env, "next")  # nothing new journaled: the scope left by the failed run
    assert _written(env)["events"] == "by contact"
    assert _published(env) == staged


def test_a_replaced_published_file_is_written_in_full_whatever_the_scope(env):
    copy = env.warehouse_path.with_name("copy.duckdb")
    shutil.copyfile(env.warehouse_path, copy)
    os.replace(copy, env.warehouse_path)  # the same content, but not the file this staging wrote
    staged = _publish(env, "after-replace", CHANGE_THREE_CONTACTS, contacts=["c1", "c2", "c3"])
    assert set(_written(env).values()) == {"rewritten"}
    assert _published(env) == staged


def test_the_blocking_checks_read_the_journaled_contacts_rows(env):
    from pipelines.defs.checks import run_checks

    with staging_connection(env.settings()) as con:
        con.sql("UPDATE events SET event_order = 1 WHERE contact_id = 'c1'")
        changes.mark_contacts(con, [changes.PUBLISH], "SELECT 'c1' AS contact_id")
        failed = [r for r in run_checks(con, ["events", "rejected_events"]) if not r.passed]
    assert [r.check_name for r in failed] == ["events_match_contract"]
    assert "of contact c1 is shared by" in failed[0].description


def test_the_file_stays_bounded_over_publishes_patched_by_contact(closeconv_env):
    env = closeconv_env
    if TEMPLATE_UNASSIGN.exists():
        env.use_unassign_template()
    env.write_jsonl("day1.jsonl", [e for i in range(3000) for e in _conversation(f"c{i}", 9)])
    env.run()
    sizes, ways = [], []
    for i in range(8):
        # A twentieth of the contacts change every time: all their rows are deleted and inserted.
        staged = _publish(env, f"pass-{i}", f"UPDATE events SET summary = 'pass {i}' WHERE substr(contact_id, 2)::INTEGER % 20 = {i}",
                          contacts=[f"c{n}" for n in range(3000) if n % 20 == i])
        ways.append(_written(env)["events"])
        sizes.append(env.warehouse_path.stat().st_size)
    assert "by contact" in ways
    # The vacuum rule (VACUUM_WASTE_SHARE) writes the file anew once it has grown enough.
    assert max(sizes) <= 2 * sizes[0], sizes
    assert _published(env) == staged


def test_a_published_table_past_the_share_of_deleted_rows_has_the_file_written_whole(env, monkeypatch, caplog):
    """Patches leave the rows they replace in the published file (closeconv/deleted_rows.py),
    where the dropped staging tables' free blocks hide them from the file's size; once a table's
    deleted rows pass DELETED_ROWS_SHARE, the next publish writes the file whole."""
    monkeypatch.setattr(deleted_rows, "MIN_STORED_ROWS", 0)  # this file's tables are tiny
    half = [f"c{i}" for i in range(6)]
    staged = _publish(env, "half", "UPDATE events SET summary = 'half' WHERE contact_id IN ('c0', 'c1', 'c2', 'c3', 'c4', 'c5')",
                      contacts=half)
    assert _written(env)["events"] == "by contact"
    assert _published(env) == staged
    with duckdb.connect(str(env.warehouse_path), read_only=True) as con:
        stored, live = con.sql("SELECT estimated_size, (SELECT count(*) FROM events) FROM duckdb_tables() "
                               "WHERE table_name = 'events'").fetchall()[0]
    assert (stored - live) / stored > deleted_rows.DELETED_ROWS_SHARE  # half the rows replaced, kept in place

    with caplog.at_level(logging.INFO, logger="closeconv.progress"):
        staged = _publish(env, "next", "UPDATE events SET summary = 'next' WHERE contact_id = 'c6'", contacts=["c6"])
    assert set(_written(env).values()) == {"rewritten"}
    assert "of the rows stored in events are deleted rows (vacuum)" in caplog.text
    assert _published(env) == staged
    with duckdb.connect(str(env.warehouse_path), read_only=True) as con:
        assert con.sql("SELECT estimated_size = (SELECT count(*) FROM events) FROM duckdb_tables() "
                       "WHERE table_name = 'events'").fetchall() == [(True,)]
