"""Unit tests of ingestion, sessionization and per-conversation metrics on an in-memory DuckDB.

No Dagster: the landing folder is staged with `closeconv.ingest`, then `sessionize` and the
`closeconv.metrics.build_*` functions run directly on the same connection.
"""

from __future__ import annotations

import gzip
import json
import random
from datetime import datetime, timezone
from pathlib import Path

import duckdb
import pytest

from closeconv.ingest import stage_landing_files, validate_and_dedupe
from closeconv.pipeline import build_events
from closeconv.metrics import build_conversations, build_daily_conversation_metrics
from closeconv.workflows import replay_workflows
from closeconv.sessionize import narrow_side_built, sessionize
from closeconv.warehouse import connect_memory
from conftest import assign, at, closed, ev, opened, recv, sent

UTC = timezone.utc


def ts(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)


def epoch_ms(text: str) -> int:
    return int(ts(text).timestamp() * 1000)


def write_jsonl(folder: Path, name: str, events: list) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    with open(path, "w", encoding="utf-8") as fh:
        for e in events:
            fh.write((e if isinstance(e, str) else json.dumps(e)) + "\n")
    return path


def build(landing: Path, tz: str = "UTC") -> duckdb.DuckDBPyConnection:
    """landing folder → validated_records → valid_events → sessionized `events` → metrics tables."""
    con = connect_memory()
    stage_landing_files(con, landing)
    build_events(con)
    replay_workflows(con, [])  # no workflows: assignments = the recorded timeline
    build_conversations(con)
    build_daily_conversation_metrics(con, tz)
    return con


def run_events(tmp_path: Path, events: list, tz: str = "UTC") -> duckdb.DuckDBPyConnection:
    landing = tmp_path / "landing"
    write_jsonl(landing, "events.jsonl", events)
    return build(landing, tz)


def rows(con, sql: str, params: list | None = None) -> list[dict]:
    return con.sql(sql, params=params or []).pl().to_dicts()


def conversations(con) -> list[dict]:
    return rows(con, "SELECT * FROM conversations ORDER BY opened_at, contact_id")


def rejected(con) -> list[dict]:
    return rows(
        con,
        "SELECT file, line, raw_record, event_id, reason_code, reason FROM rejected_events ORDER BY file, line",
    )


# --------------------------------------------------------------------------------------
# Ordering and the open/close state machine


def test_same_timestamp_orders_opened_received_sent_assignee_closed(tmp_path):
    t = "09:00:00"
    # Written in reverse order, with event ids that sort against the kind order.
    events = [
        closed(t, user="u1", event_id="a-close"),
        assign(t, "u7", event_id="b-assign"),
        sent(t, user="u1", event_id="c-sent"),
        recv(t, event_id="d-recv"),
        opened(t, source="user", user="u1", event_id="e-open"),
    ]
    con = run_events(tmp_path, events)
    order = [r["event_type"] for r in rows(con, "SELECT event_type FROM events ORDER BY event_order")]
    assert order == [
        "conversation.opened", "message.received", "message.sent", "contact.assignee.updated", "conversation.closed",
    ]
    assert rejected(con) == []
    (c,) = conversations(con)
    assert c["status"] == "closed"
    assert c["opened_by_source"] == "user" and c["opened_by_user_id"] == "u1"
    assert c["resolution_time_s"] == 0.0
    # Opened by the user, so FRT runs from the contact's message at the same instant.
    assert c["first_response_time_s"] == 0.0
    assert c["assignee_at_close"] == "u7"  # the assignment sorts before the close
    assert rows(con, "SELECT count(DISTINCT conversation_id) AS n FROM events")[0]["n"] == 1


def test_event_id_breaks_ties_of_same_time_and_kind(tmp_path):
    events = [recv("09:00", event_id="m-2"), recv("09:00", event_id="m-1"), closed("09:05", user="u1", event_id="z")]
    con = run_events(tmp_path, events)
    assert [r["event_id"] for r in rows(con, "SELECT event_id FROM events ORDER BY event_order")] == ["m-1", "m-2", "z"]


def test_message_sent_without_open_conversation_has_no_conversation(tmp_path):
    events = [
        sent("08:00", source="broadcast", event_id="bc1"),
        sent("08:01", source="workflow", event_id="wf1"),
        recv("09:00"),
        closed("09:10", user="u1"),
        sent("10:00", source="broadcast", event_id="bc2"),
    ]
    con = run_events(tmp_path, events)
    by_id = {r["event_id"]: r for r in rows(con, "SELECT * FROM events")}
    assert by_id["bc1"]["conversation_id"] is None
    assert by_id["wf1"]["conversation_id"] is None
    assert by_id["bc2"]["conversation_id"] is None
    (c,) = conversations(con)  # the broadcast and the workflow message opened nothing
    assert c["opened_at"] == ts(at("09:00"))
    assert c["outgoing_message_count"] == 0


