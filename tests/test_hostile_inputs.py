"""Inputs found in real exports: none of them may fail a run, and every record is accounted for."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from closeconv.cli import main
from conftest import recv

GOOD = '{"event_id":"ok%d","event_type":"message.received","occurred_at":"2026-03-02T09:00:0%dZ","contact_id":"c%d"}'


@pytest.fixture
def hostile_run(closeconv_env):
    landing = closeconv_env.landing
    # A CSV with a repeated column name and a case-variant of a contract field (a real help-desk export has two "Variant").
    (landing / "dup-columns.csv").write_text(
        "event_id,event_type,occurred_at,contact_id,Variant,Variant,Contact_ID\n"
        "d1,message.received,2026-03-02T09:00:00Z,c1,a,b,X\n"
    )
    # Header text that would be SQL if pasted into a query.
    (landing / "quote-header.csv").write_text(
        'event_id,event_type,occurred_at,contact_id,"summary"" := version()))::VARCHAR, TRUE FROM _rows --"\n'
        "q1,message.received,2026-03-02T09:00:00Z,c2,hello\n"
    )
    # A Parquet file with the same hostile column name.
    pq.write_table(pa.table({"event_id": ["p1"], "event_type": ["message.received"],
                             "occurred_at": ["2026-03-02T09:00:00Z"], "contact_id": ["c3"],
                             'x" := 1, "y': ["z"]}), landing / "quote-header.parquet")
    # Epoch values that overflow, and a value over the csv module's default 128 KiB field limit.
    closeconv_env.write_jsonl("epochs.jsonl", [
        {"event_id": "big", "event_type": "message.received", "occurred_at": 99999999999999999, "contact_id": "c4"},
        {"event_id": "neg", "event_type": "message.received", "occurred_at": -9223372036854775807, "contact_id": "c4"},
        {"event_id": "good-epoch", "event_type": "message.received", "occurred_at": 1772442000000, "contact_id": "c4"},
    ])
    long_summary = "x" * 300_000
    (landing / "long-field.csv").write_text(
        "event_id,event_type,occurred_at,contact_id,source,user_id,summary\n"
        "l1,message.received,2026-03-02T09:00:00Z,c5,,,\n"
        "l2,conversation.closed,2026-03-02T09:10:00Z,c5,user,u1," + long_summary + "\n"
        "l3,message.received,2026-03-02T09:20:00Z\n"  # ragged: forces the line-by-line reader
    )
    # JSONL with one line that is not UTF-8 between good lines.
    (landing / "latin1.jsonl").write_bytes(
        (GOOD % (1, 1, 6) + "\n").encode()
        + b'{"event_id":"bad-enc","event_type":"message.received","occurred_at":"2026-03-02T09:00:00Z","contact_id":"Jos\xe9"}\n'
        + (GOOD % (2, 2, 6) + "\n").encode()
    )
    # A file of unknown format is reported, not read.
    (landing / "README.txt").write_text("not events")
    runner = CliRunner()
    result = runner.invoke(main, ["run", "--landing", str(landing), "--warehouse", str(closeconv_env.warehouse_path),
                                  "--timezone", "UTC"], catch_exceptions=False)
    return closeconv_env, result


def test_hostile_files_do_not_fail_the_run(hostile_run):
    env, result = hostile_run
    assert result.exit_code == 0, result.output
    assert "ignored 1 files of unknown format (README.txt)" in result.output


def test_column_names_are_data_not_sql(hostile_run):
    env, _ = hostile_run
    wh = env.run()
    events = {r["event_id"]: r for r in wh.rows("SELECT event_id, contact_id, summary FROM events")}
    assert events["d1"]["contact_id"] == "c1"  # the case-variant Contact_ID is another field, ignored
    assert events["q1"]["summary"] is None  # the odd header is not `summary`, and no SQL ran
    assert "p1" in events
    assert wh.scalar("SELECT count(*) FROM rejected_events WHERE file IN ('dup-columns.csv', 'quote-header.csv')") == 0
    assert wh.scalar("SELECT version()") not in {r["summary"] for r in events.values()}


def test_repeated_csv_column_keeps_both_values_in_the_raw_record(closeconv_env):
    (closeconv_env.landing / "dup.csv").write_text(
        "event_id,event_type,occurred_at,contact_id,Variant,Variant\n"
        "d1,message.received,2026-03-02T09:00:00,c1,a,b\n"  # naive timestamp: quarantined, raw kept
    )
    wh = closeconv_env.run()
    raw = json.loads(wh.scalar("SELECT raw_record FROM rejected_events"))
    assert raw["Variant"] == "a" and raw["Variant#2"] == "b"


def test_out_of_range_epochs_are_quarantined_with_a_reason(hostile_run):
    env, _ = hostile_run
    wh = env.run()
    reasons = dict(wh.frame("SELECT event_id, reason FROM rejected_events WHERE file = 'epochs.jsonl'").iter_rows())
    assert set(reasons) == {"big", "neg"}
    assert "out of range for epoch milliseconds" in reasons["big"]
    assert wh.scalar("SELECT count(*) FROM events WHERE event_id = 'good-epoch'") == 1


def test_long_csv_values_load_through_the_line_reader(hostile_run):
    env, _ = hostile_run
    wh = env.run()
    assert wh.scalar("SELECT length(summary) FROM events WHERE event_id = 'l2'") == 300_000
    rejected = wh.rows("SELECT line, reason_code FROM rejected_events WHERE file = 'long-field.csv'")
    assert rejected == [{"line": 4, "reason_code": "malformed_row"}]


def test_a_line_that_is_not_utf8_is_quarantined_not_mangled(hostile_run):
    env, _ = hostile_run
    wh = env.run()
    row = wh.rows("SELECT line, reason_code, reason FROM rejected_events WHERE file = 'latin1.jsonl'")
    assert [(r["line"], r["reason_code"]) for r in row] == [(2, "invalid_encoding")]
    assert "UTF-8" in row[0]["reason"]
    assert wh.scalar("SELECT count(*) FROM events WHERE source_file = 'latin1.jsonl'") == 2


def test_every_record_is_accounted_for(hostile_run):
    env, _ = hostile_run
    wh = env.run()
    run = wh.rows("SELECT * FROM pipeline_runs ORDER BY published_at DESC LIMIT 1")[0]
    assert run["events_loaded"] + run["duplicates_dropped"] + run["records_rejected"] == run["records_read"]


def test_a_misspelled_workflows_folder_is_a_configuration_error(closeconv_env):
    closeconv_env.write_jsonl("a.jsonl", [recv("09:00")])
    result = CliRunner().invoke(main, ["run", "--landing", str(closeconv_env.landing), "--warehouse",
                                       str(closeconv_env.warehouse_path), "--workflows", str(closeconv_env.root / "wokflows")])
    assert result.exit_code == 2
    assert "wokflows" in result.output and "does not exist" in result.output


def test_a_landing_path_that_is_a_file_says_so(closeconv_env):
    path = closeconv_env.write_jsonl("a.jsonl", [recv("09:00")])
    result = CliRunner().invoke(main, ["run", "--landing", str(path), "--warehouse", str(closeconv_env.warehouse_path)])
    assert result.exit_code == 2
    assert "is a file, not a folder" in result.output


def test_strings_that_look_like_json_values_are_kept_as_text(closeconv_env):
    # from_json hands a string and a JSON boolean/array/object the same text; only the JSON types
    # are wrong_type: the strings are data and must arrive as written.
    closeconv_env.write_jsonl("looks-like-json.jsonl", [
        recv("2026-03-02T09:00:00Z", contact="c1"),
        {"event_id": "x1", "event_type": "conversation.closed", "occurred_at": "2026-03-02T09:10:00Z",
         "contact_id": "c1", "source": "user", "user_id": "u1", "team_id": "true",
         "category": "{billing}", "summary": "[urgent] refund"},
        {"event_id": "r2", "event_type": "message.received", "occurred_at": "2026-03-02T09:20:00Z",
         "contact_id": "false"},
        {"event_id": "bad", "event_type": "message.received", "occurred_at": "2026-03-02T09:30:00Z",
         "contact_id": "c3", "summary": ["urgent"]},
    ])
    wh = closeconv_env.run()
    close = wh.rows("SELECT team_id, category, summary FROM events WHERE event_id = 'x1'")
    assert close == [{"team_id": "true", "category": "{billing}", "summary": "[urgent] refund"}]
    assert wh.scalar("SELECT contact_id FROM events WHERE event_id = 'r2'") == "false"
    assert wh.rows("SELECT event_id, reason_code FROM rejected_events") == [{"event_id": "bad", "reason_code": "wrong_type"}]
