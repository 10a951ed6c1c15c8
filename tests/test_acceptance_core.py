"""Acceptance scenarios A1–A7 and A12–A14 (docs: /work/shared/spec/acceptance.md).

Each scenario writes events into a landing folder, runs the real Dagster job in-process
(`closeconv_env.run()`, or `closeconv run` through the CLI for A7) and reads the published
DuckDB warehouse. The tests assert the expected values of the scenarios; they compute nothing.
"""

from __future__ import annotations

import itertools
import json
import random
from datetime import date, datetime, timedelta, timezone

import polars as pl
import pytest
from click.testing import CliRunner
from polars.testing import assert_frame_equal

from conftest import TEMPLATE_UNASSIGN, ClosecovEnv, Warehouse, at, closed, ev, opened, recv, sent

UTC = timezone.utc


def ts(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)


def with_template(env: ClosecovEnv) -> ClosecovEnv:
    """The scenarios assume the shipped template is in the workflows folder (once it ships)."""
    if TEMPLATE_UNASSIGN.exists():
        env.use_unassign_template()
    return env


def run(env: ClosecovEnv, timezone_name: str = "UTC") -> Warehouse:
    return with_template(env).run(timezone_name)


def only_conversation(wh: Warehouse) -> dict:
    convs = wh.rows("SELECT * FROM conversations")
    assert len(convs) == 1, convs
    return convs[0]


# --------------------------------------------------------------------------------------
# A1–A5: per-conversation metrics


def test_a1_first_response_resolution_and_closing_note(closeconv_env):
    closeconv_env.write_jsonl("a1.jsonl", [
        recv("09:00:00"),
        sent("09:04:00", source="user", user="u1"),
        closed("09:30:00", source="user", user="u1", category="Billing", summary="refund issued"),
    ])
    wh = run(closeconv_env)
    c = only_conversation(wh)
    assert c["status"] == "closed"
    assert c["first_response_time_s"] == 240.0
    assert c["resolution_time_s"] == 1800.0
    assert c["frt_bucket"] == "2–5m"
    assert c["first_response_by_user_id"] == "u1"
    assert c["closed_by_user_id"] == "u1"
    assert c["closed_by_source"] == "user"
    assert c["category"] == "Billing"
    assert c["summary"] == "refund issued"
    assert c["opened_at"] == ts(at("09:00:00")) and c["closed_at"] == ts(at("09:30:00"))
    assert wh.scalar("SELECT count(*) FROM rejected_events") == 0


def test_a2_workflow_and_bot_messages_are_not_responses(closeconv_env):
    closeconv_env.write_jsonl("a2.jsonl", [
        recv("10:00"),
        sent("10:00:05", source="workflow"),
        sent("10:01", source="bot"),
        sent("10:20", source="user", user="u2"),
        closed("10:40", source="user", user="u2"),
    ])
    c = only_conversation(run(closeconv_env))
    assert c["first_response_time_s"] == 1200.0
    assert c["first_response_by_user_id"] == "u2"
    assert c["outgoing_message_count"] == 3
    assert c["human_outgoing_message_count"] == 1


def test_a3_no_human_response_gives_null_frt_never_zero(closeconv_env):
    closeconv_env.write_jsonl("a3.jsonl", [
        recv("11:00"),
        sent("11:00:01", source="workflow"),
        closed("12:00", source="auto_close"),
    ])
    wh = run(closeconv_env)
    c = only_conversation(wh)
    assert c["first_response_time_s"] is None
    assert c["frt_bucket"] is None
    assert c["resolution_time_s"] == 3600.0
    assert c["closed_by_source"] == "auto_close"
    # A report over only this conversation: average (and median, p90) FRT null, not 0.
    (day,) = wh.rows("SELECT * FROM daily_conversation_metrics WHERE day = DATE '2026-03-02'")
    assert day["conversations_closed"] == 1
    assert day["conversations_answered"] == 0
    assert day["frt_avg_s"] is None
    assert day["frt_median_s"] is None
    assert day["frt_p90_s"] is None
    assert day["resolution_avg_s"] == 3600.0
    assert wh.scalar("SELECT avg(first_response_time_s) FROM conversations") is None