def test_message_sent_with_given_conversation_id_but_nothing_open_belongs_to_no_conversation(tmp_path):
    # §4: a message.sent with no open conversation belongs to no conversation, even when the
    # platform stamped an id on it; it must not become a phantom conversation of its own.
    events = [
        sent("08:00", source="broadcast", conversation_id="stale-conv", event_id="bc1"),
        recv("09:00"),
        closed("09:10", user="u1"),
    ]
    con = run_events(tmp_path, events)
    assert rows(con, "SELECT conversation_id FROM events WHERE event_id = 'bc1'") == [{"conversation_id": None}]
    assert len(conversations(con)) == 1
    assert rows(con, "SELECT count(*) AS n FROM conversations WHERE conversation_id = 'stale-conv'")[0]["n"] == 0


def test_redundant_opened_is_kept_but_opens_nothing(tmp_path):
    events = [
        recv("09:00"),
        sent("09:02", user="u1"),
        opened("09:05", source="api", event_id="late-open"),  # 5 minutes after the implicit open
        sent("09:06", user="u1"),
        closed("09:10", user="u1"),
    ]
    con = run_events(tmp_path, events)
    (c,) = conversations(con)
    late = rows(con, "SELECT * FROM events WHERE event_id = 'late-open'")
    assert len(late) == 1 and late[0]["conversation_id"] == c["conversation_id"]
    assert rows(con, "SELECT count(*) AS n FROM events")[0]["n"] == 5
    assert c["opened_by_source"] == "contact" and c["opened_by_user_id"] is None
    assert c["opened_at"] == ts(at("09:00"))


def test_redundant_opened_while_explicitly_open_changes_nothing(tmp_path):
    events = [opened("09:00", source="user", user="u1"), opened("09:00:20", source="api"), recv("09:01"),
              sent("09:02", user="u1"), closed("09:03", user="u1")]
    con = run_events(tmp_path, events)
    (c,) = conversations(con)
    assert c["opened_by_source"] == "user" and c["opened_by_user_id"] == "u1"


@pytest.mark.parametrize(
    ("opened_at", "expected_source", "expected_user"),
    [
        ("09:00:30", "user", "u2"),     # within 60 s: fills opened_by
        ("09:01:00", "user", "u2"),     # exactly 60 s: still within
        ("09:01:01", "contact", None),  # too late: stays the contact's implicit open
    ],
)
def test_opened_within_60s_after_implicit_open_fills_opened_by(tmp_path, opened_at, expected_source, expected_user):
    events = [recv("09:00"), opened(opened_at, source="user", user="u2"), sent("09:05", user="u3"),
              closed("09:10", user="u3")]
    con = run_events(tmp_path, events)
    (c,) = conversations(con)
    assert (c["opened_by_source"], c["opened_by_user_id"]) == (expected_source, expected_user)
    assert c["opened_at"] == ts(at("09:00"))


def test_opened_by_fill_takes_source_and_user_from_the_same_open_event(tmp_path):
    # The first redundant open (a workflow, no user) names the opener; the user of a second
    # one must not be glued onto it.
    events = [recv("09:00"), opened("09:00:10", source="workflow"), opened("09:00:20", source="user", user="u9"),
              sent("09:05", user="u3"), closed("09:10", user="u3")]
    con = run_events(tmp_path, events)
    (c,) = conversations(con)
    assert (c["opened_by_source"], c["opened_by_user_id"]) == ("workflow", None)


def test_opened_by_user_id_is_null_when_the_opening_event_has_none(tmp_path):
    # A workflow opens the conversation (no user_id); later events of users must not leak in.
    events = [opened("08:00", source="workflow"), recv("08:01"), sent("08:02", user="u1"), closed("08:10", user="u1")]
    con = run_events(tmp_path, events)
    (c,) = conversations(con)
    assert c["opened_by_source"] == "workflow"
    assert c["opened_by_user_id"] is None
    assert c["first_response_time_s"] == 60.0  # from the first incoming message


def test_orphan_close_is_quarantined(tmp_path):
    events = [closed("08:00", user="u1", event_id="orphan"), recv("09:00"), closed("09:10", user="u1"),
              closed("09:20", user="u1", event_id="orphan2")]
    con = run_events(tmp_path, events)
    assert rows(con, "SELECT count(*) AS n FROM events WHERE event_id LIKE 'orphan%'")[0]["n"] == 0
    rej = rejected(con)
    assert [(r["event_id"], r["line"], r["reason_code"]) for r in rej] == [("orphan", 1, "orphan_close"),
                                                                            ("orphan2", 4, "orphan_close")]
    for r in rej:
        assert r["reason"].startswith("close without open conversation")
        assert json.loads(r["raw_record"])["event_id"] == r["event_id"]
    (c,) = conversations(con)
    assert c["closed_at"] == ts(at("09:10"))


# --------------------------------------------------------------------------------------
# Conversation ids


def _three_conversations() -> list[dict]:
    return [
        recv("09:00", contact="a", event_id="a1"), sent("09:01", user="u1", contact="a", event_id="a2"),
        closed("09:02", user="u1", contact="a", event_id="a3"),
        recv("10:00", contact="a", event_id="a4"), closed("10:30", source="auto_close", contact="a", event_id="a5"),
        opened("09:30", source="api", contact="b", event_id="b1"), recv("09:31", contact="b", event_id="b2"),
    ]


