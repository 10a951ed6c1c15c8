"""The dashboard's queries (closeconv.reports) on a real warehouse built by the real pipeline.

Workspace timezone America/New_York; DST began on 2026-03-08 (scenario A12). The closed
conversations, with their local close day:

| conv | contact | closed (UTC)      | local day | by            | category  | FRT  | notes                        |
|------|---------|-------------------|-----------|---------------|-----------|------|------------------------------|
| V    | c5      | 03-07 12:00       | 03-07     | bot           | —         | 3600 | assigned u2, channel ch2     |
| X    | c1      | 03-08 04:30       | 03-07     | user u1 (t1)  | Billing   | 60   | A12's X                      |
| R    | c1      | 03-08 05:01       | 03-08     | user u1 (t1)  | —         | —    | "ok thank you" reopen of X   |
| Z    | c3      | 03-08 16:00       | 03-08     | user u1 (t1)  | Technical | 600  | opened by user u1            |
| Y    | c2      | 03-09 03:30       | 03-08     | user u2 (t2)  | sales     | 120  | A12's Y; category lower case |
| W    | c4      | 03-09 15:00       | 03-09     | auto_close    | —         | —    | workflow message only, ch2   |

Plus one conversation still open (c6, opened 03-09 16:00 UTC).
"""

from __future__ import annotations

import csv
from datetime import date, datetime, timezone

import polars as pl
import pytest

from closeconv.reports import charts, conversations as cv, health, kpis as kp, workflows
from closeconv.reports.access import Warehouse
from closeconv.reports.filters import Filters, parse_query_params, resolve_period
from tests.conftest import ClosecovEnv, assign, closed, opened, recv, sent

NY = "America/New_York"
TODAY = date(2026, 3, 9)


def t(s: str) -> str:
    return f"2026-{s}Z"


def utc(s: str) -> datetime:
    return datetime.fromisoformat(f"2026-{s}").replace(tzinfo=timezone.utc)


EVENTS = [
    # V: assigned to u2 before the contact writes; closed by a bot
    assign(t("03-07T10:00:00"), "u2", contact="c5", channel_id="ch2"),
    recv(t("03-07T10:01:00"), contact="c5", channel_id="ch2"),
    sent(t("03-07T11:01:00"), user="u2", contact="c5", channel_id="ch2", team_id="t2"),
    closed(t("03-07T12:00:00"), source="bot", contact="c5", channel_id="ch2"),
    # X and its reopen R
    recv(t("03-08T04:00:00"), contact="c1", channel_id="ch1"),
    sent(t("03-08T04:01:00"), user="u1", contact="c1", channel_id="ch1", team_id="t1"),
    closed(t("03-08T04:30:00"), user="u1", category="Billing", summary="refund issued", contact="c1",
           channel_id="ch1", team_id="t1"),
    recv(t("03-08T05:00:00"), contact="c1", channel_id="ch1"),
    closed(t("03-08T05:01:00"), user="u1", contact="c1", channel_id="ch1", team_id="t1"),
    # Z: opened by the agent; the clock starts at the contact's message
    opened(t("03-08T15:00:00"), user="u1", contact="c3", channel_id="ch1", team_id="t1"),
    sent(t("03-08T15:00:10"), user="u1", contact="c3", channel_id="ch1", team_id="t1"),
    recv(t("03-08T15:30:00"), contact="c3", channel_id="ch1"),
    sent(t("03-08T15:40:00"), user="u1", contact="c3", channel_id="ch1", team_id="t1"),
    closed(t("03-08T16:00:00"), user="u1", category="Technical", summary="reset the router", contact="c3",
           channel_id="ch1", team_id="t1"),
    # Y
    recv(t("03-09T02:00:00"), contact="c2", channel_id="ch1"),
    assign(t("03-09T02:01:00"), "u2", contact="c2", channel_id="ch1"),
    sent(t("03-09T02:02:00"), user="u2", contact="c2", channel_id="ch1", team_id="t2"),
    closed(t("03-09T03:30:00"), user="u2", category="sales", summary="upgraded to pro", contact="c2",
           channel_id="ch1", team_id="t2"),
    # W: only a workflow message, then auto-close
    recv(t("03-09T14:00:00"), contact="c4", channel_id="ch2"),
    sent(t("03-09T14:00:05"), source="workflow", contact="c4", channel_id="ch2"),
    closed(t("03-09T15:00:00"), source="auto_close", contact="c4", channel_id="ch2"),
    # still open
    recv(t("03-09T16:00:00"), contact="c6", channel_id="ch1"),
]