def test_a4_agent_opening_message_is_not_a_response(closeconv_env):
    closeconv_env.write_jsonl("a4.jsonl", [
        opened("08:00", source="user", user="u1"),
        sent("08:00:10", source="user", user="u1"),
        recv("08:30"),
        sent("08:45", source="user", user="u1"),
        closed("09:00", source="user", user="u1"),
    ])
    c = only_conversation(run(closeconv_env))
    assert c["opened_by_source"] == "user"
    assert c["opened_by_user_id"] == "u1"
    assert c["first_response_time_s"] == 900.0
    assert c["first_response_at"] == ts(at("08:45"))
    assert c["resolution_time_s"] == 3600.0


def test_a5_ok_thank_you_reopen_is_flagged(closeconv_env):
    closeconv_env.write_jsonl("a5.jsonl", [
        recv("12:00"),
        closed("13:00", source="user", user="u1"),
        recv("13:05", text="ok thank you"),
        closed("13:06", source="user", user="u1"),
    ])
    wh = run(closeconv_env)
    convs = wh.rows("SELECT * FROM conversations ORDER BY opened_at")
    assert len(convs) == 2
    first, second = convs
    assert first["reopened_within_24h"] is False
    assert second["reopened_within_24h"] is True
    assert (first["opened_at"], first["closed_at"]) == (ts(at("12:00")), ts(at("13:00")))
    assert (second["opened_at"], second["closed_at"]) == (ts(at("13:05")), ts(at("13:06")))
    assert first["conversation_id"] != second["conversation_id"]
    (day,) = wh.rows("SELECT * FROM daily_conversation_metrics")
    assert day["conversations_reopened_within_24h"] == 1


# --------------------------------------------------------------------------------------
# A6–A7: deduplication and quarantine


def test_a6_exact_duplicate_dropped_conflicting_duplicate_quarantined(closeconv_env):
    duplicate = recv("09:00", event_id="dup-1", channel_id="wa1")
    conflict_a = closed("09:30", source="user", user="u1", category="Billing", summary="refund issued",
                        event_id="conf-1")
    conflict_b = dict(conflict_a, summary="refund refused")
    closeconv_env.write_jsonl("first.jsonl", [duplicate, conflict_a])
    closeconv_env.write_jsonl("second.jsonl", [dict(duplicate), conflict_b])
    wh = run(closeconv_env)

    # The exact duplicate: one event, no rejection, counted as dropped.
    assert wh.scalar("SELECT count(*) FROM events WHERE event_id = 'dup-1'") == 1
    assert wh.scalar("SELECT count(*) FROM rejected_events WHERE event_id = 'dup-1'") == 0
    assert wh.scalar("SELECT duplicates_dropped FROM pipeline_runs") == 1

    # The conflict: every version quarantined, naming the conflict; none loaded.
    assert wh.scalar("SELECT count(*) FROM events WHERE event_id = 'conf-1'") == 0
    rej = wh.rows("SELECT * FROM rejected_events WHERE event_id = 'conf-1' ORDER BY file")
    assert [(r["file"], r["line"]) for r in rej] == [("first.jsonl", 2), ("second.jsonl", 2)]
    for r in rej:
        assert r["reason_code"] == "conflicting_duplicate"
        assert "conflict" in r["reason"] and "summary" in r["reason"] and "conf-1" in r["reason"]
    assert {json.loads(r["raw_record"])["summary"] for r in rej} == {"refund issued", "refund refused"}
    assert wh.scalar("SELECT count(*) FROM rejected_events") == 2
    # Without the close the conversation is still open.
    assert only_conversation(wh)["status"] == "open"