def test_derived_conversation_ids_are_deterministic_and_order_independent(tmp_path):
    events = _three_conversations()
    con1 = run_events(tmp_path / "one", events)
    ids1 = rows(con1, "SELECT event_id, conversation_id FROM events ORDER BY event_id")

    shuffled = events[:]
    random.Random(7).shuffle(shuffled)
    landing = tmp_path / "two" / "landing"
    write_jsonl(landing, "z-late.jsonl", shuffled[:3])
    write_jsonl(landing, "a-early.jsonl", shuffled[3:])
    con2 = build(landing)
    ids2 = rows(con2, "SELECT event_id, conversation_id FROM events ORDER BY event_id")

    assert ids1 == ids2
    conv_ids = {r["conversation_id"] for r in ids1}
    assert len(conv_ids) == 3
    assert all(cid.startswith("cv_") for cid in conv_ids)
    # Same input, a fresh database: the same ids again.
    assert rows(run_events(tmp_path / "three", events), "SELECT event_id, conversation_id FROM events ORDER BY event_id") == ids1


def test_derived_conversation_id_does_not_depend_on_staged_row_order(tmp_path):
    events = _three_conversations()
    write_jsonl(tmp_path, "f.jsonl", events)

    def from_staged(order: str) -> list[dict]:
        con = connect_memory()
        stage_landing_files(con, tmp_path)
        # The same validated records, stored in another physical order.
        con.sql(f"CREATE TABLE reordered AS SELECT * FROM validated_records ORDER BY line {order}")
        con.sql("DROP TABLE validated_records")
        con.sql("ALTER TABLE reordered RENAME TO validated_records")
        validate_and_dedupe(con)
        sessionize(con)
        return rows(con, "SELECT event_id, conversation_id FROM sessionized_events ORDER BY event_id")

    assert from_staged("ASC") == from_staged("DESC")


def test_sessionized_rows_meet_their_results_by_event_id_not_by_position(tmp_path):
    # The wide rows meet their sessionize results in a join on event_id: the physical order of
    # `_session_rows` cannot give an event another event's conversation.
    write_jsonl(tmp_path, "f.jsonl", _three_conversations())
    con = connect_memory()
    stage_landing_files(con, tmp_path)
    validate_and_dedupe(con)
    sessionize(con)
    view = "SELECT * FROM sessionized_events ORDER BY event_id"
    good = rows(con, view)
    assert len(good) == 7 and len({r["conversation_id"] for r in good}) == 3
    for order in ("event_id DESC", "event_id", "conversation_id DESC, event_order DESC"):
        con.sql(f"CREATE OR REPLACE TEMP TABLE _session_rows AS SELECT * FROM _session_rows ORDER BY {order}")
        assert rows(con, view) == good


def test_narrow_side_built_restores_the_optimizer_setting():
    con = connect_memory()
    setting = "SELECT current_setting('disabled_optimizers') AS s"
    con.sql("SET disabled_optimizers = 'late_materialization'")
    with narrow_side_built(con):
        assert set(rows(con, setting)[0]["s"].split(",")) == {"late_materialization", "build_side_probe_side"}
    assert rows(con, setting)[0]["s"] == "late_materialization"


def test_explicit_conversation_id_is_kept(tmp_path):
    events = [
        recv("09:00", conversation_id="conv-42"), sent("09:01", user="u1", conversation_id="conv-42"),
        closed("09:05", user="u1", conversation_id="conv-42"),
        recv("10:00"), closed("10:05", user="u1"),  # no id given: derived
    ]
    con = run_events(tmp_path, events)
    convs = conversations(con)
    assert convs[0]["conversation_id"] == "conv-42"
    assert convs[1]["conversation_id"].startswith("cv_")
    assert rows(con, "SELECT count(*) AS n FROM events WHERE conversation_id = 'conv-42'")[0]["n"] == 3


# --------------------------------------------------------------------------------------
# Metrics


def test_response_count_and_average_over_several_incoming_runs(tmp_path):
    events = [
        recv("09:00"), recv("09:01"),
        sent("09:02", source="workflow"),     # not a response
        sent("09:05", user="u1"),             # answers the run that started 09:00: 300 s
        sent("09:06", source="bot"),
        recv("09:10"),
        sent("09:12", user="u2"),             # 120 s
        sent("09:13", user="u2"),             # answers nothing
        recv("09:20"), recv("09:21"),
        sent("09:30", user="u1"),             # 600 s
        recv("09:40"),                        # never answered
        closed("09:50", user="u1"),
    ]
    con = run_events(tmp_path, events)
    (c,) = conversations(con)
    assert c["response_count"] == 3
    assert c["average_response_time_s"] == pytest.approx(340.0)
    assert c["first_response_time_s"] == 300.0
    assert c["first_response_by_user_id"] == "u1"
    assert c["incoming_message_count"] == 6
    assert c["outgoing_message_count"] == 6
    assert c["human_outgoing_message_count"] == 4