@pytest.fixture(scope="module")
def wh(tmp_path_factory) -> Warehouse:
    env = ClosecovEnv(tmp_path_factory.mktemp("reports"))
    env.use_unassign_template()
    env.write_jsonl("events.jsonl", EVENTS)
    (env.reference / "users.csv").write_text(
        "user_id,name,email,team_id,role\nu1,Ann Lee,ann@example.com,t1,agent\nu2,Bob Stone,bob@example.com,t2,agent\n")
    (env.reference / "teams.csv").write_text("team_id,name\nt1,Support\nt2,Sales team\n")
    (env.reference / "categories.csv").write_text("name,description\nBilling,Money\nSales,Deals\nTechnical,Bugs\n")
    env.run(timezone=NY)
    return Warehouse(env.warehouse_path)


def ids(wh: Warehouse, f: Filters, **kw) -> list[str]:
    """The contacts of the listed conversations, in list order (contacts name the table rows above)."""
    frame = cv.list_conversations(wh, f, TODAY, limit=100, **kw)
    return [f"{c}@{d:%H:%M}" for c, d in zip(frame["contact_id"], frame["closed_at"].dt.convert_time_zone("UTC"))]


def contacts(wh: Warehouse, params: dict) -> list[str]:
    f, _ = parse_query_params(params)
    frame = cv.list_conversations(wh, f, TODAY, limit=100)
    assert cv.count_conversations(wh, f, TODAY) == frame.height
    return sorted(frame["contact_id"].to_list())


# --- the warehouse ---------------------------------------------------------------------------

def test_reference_tables_are_published(wh):
    assert {"users", "teams", "categories"} <= wh.tables
    assert wh.query("SELECT user_id, name FROM users ORDER BY 1").rows() == [("u1", "Ann Lee"), ("u2", "Bob Stone")]
    assert wh.scalar("SELECT count(*) FROM categories") == 3


def test_timezone_data_as_of_and_override(wh):
    assert wh.timezone == NY and not wh.is_empty()
    assert isinstance(wh.data_as_of, datetime)
    assert Warehouse(wh.path, timezone_override="Europe/Berlin").timezone == "Europe/Berlin"
    with pytest.raises(ValueError, match="IANA"):
        Warehouse(wh.path, timezone_override="Mars/Olympus")
    assert wh.closed_day_range() == (date(2026, 3, 7), date(2026, 3, 9))


# --- filters ---------------------------------------------------------------------------------

def test_a12_local_close_days_across_the_dst_change(wh):
    assert contacts(wh, {"from": "2026-03-07", "to": "2026-03-07"}) == ["c1", "c5"]  # X (04:30Z) and V
    assert contacts(wh, {"from": "2026-03-08", "to": "2026-03-08"}) == ["c1", "c2", "c3"]  # R, Y (03:30Z next day), Z
    assert contacts(wh, {"from": "2026-03-09", "to": "2026-03-09"}) == ["c4"]


def test_presets_in_the_workspace_timezone(wh):
    f = Filters(preset="today")
    assert cv.count_conversations(wh, f, date(2026, 3, 8)) == 3
    assert cv.count_conversations(wh, Filters(preset="yesterday"), date(2026, 3, 8)) == 2
    assert cv.count_conversations(wh, Filters(preset="last_7_days"), TODAY) == 6
    assert cv.count_conversations(wh, Filters(preset="last_month"), TODAY) == 0
    assert cv.count_conversations(wh, Filters(preset="this_month"), TODAY) == 6
    # from/to win over the preset
    f, _ = parse_query_params({"preset": "today", "from": "2026-03-09", "to": "2026-03-09"})
    assert cv.count_conversations(wh, f, date(2026, 3, 7)) == 1