def test_a7_bad_lines_are_quarantined_with_file_line_and_reason(closeconv_env):
    env = with_template(closeconv_env)
    valid = recv("09:00", event_id="ok-1")
    no_contact = recv("09:01", event_id="no-contact")
    del no_contact["contact_id"]
    naive = recv("09:02", event_id="naive")
    naive["occurred_at"] = "2026-03-02T09:02:00"
    unknown = ev("foo", "09:03", event_id="foo-1")
    env.write_jsonl("a7.jsonl", [valid, '{"event_id": "broken", "event_type": "message.rec', no_contact, naive,
                                 unknown])
    from closeconv.cli import main

    result = CliRunner().invoke(main, [
        "run", "--quiet", "--landing", str(env.landing), "--warehouse", str(env.warehouse_path),
        "--workflows", str(env.workflows), "--reference", str(env.reference),
    ])
    assert result.exit_code == 0, result.output
    wh = Warehouse(env.warehouse_path)
    assert wh.rows("SELECT event_id, source_file, source_line FROM events") == [
        {"event_id": "ok-1", "source_file": "a7.jsonl", "source_line": 1}]
    rej = wh.rows("SELECT * FROM rejected_events ORDER BY line")
    assert [(r["file"], r["line"]) for r in rej] == [("a7.jsonl", n) for n in (2, 3, 4, 5)]
    not_json, missing, offset, foo = (r["reason"] for r in rej)
    assert "not valid JSON" in not_json
    assert "contact_id" in missing and "missing" in missing
    assert "2026-03-02T09:02:00" in offset and "no UTC offset" in offset
    assert "unknown event_type 'foo'" in foo and "message.received" in foo  # names what is allowed
    assert [r["reason_code"] for r in rej] == ["invalid_json", "missing_field", "invalid_timestamp",
                                               "unknown_event_type"]
    assert all(r["raw_record"] for r in rej)
    assert all(r["ingested_at"] is not None for r in rej)
    assert "rejected" in result.output and "4" in result.output


def test_orphan_close_is_quarantined(closeconv_env):
    closeconv_env.write_jsonl("orphan.jsonl", [
        closed("08:00", source="user", user="u1", contact="c9", event_id="orphan-1"),
        recv("09:00"),
        closed("09:10", source="user", user="u1"),
    ])
    wh = run(closeconv_env)
    assert wh.scalar("SELECT count(*) FROM events WHERE event_id = 'orphan-1'") == 0
    (r,) = wh.rows("SELECT * FROM rejected_events")
    assert (r["file"], r["line"], r["event_id"]) == ("orphan.jsonl", 1, "orphan-1")
    assert r["reason"].startswith("close without open conversation")
    assert json.loads(r["raw_record"])["event_id"] == "orphan-1"
    assert only_conversation(wh)["contact_id"] == "c1"


# --------------------------------------------------------------------------------------
# A12–A13: daily metrics


def test_a12_days_follow_the_workspace_timezone_across_dst(closeconv_env):
    closeconv_env.write_jsonl("a12.jsonl", [
        # X: closed 2026-03-08T04:30Z = 2026-03-07 23:30 EST
        recv("2026-03-08T04:00:00Z", contact="x"), closed("2026-03-08T04:30:00Z", source="user", user="u1", contact="x"),
        # Y: closed 2026-03-09T03:30Z = 2026-03-08 23:30 EDT (DST began 2026-03-08)
        recv("2026-03-09T03:00:00Z", contact="y"), closed("2026-03-09T03:30:00Z", source="user", user="u1", contact="y"),
        # Z: closed 2026-03-09T04:30Z = 2026-03-09 00:30 EDT (it would be 2026-03-08 without DST)
        recv("2026-03-09T04:10:00Z", contact="z"), closed("2026-03-09T04:30:00Z", source="user", user="u1", contact="z"),
    ])
    wh = run(closeconv_env, "America/New_York")
    days = wh.rows("SELECT day, conversations_closed, conversations_opened, timezone "
                   "FROM daily_conversation_metrics ORDER BY day")
    assert days == [
        {"day": date(2026, 3, 7), "conversations_closed": 1, "conversations_opened": 1, "timezone": "America/New_York"},
        {"day": date(2026, 3, 8), "conversations_closed": 1, "conversations_opened": 1, "timezone": "America/New_York"},
        {"day": date(2026, 3, 9), "conversations_closed": 1, "conversations_opened": 1, "timezone": "America/New_York"},
    ]
    # The stored timestamps stay UTC.
    assert wh.scalar("SELECT closed_at FROM conversations WHERE contact_id = 'x'") == ts("2026-03-08T04:30:00Z")