def test_no_human_reply_gives_null_response_metrics_not_zero(tmp_path):
    con = run_events(tmp_path, [recv("09:00"), sent("09:01", source="bot"), closed("09:30", source="bot")])
    (c,) = conversations(con)
    assert c["response_count"] == 0
    assert c["average_response_time_s"] is None
    assert c["first_response_time_s"] is None and c["frt_bucket"] is None
    assert c["first_response_at"] is None and c["first_response_by_user_id"] is None
    (d,) = rows(con, "SELECT * FROM daily_conversation_metrics")
    assert d["conversations_answered"] == 0
    assert d["frt_avg_s"] is None and d["frt_median_s"] is None and d["frt_p90_s"] is None
    assert d["resolution_avg_s"] == 1800.0


def test_first_assignee_when_already_assigned_at_open(tmp_path):
    events = [assign("08:00", "u1"), recv("09:00"), assign("09:05", "u2"), sent("09:06", user="u2"),
              closed("09:10", user="u2")]
    con = run_events(tmp_path, events)
    (c,) = conversations(con)
    assert c["first_assignee_id"] == "u1"
    assert c["first_assigned_at"] == ts(at("09:00"))  # assigned at open
    assert c["assignee_at_close"] == "u2"


def test_first_assignee_assigned_later(tmp_path):
    events = [recv("09:00"), assign("09:05", "u2"), assign("09:07", "u3"), sent("09:08", user="u3"),
              closed("09:10", user="u3")]
    con = run_events(tmp_path, events)
    (c,) = conversations(con)
    assert c["first_assignee_id"] == "u2"
    assert c["first_assigned_at"] == ts(at("09:05"))
    assert c["assignee_at_close"] == "u3"


def test_unassigned_at_open_then_assigned(tmp_path):
    # An unassignment before the open means nobody is assigned at open.
    events = [assign("07:00", "u1"), assign("08:00", None), recv("09:00"), assign("09:05", "u4"),
              closed("09:10", user="u4")]
    con = run_events(tmp_path, events)
    (c,) = conversations(con)
    assert c["first_assignee_id"] == "u4"
    assert c["first_assigned_at"] == ts(at("09:05"))


def test_assignee_at_close_null_after_unassign_and_never_assigned(tmp_path):
    events = [
        recv("09:00", contact="x"), assign("09:01", "u1", contact="x"), assign("09:02", "", contact="x"),
        closed("09:10", user="u1", contact="x"),
        recv("09:00", contact="y"), closed("09:10", user="u1", contact="y"),
    ]
    con = run_events(tmp_path, events)
    by_contact = {c["contact_id"]: c for c in conversations(con)}
    assert by_contact["x"]["assignee_at_close"] is None
    assert by_contact["x"]["first_assignee_id"] == "u1"
    assert by_contact["y"]["assignee_at_close"] is None
    assert by_contact["y"]["first_assignee_id"] is None and by_contact["y"]["first_assigned_at"] is None
    # An empty assignee_id is stored as null (unassigned).
    assert rows(con, "SELECT assignee_id FROM assignments WHERE contact_id = 'x' ORDER BY valid_from") == [
        {"assignee_id": "u1"}, {"assignee_id": None}]


def test_assignment_after_close_does_not_change_assignee_at_close(tmp_path):
    events = [assign("08:00", "u1"), recv("09:00"), closed("09:10", user="u1"), assign("09:10:01", None)]
    con = run_events(tmp_path, events)
    (c,) = conversations(con)
    assert c["assignee_at_close"] == "u1"


@pytest.mark.parametrize(
    ("reopen_at", "expected"),
    [("2026-03-03T09:00:00Z", False),        # exactly 24 h after the close
     ("2026-03-03T08:59:59.999Z", True),     # just under 24 h
     ("2026-03-02T09:00:01Z", True)],
)
def test_reopened_within_24h_boundary(tmp_path, reopen_at, expected):
    events = [recv("08:00"), closed("09:00", user="u1"), recv(reopen_at), closed("2026-03-03T10:00:00Z", user="u1")]
    con = run_events(tmp_path, events)
    first, second = conversations(con)
    assert first["reopened_within_24h"] is False
    assert second["reopened_within_24h"] is expected


@pytest.mark.parametrize(
    ("reply_at", "frt", "bucket", "order"),
    [
        ("2026-03-02T09:00:29.999Z", 29.999, "<30s", 1),
        ("2026-03-02T09:00:30Z", 30.0, "30s–2m", 2),
        ("2026-03-02T09:02:00Z", 120.0, "2–5m", 3),
        ("2026-03-02T09:05:00Z", 300.0, "5–10m", 4),
        ("2026-03-02T09:10:00Z", 600.0, "10–30m", 5),
        ("2026-03-02T09:30:00Z", 1800.0, "30m–1h", 6),
        ("2026-03-02T09:59:59.999Z", 3599.999, "30m–1h", 6),
        ("2026-03-02T10:00:00Z", 3600.0, ">1h", 7),
    ],
)
def test_frt_bucket_boundaries(tmp_path, reply_at, frt, bucket, order):
    events = [recv("09:00"), sent(reply_at, user="u1"), closed("11:00", user="u1")]
    con = run_events(tmp_path, events)
    (c,) = conversations(con)
    assert c["first_response_time_s"] == pytest.approx(frt, abs=1e-6)  # DOUBLE seconds: sub-µs noise
    assert c["frt_bucket"] == bucket
    assert c["frt_bucket_order"] == order  # labels like 10–30m do not sort as text; the order column does