def test_only_closed_conversations_are_listed(wh):
    assert cv.count_conversations(wh, Filters(), TODAY) == 6
    assert "c6" not in contacts(wh, {})


@pytest.mark.parametrize("params,expected", [
    ({"category": "billing"}, ["c1"]),
    ({"category": ["SALES", "Technical"]}, ["c2", "c3"]),
    ({"closed_by_source": "user"}, ["c1", "c1", "c2", "c3"]),
    ({"closed_by_source": ["bot", "auto_close"]}, ["c4", "c5"]),
    ({"closed_by_user": "u2"}, ["c2"]),
    ({"team": "t1"}, ["c1", "c1", "c3"]),
    ({"assignee": "u2"}, ["c2", "c5"]),
    ({"channel": "ch2"}, ["c4", "c5"]),
    ({"opened_source": "user"}, ["c3"]),
    ({"opened_source": "contact", "channel": "ch1"}, ["c1", "c1", "c2"]),
    ({"q": "c1"}, ["c1", "c1"]),
    ({"frt_bucket": "30s-2m"}, ["c1"]),
    ({"frt_bucket": ["10-30m", ">1h"]}, ["c3", "c5"]),
    ({"category": "Billing", "from": "2026-03-08", "to": "2026-03-08"}, []),
])
def test_each_filter(wh, params, expected):
    assert contacts(wh, params) == expected


def test_q_matches_a_conversation_id_exactly(wh):
    one = cv.list_conversations(wh, Filters(category=("Technical",)), TODAY)["conversation_id"][0]
    assert contacts(wh, {"q": one}) == ["c3"]
    assert contacts(wh, {"q": one[:-1]}) == []


@pytest.mark.parametrize("value", [
    "' OR 1=1 --", "%", "_", "Billing%", "'); DROP TABLE conversations; --", "x" * 3000, "\\", "\"", "*",
    "a\x00b", "\udcff", "\u202e", "😀",
])
def test_hostile_values_match_nothing(wh, value):
    for name in ("category", "closed_by_source", "closed_by_user", "team", "assignee", "channel", "opened_source",
                 "q", "frt_bucket"):
        f, _ = parse_query_params({name: value})
        assert cv.count_conversations(wh, f, TODAY) == 0, name
        assert cv.list_conversations(wh, f, TODAY).height == 0
        assert kp.kpis(wh, f, TODAY)[0].value == 0
    assert wh.scalar("SELECT count(*) FROM conversations") == 7  # nothing was dropped


# --- the list --------------------------------------------------------------------------------

def test_list_columns_names_and_local_times(wh):
    frame = cv.list_conversations(wh, Filters(category=("billing",)), TODAY)
    row = frame.row(0, named=True)
    assert row["closed_by_user_name"] == "Ann Lee" and row["closed_by_team_name"] == "Support"
    assert row["first_response_by_user_name"] == "Ann Lee"
    assert row["category"] == "Billing" and row["summary"] == "refund issued"
    assert row["first_response_time_s"] == 60 and row["resolution_time_s"] == 1800 and row["frt_bucket"] == "30s–2m"
    assert str(frame.schema["closed_at"].time_zone) == NY
    assert row["closed_at"].isoformat() == "2026-03-07T23:30:00-05:00"
    redacted = cv.list_conversations(wh, Filters(category=("billing",)), TODAY, redact_summaries=True)
    assert redacted["summary"].to_list() == [None]


def test_sorting_and_pagination(wh):
    assert ids(wh, Filters()) == ["c4@15:00", "c2@03:30", "c3@16:00", "c1@05:01", "c1@04:30",
                                  "c5@12:00"]
    assert ids(wh, Filters(), descending=False)[0] == "c5@12:00"
    # FRT ascending: 60, 120, 600, 3600, then the unanswered ones (nulls last, tie broken by id)
    by_frt = cv.list_conversations(wh, Filters(), TODAY, sort="first_response_time_s", descending=False, limit=100)
    assert by_frt["first_response_time_s"].to_list()[:4] == [60, 120, 600, 3600]
    assert by_frt["first_response_time_s"].to_list()[4:] == [None, None]
    by_frt_desc = cv.list_conversations(wh, Filters(), TODAY, sort="first_response_time_s", limit=100)
    assert by_frt_desc["first_response_time_s"].to_list()[:4] == [3600, 600, 120, 60]
    by_res = cv.list_conversations(wh, Filters(), TODAY, sort="resolution_time_s", limit=100)
    assert by_res["resolution_time_s"].to_list() == sorted(by_res["resolution_time_s"].to_list(), reverse=True)
    pages = [cv.list_conversations(wh, Filters(), TODAY, sort="first_response_time_s", limit=2, offset=o)
             for o in (0, 2, 4, 6)]
    assert [p.height for p in pages] == [2, 2, 2, 0]
    assert pl.concat(pages)["conversation_id"].to_list() == by_frt_desc["conversation_id"].to_list()
    with pytest.raises(ValueError):
        cv.list_conversations(wh, Filters(), TODAY, sort="summary; DROP TABLE x")