def test_a13_average_median_p90_and_answered(closeconv_env):
    events = []
    replies = {"c1": "09:01", "c2": "09:02", "c3": "09:10", "c4": "10:00", "c5": None}  # FRT 60, 120, 600, 3600, —
    for contact, reply in replies.items():
        events.append(recv("09:00", contact=contact, channel_id="wa1"))
        if reply:
            events.append(sent(reply, source="user", user="u1", contact=contact, channel_id="wa1"))
        events.append(closed("11:00", source="user", user="u1", category="Billing", contact=contact, channel_id="wa1"))
    closeconv_env.write_jsonl("a13.jsonl", events)
    wh = run(closeconv_env)
    assert sorted(wh.frame("SELECT first_response_time_s FROM conversations")["first_response_time_s"].to_list(),
                  key=lambda v: (v is None, v)) == [60.0, 120.0, 600.0, 3600.0, None]
    (day,) = wh.rows("SELECT * FROM daily_conversation_metrics")
    assert (day["day"], day["category"], day["channel_id"], day["closed_by_source"]) == (
        date(2026, 3, 2), "Billing", "wa1", "user")
    assert day["conversations_closed"] == 5
    assert day["conversations_answered"] == 4
    assert day["frt_avg_s"] == 1095.0
    assert day["frt_median_s"] == 360.0
    assert day["frt_p90_s"] == pytest.approx(2700.0)  # quantile_cont: 600 + 0.7 × (3600 − 600)
    assert day["resolution_avg_s"] == 7200.0


# --------------------------------------------------------------------------------------
# A14: the result depends only on the set of events


_SUMMARIES = ["refund issued", "refund, partial", "café – résolu ✓", 'said "thanks"', "line one\nline two", "",
              None, "  padded  "]
_CATEGORIES = ["Billing", "Shipping", "Technical", "Other", None]
_USERS = {"u1": "t1", "u2": "t1", "u3": "t2", "u4": "t2", "u5": "t3"}