def test_no_response_has_no_bucket_order(tmp_path):
    (c,) = conversations(run_events(tmp_path, [recv("09:00"), closed("09:10", source="auto_close")]))
    assert c["frt_bucket"] is None and c["frt_bucket_order"] is None


def test_daily_median_of_even_count_is_mean_of_middle_values(tmp_path):
    events = []
    for i, reply in enumerate(["09:01", "09:02", "09:04", "09:10"]):  # FRT 60, 120, 240, 600
        c = f"c{i}"
        events += [recv("09:00", contact=c), sent(reply, user="u1", contact=c), closed("10:00", user="u1", contact=c)]
    con = run_events(tmp_path, events)
    (d,) = rows(con, "SELECT * FROM daily_conversation_metrics")
    assert d["frt_median_s"] == 180.0
    assert d["frt_avg_s"] == 255.0
    assert d["conversations_closed"] == 4 and d["conversations_opened"] == 4


# --------------------------------------------------------------------------------------
# Input formats and the contract


def test_offsets_and_epoch_milliseconds(tmp_path):
    events = [
        recv("2026-03-02T16:00:00+07:00"),                         # 09:00Z
        sent("09:04", user="u1"),                                  # integer epoch ms (set below)
        ev("conversation.closed", "2026-03-02T04:30:00-05:00", source="user", user_id="u1"),  # 09:30Z
        recv("12:00", contact="c2"),                               # epoch ms as a string (set below)
    ]
    events[1]["occurred_at"] = epoch_ms("2026-03-02T09:04:00Z")
    events[3]["occurred_at"] = str(epoch_ms("2026-03-02T12:00:00.250Z"))
    con = run_events(tmp_path, events)
    assert rejected(con) == []
    times = [r["occurred_at"] for r in rows(con, "SELECT occurred_at FROM events ORDER BY contact_id, event_order")]
    assert times == [ts("2026-03-02T09:00:00Z"), ts("2026-03-02T09:04:00Z"), ts("2026-03-02T09:30:00Z"),
                     ts("2026-03-02T12:00:00.250Z")]
    c = conversations(con)[0]
    assert c["first_response_time_s"] == 240.0 and c["resolution_time_s"] == 1800.0


def test_epoch_seconds_and_naive_timestamps_are_rejected(tmp_path):
    events = [recv("2026-03-02T09:00:00"), recv("09:00", contact="c2")]
    events[1]["occurred_at"] = 1772442000  # seconds, not milliseconds
    con = run_events(tmp_path, events)
    rej = rejected(con)
    assert [r["line"] for r in rej] == [1, 2]
    assert "no UTC offset" in rej[0]["reason"]
    assert "epoch" in rej[1]["reason"]
    assert rows(con, "SELECT count(*) AS n FROM events")[0]["n"] == 0


def test_enums_match_case_insensitively_and_are_stored_lowercase(tmp_path):
    events = [
        ev("Message.Received", "09:00"),
        ev("MESSAGE.SENT", "09:01", source="User", user_id="u1"),
        ev("Conversation.Closed", "09:30", source="AUTO_CLOSE"),
    ]
    con = run_events(tmp_path, events)
    assert rejected(con) == []
    got = rows(con, "SELECT event_type, source FROM events ORDER BY event_order")
    assert got == [
        {"event_type": "message.received", "source": "contact"},
        {"event_type": "message.sent", "source": "user"},
        {"event_type": "conversation.closed", "source": "auto_close"},
    ]
    (c,) = conversations(con)
    assert c["closed_by_source"] == "auto_close" and c["first_response_time_s"] == 60.0


def test_unknown_extra_fields_are_ignored(tmp_path):
    e = recv("09:00", priority=3, tags=["vip"], meta={"nested": {"x": 1}}, Contact_ID="not-the-field")
    con = run_events(tmp_path, [e, closed("09:10", user="u1")])
    assert rejected(con) == []
    got = rows(con, "SELECT * FROM events ORDER BY event_order")
    assert len(got) == 2 and got[0]["contact_id"] == "c1"
    assert "priority" not in got[0]


def test_fields_are_case_sensitive(tmp_path):
    e = {"event_id": "x1", "event_type": "message.received", "occurred_at": at("09:00"), "Contact_Id": "c1"}
    con = run_events(tmp_path, [e])
    (r,) = rejected(con)
    assert "contact_id" in r["reason"]