def test_csv_export_writes_every_match(wh, tmp_path):
    dest = tmp_path / "out" / "conversations.csv"
    assert cv.export_conversations_csv(wh, Filters(closed_by_source=("user",)), TODAY, dest) == 4
    with open(dest, newline="") as fh:
        header = next(csv.reader(fh))
        fh.seek(0)
        rows = list(csv.DictReader(fh))
    assert len(rows) == 4
    assert len(header) == len(set(header)) and header[0] == "conversation_id", header  # each column once
    billing = next(r for r in rows if r["category"] == "Billing")
    assert billing["closed_at_local"] == "2026-03-07 23:30:00" and billing["timezone"] == NY
    assert billing["summary"] == "refund issued" and float(billing["first_response_time_s"]) == 60
    assert billing["closed_by_user_name"] == "Ann Lee"
    assert cv.export_conversations_csv(wh, Filters(), TODAY, tmp_path / "all.csv", redact_summaries=True) == 6
    with open(tmp_path / "all.csv", newline="") as fh:
        assert {r["summary"] for r in csv.DictReader(fh)} == {""}


# --- drill-down ------------------------------------------------------------------------------

def _conversation(wh, **filters) -> str:
    return cv.list_conversations(wh, Filters(**filters), TODAY)["conversation_id"][0]


def test_detail_timeline_workflow_runs_and_frt_explanation(wh):
    detail = cv.conversation_detail(wh, _conversation(wh, category=("Billing",)))
    assert detail.header["contact_id"] == "c1" and detail.header["closed_by_user_name"] == "Ann Lee"
    kinds = detail.timeline["kind"].to_list()
    assert kinds == ["message.received", "message.sent", "conversation.closed"]
    close = detail.timeline.row(2, named=True)
    assert close["category"] == "Billing" and close["summary"] == "refund issued" and close["user_name"] == "Ann Lee"
    assert detail.workflow_runs["outcome"].to_list() == ["skipped"]  # c1 had no assignee
    assert detail.workflow_runs["skip_reason"].to_list() == ["contact has no assignee"]
    frt = detail.frt
    assert frt.start_at == detail.header["opened_at"] and frt.start_event_id == detail.timeline["event_id"][0]
    assert frt.stop_event_id == detail.timeline["event_id"][1] and frt.stop_user == "Ann Lee"
    assert "opened the conversation" in frt.text and "1m 00s" in frt.text


def test_frt_explanation_when_an_agent_opened_it(wh):
    detail = cv.conversation_detail(wh, _conversation(wh, opened_source=("user",)))
    frt = detail.frt
    received = detail.timeline.filter(pl.col("kind") == "message.received")
    assert frt.start_event_id == received["event_id"][0]
    assert frt.start_at == received["occurred_at"][0]
    assert "first message after the open" in frt.start_reason and "10m 00s" in frt.text


def test_frt_explanation_without_a_human_reply(wh):
    detail = cv.conversation_detail(wh, _conversation(wh, closed_by_source=("auto_close",)))
    assert detail.frt.stop_at is None and detail.frt.stop_event_id is None
    assert "No human agent replied" in detail.frt.text and "1 automated message" in detail.frt.text