def generate_history(seed: int, conversations: int = 200) -> tuple[list[dict], list]:
    """Deterministic events for `conversations` conversations plus some records to quarantine.

    Returns (good events, bad records). Good events are valid contract records with varied
    timelines: implicit and explicit opens, late "opened" events, bot and workflow messages,
    several incoming runs, assignments before and during conversations (some at the same
    instant as the close), "ok thank you" reopens, broadcasts outside conversations,
    conversations left open, and three timestamp formats.
    """
    rng = random.Random(seed)
    ids = itertools.count(1)
    good: list[dict] = []

    def stamp(t: datetime):
        kind = rng.random()
        if kind < 0.6:
            return t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond // 1000:03d}Z"
        if kind < 0.8:
            local = t.astimezone(timezone(timedelta(hours=7)))
            return local.strftime("%Y-%m-%dT%H:%M:%S.") + f"{local.microsecond // 1000:03d}+07:00"
        return int(t.timestamp() * 1000)

    def add(event_type: str, t: datetime, contact: str, **fields) -> dict:
        e = {"event_id": f"s{seed}-{next(ids):05d}", "event_type": event_type, "occurred_at": stamp(t),
             "contact_id": contact, **{k: v for k, v in fields.items() if v is not None or k == "assignee_id"}}
        good.append(e)
        return e

    def later(t: datetime, lo: float, hi: float) -> datetime:
        return t + timedelta(milliseconds=rng.randint(int(lo * 1000), int(hi * 1000)))

    def user() -> str:
        return rng.choice(sorted(_USERS))

    contacts = [f"k{i:03d}" for i in range(70)]
    plan = [contacts[i % len(contacts)] for i in range(conversations)]
    start = datetime(2026, 3, 1, 6, 0, tzinfo=UTC)
    clock = {c: later(start, 0, 36 * 3600) for c in contacts}
    remaining = {c: plan.count(c) for c in contacts}
    for contact in plan:
        t = clock[contact]
        channel = rng.choice(["wa1", "wa2", "fb1"])
        remaining[contact] -= 1
        last = remaining[contact] == 0
        if rng.random() < 0.15:  # a broadcast while nothing is open: belongs to no conversation
            add("message.sent", t, contact, source="broadcast", channel_id=channel)
            t = later(t, 60, 3600)
        if rng.random() < 0.3:  # assigned before the conversation opens
            u = user()
            add("contact.assignee.updated", t, contact, source=rng.choice(["user", "api", "workflow"]),
                assignee_id=u, user_id=u)
            t = later(t, 1, 600)
        opening = rng.random()
        if opening < 0.2:
            u = user()
            add("conversation.opened", t, contact, source="user", user_id=u, team_id=_USERS[u], channel_id=channel)
            t = later(t, 1, 30)
            add("message.sent", t, contact, source="user", user_id=u, channel_id=channel)
            t = later(t, 30, 1800)
            add("message.received", t, contact, channel_id=channel)
        elif opening < 0.3:
            add("conversation.opened", t, contact, source=rng.choice(["api", "ctc_ads", "workflow"]), channel_id=channel)
            t = later(t, 0, 120)
            add("message.received", t, contact, channel_id=channel)
        else:
            add("message.received", t, contact, channel_id=channel)
            if rng.random() < 0.2:  # a late "opened" naming the opener (within 60 s or not)
                add("conversation.opened", later(t, 1, 90), contact, source=rng.choice(["workflow", "user", "api"]),
                    user_id="u1", channel_id=channel)
        for _run in range(rng.randint(1, 4)):
            if rng.random() < 0.5:
                t = later(t, 0, 5)
                add("message.sent", t, contact, source=rng.choice(["workflow", "bot"]), channel_id=channel)
            for _ in range(rng.randint(0, 2)):
                t = later(t, 1, 300)
                add("message.received", t, contact, channel_id=channel)
            if rng.random() < 0.3:
                u = user()
                t = later(t, 1, 600)
                add("contact.assignee.updated", t, contact, source=rng.choice(["user", "workflow", "bot"]),
                    assignee_id=rng.choice([u, u, None, ""]), user_id=u)
            if rng.random() < 0.8:
                u = user()
                t = later(t, 5, 5400)
                add("message.sent", t, contact, source="user", user_id=u, team_id=_USERS[u], channel_id=channel)
        if last and rng.random() < 0.25:
            continue  # left open
        t = later(t, 10, 7200)
        if rng.random() < 0.15:  # an assignment at the very instant of the close
            add("contact.assignee.updated", t, contact, source="user", assignee_id=user(), user_id="u1")
        close_source = rng.choice(["user", "user", "user", "auto_close", "bot", "workflow", "api"])
        u = user() if close_source == "user" else None
        add("conversation.closed", t, contact, source=close_source, user_id=u, team_id=_USERS.get(u),
            category=rng.choice(_CATEGORIES), summary=rng.choice(_SUMMARIES), channel_id=channel)
        if rng.random() < 0.25:  # "ok thank you": reopens, then auto-closes
            t = later(t, 5, 900)
            add("message.received", t, contact, channel_id=channel, text="ok thank you")
            t = later(t, 3600, 3600)
            add("conversation.closed", t, contact, source="auto_close")
        clock[contact] = later(t, 60, 30 * 3600)

    bad: list = [
        "this line is not JSON",
        json.dumps({"event_id": "bad-missing", "event_type": "message.received", "occurred_at": "2026-03-02T09:00:00Z"}),
        json.dumps({"event_id": "bad-naive", "event_type": "message.received", "occurred_at": "2026-03-02T09:00:00",
                    "contact_id": "k001"}),
        json.dumps({"event_id": "bad-type", "event_type": "message.deleted", "occurred_at": "2026-03-02T09:00:00Z",
                    "contact_id": "k001"}),
        json.dumps({"event_id": "bad-orphan", "event_type": "conversation.closed", "occurred_at": "2026-02-01T09:00:00Z",
                    "contact_id": "orphan-contact", "source": "auto_close"}),
        json.dumps({"event_id": "bad-conflict", "event_type": "message.received", "occurred_at": "2026-02-01T09:00:00Z",
                    "contact_id": "conflict-contact", "channel_id": "wa1"}),
        json.dumps({"event_id": "bad-conflict", "event_type": "message.received", "occurred_at": "2026-02-01T09:00:00Z",
                    "contact_id": "conflict-contact", "channel_id": "wa2"}),
    ]
    return good, bad