def test_csv_with_quoted_comma_multiline_value_and_malformed_row(tmp_path):
    landing = tmp_path / "landing"
    landing.mkdir()
    header = "event_id,event_type,occurred_at,contact_id,source,user_id,category,summary"
    text = "\n".join([
        header,                                                                                        # line 1
        "r1,message.received,2026-03-02T09:00:00Z,c1,,,,",                                              # line 2
        'r2,conversation.closed,2026-03-02T09:10:00Z,c1,user,u1,Billing,"refund, partial"',            # line 3
        'r3,message.received,2026-03-02T10:00:00Z,c2,,,,"a note',                                       # line 4
        'over two lines"',                                                                              # line 5
        "r4,message.received,2026-03-02T10:01:00Z,c3,contact,,,too,many,fields",                       # line 6
        "r5,conversation.closed,2026-03-02T10:30:00Z,c2,auto_close,,,",                                 # line 7
    ]) + "\n"
    (landing / "events.csv").write_text(text, encoding="utf-8")
    con = build(landing)
    ev_rows = rows(con, "SELECT event_id, source_line, summary, category FROM events ORDER BY source_line")
    assert [(r["event_id"], r["source_line"]) for r in ev_rows] == [("r1", 2), ("r2", 3), ("r3", 4), ("r5", 7)]
    assert ev_rows[1]["summary"] == "refund, partial" and ev_rows[1]["category"] == "Billing"
    assert ev_rows[2]["summary"] == "a note\nover two lines"
    (bad,) = rejected(con)
    assert (bad["file"], bad["line"], bad["reason_code"]) == ("events.csv", 6, "malformed_row")
    assert "number of fields" in bad["reason"]
    assert "too,many,fields" in bad["raw_record"]


def test_csv_fast_path_line_numbers_with_quoted_comma(tmp_path):
    landing = tmp_path / "landing"
    landing.mkdir()
    (landing / "e.csv").write_text(
        "event_id,event_type,occurred_at,contact_id,source,user_id,category,summary\n"
        'r1,message.received,2026-03-02T09:00:00Z,c1,,,,\n'
        'r2,conversation.closed,2026-03-02T09:10:00Z,c1,user,u1,"Billing, refunds","done, thanks"\n'
        'r3,message.received,2026-03-02T09:20:00Z,c2,,,,\n'
        'r4,message.received,2026-03-02T09:20:00,c3,,,,\n',
        encoding="utf-8",
    )
    con = build(landing)
    assert rows(con, "SELECT event_id, source_line, category FROM events ORDER BY source_line") == [
        {"event_id": "r1", "source_line": 2, "category": None},
        {"event_id": "r2", "source_line": 3, "category": "Billing, refunds"},
        {"event_id": "r3", "source_line": 4, "category": None},
    ]
    (bad,) = rejected(con)
    assert bad["line"] == 5 and "no UTC offset" in bad["reason"]


def test_jsonl_line_numbers_count_blank_lines(tmp_path):
    con = run_events(tmp_path, [recv("09:00"), "", "   ", "{not json", closed("09:10", user="u1")])
    assert rows(con, "SELECT source_line FROM events ORDER BY source_line") == [{"source_line": 1}, {"source_line": 5}]
    (bad,) = rejected(con)
    assert bad["line"] == 4 and bad["reason_code"] == "invalid_json"


def test_jsonl_gz_input(tmp_path):
    landing = tmp_path / "landing"
    landing.mkdir()
    lines = [json.dumps(e) for e in [recv("09:00"), sent("09:01", user="u1"), closed("09:02", user="u1")]]
    with gzip.open(landing / "events.jsonl.gz", "wt", encoding="utf-8") as fh:
        fh.write("\n".join(lines) + "\n")
    con = build(landing)
    assert rejected(con) == []
    assert rows(con, "SELECT source_file, source_line FROM events ORDER BY event_order") == [
        {"source_file": "events.jsonl.gz", "source_line": n} for n in (1, 2, 3)]
    (c,) = conversations(con)
    assert c["first_response_time_s"] == 60.0


@pytest.mark.parametrize(
    ("name", "payload"),
    [
        ("broken.jsonl.gz", b"\x1f\x8b\x08\x00" + b"this is not deflate data" * 20),
        ("truncated.jsonl.gz", gzip.compress(("\n".join(['{"a": 1}'] * 2000)).encode())[:60]),
        ("broken.csv.gz", b"\x1f\x8b\x08\x00garbage"),
        ("broken.parquet", b"PAR1 not really parquet PAR1"),
    ],
)
def test_unreadable_file_is_quarantined_without_crashing(tmp_path, name, payload):
    landing = tmp_path / "landing"
    write_jsonl(landing, "good.jsonl", [recv("09:00"), closed("09:10", user="u1")])
    (landing / name).write_bytes(payload)
    con = build(landing)
    assert rows(con, "SELECT count(*) AS n FROM events")[0]["n"] == 2
    (bad,) = rejected(con)
    assert bad["file"] == name
    assert bad["reason_code"] == "unreadable_file"
    assert "could not be read" in bad["reason"]