def test_detail_of_a_closed_by_user_conversation_shows_the_unassignment(wh):
    detail = cv.conversation_detail(wh, _conversation(wh, closed_by_user=("u2",)))
    assert detail.workflow_runs["outcome"].to_list() == ["completed"]
    actions = detail.workflow_actions
    assert actions["action"].to_list() == ["unassign"] and actions["from_assignee_name"].to_list() == ["Bob Stone"]
    timeline = detail.timeline
    assert timeline["kind"].to_list() == ["message.received", "contact.assignee.updated", "message.sent",
                                          "conversation.closed", "assignment by workflow"]
    assert timeline["assignee_name"][1] == "Bob Stone" and timeline["assignee_id"][4] is None
    assert timeline["workflow_id"][4] == "unassign-after-close"
    assert cv.conversation_detail(wh, "no-such-id") is None
    assert cv.conversation_detail(wh, "' OR 1=1 --") is None


def test_filter_options(wh):
    options = cv.filter_options(wh)
    assert set(options) == {"category", "closed_by_source", "closed_by_user", "team", "assignee", "channel",
                            "opened_source"}
    assert [v for v, _ in options["category"]] == ["Billing", "Sales", "Technical"]  # "sales" is the configured Sales
    assert options["closed_by_user"] == [("u1", "Ann Lee"), ("u2", "Bob Stone")]
    assert options["team"] == [("t2", "Sales team"), ("t1", "Support")]
    assert ("auto_close", "Auto-close") in options["closed_by_source"]
    assert options["channel"] == [("ch1", "ch1"), ("ch2", "ch2")]
    assert {v for v, _ in options["opened_source"]} == {"contact", "user"}


# --- KPIs and charts -------------------------------------------------------------------------

def kpi_values(wh, f, today=TODAY):
    return {k.key: (k.value, k.previous) for k in kp.kpis(wh, f, today)}


def test_kpis_all_time(wh):
    got = kpi_values(wh, Filters())
    assert got["closed"] == (6, None) and got["opened"] == (7, None)
    assert got["frt_avg_s"] == (1095, None) and got["frt_median_s"] == (360, None)
    assert got["answered_pct"][0] == pytest.approx(100 * 4 / 6)
    assert got["reopened_within_24h"] == (1, None)
    assert got["frt_p90_s"][0] == pytest.approx(600 + 0.7 * (3600 - 600))  # quantile_cont over 60, 120, 600, 3600
    assert got["resolution_median_s"][0] == 3600  # 60, 1800, 3600, 3600, 5400, 7140


def test_kpis_with_the_previous_period(wh):
    got = kpi_values(wh, Filters(date_from=date(2026, 3, 8), date_to=date(2026, 3, 8)))
    assert got["closed"] == (3, 2)  # 03-08: R, Z, Y; 03-07: V, X
    assert got["opened"] == (3, 2)  # by open day: R, Z, Y (02:00Z = 03-08 local) / V, X
    assert got["frt_avg_s"] == (360, (3600 + 60) / 2)
    assert got["reopened_within_24h"] == (1, 0)


def test_empty_aggregates_are_none_not_zero(wh):
    got = kpi_values(wh, Filters(closed_by_source=("auto_close",)))  # A3: only an unanswered conversation
    assert got["closed"][0] == 1 and got["frt_avg_s"][0] is None and got["frt_median_s"][0] is None
    assert got["answered_pct"][0] == 0
    nothing = kpi_values(wh, Filters(preset="last_month"))
    assert nothing["closed"] == (0, 0) and nothing["opened"] == (0, 0)
    for key in ("frt_avg_s", "frt_median_s", "frt_p90_s", "resolution_avg_s", "resolution_median_s",
                "resolution_p90_s", "answered_pct"):
        assert nothing[key] == (None, None), key
    kinds = {k.key: k.kind for k in kp.kpis(wh, Filters(), TODAY)}
    assert kinds["closed"] == "count" and kinds["frt_avg_s"] == "duration" and kinds["answered_pct"] == "percent"