def _instant(e: dict) -> datetime:
    v = e["occurred_at"]
    if isinstance(v, int):
        return datetime.fromtimestamp(v / 1000, UTC)
    return ts(v)


# Columns that say where a record came from, not what it is.
_PROVENANCE = {"events": ["source_file", "source_line"], "rejected_events": ["file", "line", "ingested_at"]}


def _sorted_table(wh: Warehouse, table: str) -> pl.DataFrame:
    frame = wh.frame(f"SELECT * FROM {table}").drop(_PROVENANCE.get(table, []))
    return frame.sort(frame.columns, nulls_last=True)


def test_a14_result_depends_only_on_the_set_of_events(tmp_path):
    good, bad = generate_history(seed=14)
    rng = random.Random(1414)
    redelivered = rng.sample(good, 15)  # exact duplicates, redelivered in another batch

    # One JSONL file in time order.
    single = ClosecovEnv(tmp_path / "single")
    in_order = sorted(good + redelivered, key=lambda e: (_instant(e), e["event_id"]))
    single.write_jsonl("all.jsonl", in_order + bad)

    # The same events shuffled over three files in three formats. The bad records stay in
    # the JSONL file, as only it can hold a line that is not JSON, and a raw record is kept
    # as delivered (a CSV row's raw text differs from a JSON line's).
    split = ClosecovEnv(tmp_path / "split")
    shuffled = good + redelivered
    rng.shuffle(shuffled)
    third = len(shuffled) // 3
    jsonl_part, csv_part, parquet_part = shuffled[:third], shuffled[third:2 * third], shuffled[2 * third:]
    jsonl_part = jsonl_part + bad
    rng.shuffle(jsonl_part)
    split.write_csv("b-part.csv", csv_part)
    split.write_parquet("c-part.parquet", parquet_part)
    split.write_jsonl("a-part.jsonl", jsonl_part)

    wh_single = run(single)
    wh_split = run(split)

    # The scenario is not trivial.
    assert wh_single.scalar("SELECT count(*) FROM conversations") >= 200
    assert wh_single.scalar("SELECT count(*) FROM conversations WHERE status = 'open'") > 0
    assert wh_single.scalar("SELECT count(*) FROM conversations WHERE reopened_within_24h") > 0
    assert wh_single.scalar("SELECT count(*) FROM events WHERE conversation_id IS NULL") > 0
    assert wh_single.scalar("SELECT count(*) FROM assignments") > 0
    assert wh_single.scalar("SELECT count(*) FROM rejected_events") == len(bad)
    assert wh_split.scalar("SELECT count(*) FROM rejected_events") == len(bad)
    assert wh_single.scalar("SELECT count(*) FROM events") == len(good)
    for wh in (wh_single, wh_split):
        assert wh.scalar("SELECT duplicates_dropped FROM pipeline_runs") == len(redelivered)
    assert wh_split.scalar("SELECT count(DISTINCT source_file) FROM events") == 3

    from closeconv.warehouse import PUBLIC_TABLES

    compared = [t for t in PUBLIC_TABLES if t != "pipeline_runs"]
    for table in ("events", "rejected_events", "conversations", "daily_conversation_metrics", "assignments"):
        assert table in compared
    for table in compared:
        try:
            assert_frame_equal(_sorted_table(wh_single, table), _sorted_table(wh_split, table), check_exact=True)
        except AssertionError as exc:
            raise AssertionError(f"table {table} differs between one ordered file and three shuffled files: {exc}")