def test_large_jsonl_with_invalid_utf8_is_staged_once(tmp_path):
    """A file larger than one read block whose later block has invalid UTF-8 falls back to a
    line-by-line read; the records of the blocks read before must not be staged twice."""
    landing = tmp_path / "landing"
    landing.mkdir()
    path = landing / "big.jsonl"
    n = 0
    with open(path, "wb") as fh:
        pad = "p" * 200
        while fh.tell() < 17 * 1024 * 1024:  # more than the 16 MiB read block
            n += 1
            fh.write((json.dumps({"event_id": f"e{n}", "event_type": "message.received",
                                  "occurred_at": "2026-03-02T09:00:00Z", "contact_id": f"c{n % 100}",
                                  "pad": pad}) + "\n").encode())
        fh.write(b'{"event_id": "bad", "event_type": "message.received", '
                 b'"occurred_at": "2026-03-02T09:00:00Z", "contact_id": "caf\xe9"}\n')
    con = connect_memory()
    stats = stage_landing_files(con, landing)
    assert stats.records_read == n + 1
    assert con.sql("SELECT count(*), count(DISTINCT line), min(line), max(line) FROM validated_records").fetchall() == [
        (n + 1, n + 1, 1, n + 1)]
    stats = validate_and_dedupe(con, stats)
    assert stats.duplicates_dropped == 0
    assert stats.events_unique == n  # the line that is not UTF-8 is quarantined, not mangled
    assert con.sql("SELECT line, reason_code FROM rejections").fetchall() == [(n + 1, "invalid_encoding")]


def test_exact_duplicate_dropped_and_conflict_quarantined(tmp_path):
    a = recv("09:00", event_id="dup")
    b = closed("09:10", user="u1", summary="one", event_id="conf")
    b2 = dict(b, summary="two")
    con = run_events(tmp_path, [a, dict(a), b, b2])
    stats_rows = rows(con, "SELECT event_id FROM events")
    assert stats_rows == [{"event_id": "dup"}]
    rej = rejected(con)
    assert [(r["line"], r["event_id"], r["reason_code"]) for r in rej] == [
        (3, "conf", "conflicting_duplicate"), (4, "conf", "conflicting_duplicate")]
    assert all("conflict" in r["reason"] and "summary" in r["reason"] for r in rej)


def test_conflicting_versions_in_other_files_keep_their_raw_text(tmp_path):
    # Validation keeps the text of a valid record only when its id repeats within its block; a
    # version from another file is read again from that file, JSONL and CSV alike.
    landing = tmp_path / "landing"
    landing.mkdir()
    write_jsonl(landing, "a.jsonl", [recv("08:00", contact="c0"), recv("09:00", event_id="x", summary="one")])
    (landing / "b.csv").write_text("event_id,event_type,occurred_at,contact_id,summary\n"
                                   "y,message.received,2026-03-02T07:00:00Z,c2,\n"
                                   "x,message.received,2026-03-02T09:00:00Z,c1,two\n")
    con = build(landing)
    rej = rows(con, "SELECT file, line, reason_code, raw_record FROM rejected_events ORDER BY file")
    assert [(r["file"], r["line"], r["reason_code"]) for r in rej] == [
        ("a.jsonl", 2, "conflicting_duplicate"), ("b.csv", 3, "conflicting_duplicate")]
    assert [json.loads(r["raw_record"])["summary"] for r in rej] == ["one", "two"]


def test_reports_are_by_close_day_and_open_day(tmp_path):
    events = [recv("2026-03-01T23:50:00Z"), closed("2026-03-02T00:10:00Z", user="u1", category="Billing")]
    con = run_events(tmp_path, events)
    got = rows(con, "SELECT day, conversations_opened, conversations_closed FROM daily_conversation_metrics ORDER BY day")
    assert [(str(r["day"]), r["conversations_opened"], r["conversations_closed"]) for r in got] == [
        ("2026-03-01", 1, 0), ("2026-03-02", 0, 1)]


@pytest.mark.parametrize("malformed", [False, True], ids=["fast-path", "line-by-line"])
def test_csv_with_byte_order_mark(tmp_path, malformed):
    # Spreadsheet exports start with a UTF-8 byte-order mark; it is not part of the first column name.
    landing = tmp_path / "landing"
    landing.mkdir()
    rows_ = ["event_id,event_type,occurred_at,contact_id,source,user_id",
             "r1,message.received,2026-03-02T09:00:00Z,c1,,",
             "r2,conversation.closed,2026-03-02T09:10:00Z,c1,user,u1"]
    if malformed:
        rows_.append("r3,message.received,2026-03-02T09:20:00Z,c2,,,extra")
    (landing / "export.csv").write_bytes(("\ufeff" + "\n".join(rows_) + "\n").encode("utf-8"))
    con = build(landing)
    assert rows(con, "SELECT event_id, source_line FROM events ORDER BY source_line") == [
        {"event_id": "r1", "source_line": 2}, {"event_id": "r2", "source_line": 3}]
    assert [r["line"] for r in rejected(con)] == ([4] if malformed else [])


def test_jsonl_byte_order_mark_and_invalid_utf8(tmp_path):
    landing = tmp_path / "landing"
    landing.mkdir()
    first = json.dumps(recv("09:00", event_id="bom-1"))
    second = json.dumps(closed("09:10", user="u1", event_id="bad-utf8")).replace("u1", "u\\u00e9").encode()
    (landing / "e.jsonl").write_bytes(b"\xef\xbb\xbf" + first.encode() + b"\n" + second.replace(b"\\u00e9", b"\xe9") + b"\n")
    con = build(landing)
    got = rows(con, "SELECT event_id, source_line FROM events ORDER BY source_line")
    assert [(r["event_id"], r["source_line"]) for r in got] == [("bom-1", 1)]
    # The undecodable line is quarantined (shown with a replacement character), never loaded
    # with a mangled id that could merge two contacts.
    bad = rows(con, "SELECT line, reason_code, raw_record FROM rejected_events")
    assert [(r["line"], r["reason_code"]) for r in bad] == [(2, "invalid_encoding")]
    assert "u\ufffd" in bad[0]["raw_record"]