def test_opened_vs_closed_per_day(wh):
    frame = charts.opened_vs_closed_per_day(wh, Filters(date_from=date(2026, 3, 6), date_to=date(2026, 3, 9)), TODAY)
    assert frame.rows() == [(date(2026, 3, 6), 0, 0), (date(2026, 3, 7), 2, 2), (date(2026, 3, 8), 3, 3),
                            (date(2026, 3, 9), 2, 1)]
    all_time = charts.opened_vs_closed_per_day(wh, Filters(), TODAY)
    assert all_time["day"].to_list() == [date(2026, 3, 7), date(2026, 3, 8), date(2026, 3, 9)]
    assert charts.opened_vs_closed_per_day(wh, Filters(q="nobody"), TODAY).height == 0


def test_frt_breakdown_has_every_bucket_in_order(wh):
    frame = charts.frt_breakdown(wh, Filters(), TODAY)
    assert frame["bucket"].to_list() == ["<30s", "30s–2m", "2–5m", "5–10m", "10–30m", "30m–1h", ">1h"]
    assert frame["conversations"].to_list() == [0, 1, 1, 0, 1, 0, 1]  # 60, 120, 600, 3600
    assert frame["share"].sum() == pytest.approx(1.0)
    empty = charts.frt_breakdown(wh, Filters(q="nobody"), TODAY)
    assert empty["conversations"].to_list() == [0] * 7 and empty["share"].to_list() == [None] * 7


def test_breakdowns(wh):
    cat = charts.by_category(wh, Filters(), TODAY)
    assert dict(zip(cat["label"], cat["closed"])) == {"(no category)": 3, "Billing": 1, "Technical": 1, "sales": 1}
    channel = charts.by_channel(wh, Filters(), TODAY)
    assert dict(zip(channel["channel_id"], channel["closed"])) == {"ch1": 4, "ch2": 2}
    src = charts.by_closed_by_source(wh, Filters(), TODAY)
    assert dict(zip(src["label"], src["closed"])) == {"User": 4, "Bot": 1, "Auto-close": 1}
    auto = src.filter(pl.col("closed_by_source") == "auto_close").row(0, named=True)
    assert auto["frt_avg_s"] is None and auto["answered_pct"] == 0


@pytest.mark.parametrize("tz", [NY, "Asia/Kathmandu", "Australia/Lord_Howe", "UTC"])
def test_per_day_counts_match_a_direct_conversion_in_odd_timezones(wh, tz):
    local = Warehouse(wh.path, timezone_override=tz)
    frame = charts.opened_vs_closed_per_day(local, Filters(), TODAY).filter((pl.col("opened") > 0) | (pl.col("closed") > 0))
    direct = local.query(
        "SELECT timezone(?, closed_at)::DATE AS day, count(*) AS n FROM conversations WHERE status = 'closed' "
        "GROUP BY 1 ORDER BY 1", [tz])
    assert {d: n for d, n in zip(frame["day"], frame["closed"]) if n} == dict(zip(direct["day"], direct["n"]))


# --- workflows and health --------------------------------------------------------------------

def test_workflow_runs_and_unassignments_per_local_day(wh):
    runs = workflows.runs_per_day(wh)
    assert runs.rows() == [(date(2026, 3, 7), "skipped", 1), (date(2026, 3, 8), "completed", 1),
                           (date(2026, 3, 8), "skipped", 2)]
    assert workflows.unassign_actions_per_day(wh).rows() == [(date(2026, 3, 8), "unassign-after-close", 1)]
    skipped = workflows.skipped_by_reason(wh, examples=2)
    assert skipped["skip_reason"].to_list() == ["contact has no assignee"] and skipped["runs"].to_list() == [3]
    assert len(skipped["example_conversation_ids"][0]) == 2
    day = resolve_period(Filters(date_from=date(2026, 3, 7), date_to=date(2026, 3, 7)), NY, TODAY)
    assert workflows.runs_per_day(wh, day).rows() == [(date(2026, 3, 7), "skipped", 1)]
    assert workflows.drift_count(wh) == workflows.drift_list(wh).height


def test_health(wh):
    run = health.last_run(wh)
    assert run["conversations_closed"] == 6 and run["conversations_open"] == 1 and run["records_rejected"] == 0
    fresh = health.freshness(wh, utc("03-09T17:00:00"))
    assert fresh.newest_event_at == utc("03-09T16:00:00") and fresh.age_s == 3600
    assert health.rejected_by_reason(wh).height == 0 and health.rejected_examples(wh).height == 0
