"""Warehouse access for the dashboard: missing/empty files, no handle left open between
queries (so a pipeline run can always publish), and a newly published file picked up."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

from closeconv.reports.access import Warehouse, WarehouseUnavailable
from closeconv.reports.conversations import count_conversations, list_conversations
from closeconv.reports.filters import Filters
from tests.conftest import ClosecovEnv, closed, recv


def open_handles(path: Path) -> list[str]:
    found = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.startswith(str(path)):
            found.append(target)
    return found


def make_db(path: Path, sql: str) -> None:
    con = duckdb.connect(str(path))
    con.sql(sql)
    con.close()


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    env = ClosecovEnv(tmp_path_factory.mktemp("access"))
    env.write_jsonl("a.jsonl", [recv("09:00"), closed("09:30", user="u1"), "{not json",
                                recv("10:00", contact="c2"), closed("10:30", user="u1", contact="c2")])
    env.run(timezone="Europe/Berlin")
    return env.warehouse_path


def test_missing_file(tmp_path):
    wh = Warehouse(tmp_path / "nope.duckdb")
    assert not wh.exists() and wh.is_empty()
    assert wh.timezone == "UTC" and wh.data_as_of is None and "missing" in wh.cache_key
    with pytest.raises(WarehouseUnavailable, match="closeconv run"):
        wh.query("SELECT 1")


def test_file_without_conversations_or_rows_is_empty(tmp_path):
    make_db(tmp_path / "a.duckdb", "CREATE TABLE other (x INT)")
    assert Warehouse(tmp_path / "a.duckdb").is_empty()
    make_db(tmp_path / "b.duckdb", "CREATE TABLE conversations (conversation_id VARCHAR)")
    assert Warehouse(tmp_path / "b.duckdb").is_empty()


def test_unreadable_file_is_retried_then_reported(tmp_path):
    bad = tmp_path / "bad.duckdb"
    bad.write_bytes(b"this is not a database" * 100)
    wh = Warehouse(bad)
    assert wh.is_empty()
    with pytest.raises(WarehouseUnavailable, match="after"):
        wh.query("SELECT 1")


def test_no_handle_stays_open_and_a_writer_can_replace_the_file(built, tmp_path):
    wh = Warehouse(built)
    assert wh.timezone == "Europe/Berlin"
    assert count_conversations(wh, Filters(), wh.today()) == 2
    page = list_conversations(wh, Filters(), wh.today())  # no reference data: names fall back to ids
    assert page["closed_by_user_name"].to_list() == ["u1", "u1"] and page["first_assignee_name"].to_list() == [None, None]
    wh.copy_to_csv("SELECT * FROM conversations", None, tmp_path / "x.csv")
    assert open_handles(built) == []
    # Another process can open the very file read-write (DuckDB's lock would refuse it if this
    # process still held the file) while this one keeps its Warehouse.
    code = ("import duckdb,sys; c=duckdb.connect(sys.argv[1]); "
            "c.sql(\"DELETE FROM conversations WHERE contact_id='c2'\"); c.close()")
    copy = tmp_path / "copy.duckdb"
    shutil.copy(built, copy)
    subprocess.run([sys.executable, "-c", code, str(built)], check=True, timeout=60)
    assert count_conversations(wh, Filters(), wh.today()) == 1
    subprocess.run([sys.executable, "-c", code.replace("'c2'", "'c1'"), str(copy)], check=True, timeout=60)
    # Publishing is an atomic rename over the file: the next query sees the new version.
    before = wh.cache_key
    os.replace(copy, built)
    assert wh.cache_key != before
    assert wh.query("SELECT contact_id FROM conversations")["contact_id"].to_list() == ["c2"]
    assert open_handles(built) == []


def test_queries_run_concurrently(built):
    from concurrent.futures import ThreadPoolExecutor

    wh = Warehouse(built)
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda _: wh.scalar("SELECT count(*) FROM events"), range(16)))
    assert len(set(results)) == 1 and results[0] > 0


def test_rejected_records_by_reason_with_examples(built):
    from closeconv.reports import health

    wh = Warehouse(built)
    assert health.rejected_by_reason(wh).select("reason_code", "records", "files").rows() == [("invalid_json", 1, 1)]
    example = health.rejected_examples(wh, "invalid_json").row(0, named=True)
    assert (example["file"], example["line"], example["raw_record"]) == ("a.jsonl", 3, "{not json")
    assert health.rejected_examples(wh, "' OR 1=1 --").height == 0
    assert health.recent_runs(wh)["records_rejected"].to_list() == [1]


def test_sessions_are_in_utc_whatever_the_process_timezone(built):
    code = ("import sys; from pathlib import Path; from closeconv.reports.access import Warehouse; "
            "wh = Warehouse(Path(sys.argv[1])); "
            "print(wh.scalar(\"SELECT current_setting('TimeZone')\"), "
            "wh.scalar(\"SELECT strftime(min(closed_at), '%H:%M%z') FROM conversations\"))")
    out = subprocess.run([sys.executable, "-c", code, str(built)], env=dict(os.environ, TZ="Asia/Tokyo"),
                         capture_output=True, text=True, timeout=60, check=True).stdout.split()
    assert out[0] == "UTC" and out[1].endswith("+00")