def test_lowercase_z_offset_is_accepted(tmp_path):
    e = recv("09:00")
    e["occurred_at"] = "2026-03-02T09:00:00.500z"
    con = run_events(tmp_path, [e])
    assert rejected(con) == []
    assert rows(con, "SELECT occurred_at FROM events") == [{"occurred_at": ts("2026-03-02T09:00:00.500Z")}]


def test_parquet_corrupt_inside_its_data_is_quarantined_without_crashing(tmp_path):
    """A valid footer over corrupt pages fails while DuckDB reads, which aborts the staging
    transaction; the file must still end up quarantined and the other files loaded."""
    import polars as pl

    landing = tmp_path / "landing"
    write_jsonl(landing, "good.jsonl", [recv("09:00"), closed("09:10", user="u1")])
    n = 20_000
    path = landing / "damaged.parquet"
    pl.DataFrame({
        "event_id": [f"p{i}" for i in range(n)], "event_type": ["message.received"] * n,
        "occurred_at": ["2026-03-02T09:00:00Z"] * n, "contact_id": [f"c{i}" for i in range(n)],
    }).write_parquet(path, compression="zstd", statistics=False)
    data = bytearray(path.read_bytes())
    for i in range(200, 2000):  # scramble the first data pages, keep the footer
        data[i] = (data[i] * 7 + 3) % 256
    path.write_bytes(bytes(data))
    con = build(landing)
    assert rows(con, "SELECT count(*) AS n FROM events")[0]["n"] == 2
    (bad,) = rejected(con)
    assert (bad["file"], bad["reason_code"]) == ("damaged.parquet", "unreadable_file")
    assert bad["reason"].startswith("file could not be read as parquet")


@pytest.mark.parametrize("malformed", [False, True], ids=["fast-path", "line-by-line"])
def test_csv_blank_lines_keep_line_numbers_true(tmp_path, malformed):
    landing = tmp_path / "landing"
    landing.mkdir()
    lines = [
        "event_id,event_type,occurred_at,contact_id",   # 1
        "r1,message.received,2026-03-02T09:00:00Z,c1",  # 2
        "",                                             # 3
        ",,,",                                          # 4 (all empty: not a record)
        "r2,message.received,2026-03-02T09:00:00,c2",   # 5 (no offset)
        "r3,message.received,2026-03-02T09:05:00Z,c3",  # 6
    ]
    if malformed:
        lines.append("r4,message.received,2026-03-02T09:06:00Z,c4,extra")  # 7
    (landing / "gaps.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    con = build(landing)
    assert rows(con, "SELECT event_id, source_line FROM events ORDER BY source_line") == [
        {"event_id": "r1", "source_line": 2}, {"event_id": "r3", "source_line": 6}]
    assert [(r["line"], r["reason_code"]) for r in rejected(con)] == (
        [(5, "invalid_timestamp")] + ([(7, "malformed_row")] if malformed else []))


def test_validation_is_cached_per_file_version(tmp_path):
    """A re-run validates only new or changed files; a changed or removed file leaves nothing stale."""
    landing = tmp_path / "landing"
    landing.mkdir()
    (landing / "a.jsonl").write_text(json.dumps(recv("09:00", contact="ca", event_id="a1")) + "\n")
    (landing / "b.jsonl").write_text(json.dumps(recv("09:00", contact="cb", event_id="b1")) + "\n")
    con = connect_memory()
    validate_and_dedupe(con, stage_landing_files(con, landing))
    assert sorted(r[0] for r in con.sql("SELECT event_id FROM valid_events").fetchall()) == ["a1", "b1"]

    (landing / "a.jsonl").write_text(json.dumps(recv("09:00", contact="ca", event_id="a2")) + "\nnot json\n")
    (landing / "b.jsonl").unlink()
    validate_and_dedupe(con, stage_landing_files(con, landing))
    assert [r[0] for r in con.sql("SELECT event_id FROM valid_events").fetchall()] == ["a2"]
    assert con.sql("SELECT file, line, reason_code FROM rejections").fetchall() == [("a.jsonl", 2, "invalid_json")]
    assert con.sql("SELECT DISTINCT file FROM validated_records").fetchall() == [("a.jsonl",)]


def test_orphan_close_reason_names_the_close_that_ended_the_conversation(tmp_path):
    con = run_events(tmp_path, [recv("09:00", event_id="r1"), closed("09:10", user="u1", event_id="close-1"),
                                closed("09:20", user="u2", event_id="close-2"), closed("10:00", contact="c9", event_id="lone", user="u1")])
    reasons = dict(con.sql("SELECT event_id, reason FROM rejected_events").fetchall())
    assert "already closed by event 'close-1' at 2026-03-02T09:10:00.000Z" in reasons["close-2"]
    assert reasons["lone"].endswith("deliver the events that opened it, or drop this close")
