"""`closeconv intake map`: exports → contract files by a declared mapping (issue 9 §6).

Small synthetic files shaped like the two public logs (docs/intake-sources.md), converted with
the mappings shipped in docs/mappings/, then run through the real pipeline.
"""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from closeconv.cli import main
from closeconv.commands.run import _failure_message, run_pipeline
from conftest import REPO, Warehouse

HELPDESK_MAPPING = REPO / "docs" / "mappings" / "helpdesk-italian.yaml"
TWITTER_MAPPING = REPO / "docs" / "mappings" / "twitter-customer-support.yaml"

HELPDESK_HEADER = ("Case ID,Activity,Resource,Complete Timestamp,Variant,Variant index,Variant,seriousness,customer,"
                   "product,responsible_section,seriousness_2,service_level,service_type,support_section,workgroup")


def helpdesk_row(case, activity, resource, ts, customer="Value 1"):
    return f"{case},{activity},{resource},{ts},Variant 1,1,Variant 1,Value 1,{customer},Value 1,Value 1,Value 1,Value 1,Value 1,Value 1,Value 1"


def write(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def map_cli(*args) -> "click.testing.Result":
    return CliRunner().invoke(main, ["intake", "map", *map(str, args)])


def test_helpdesk_log_becomes_one_conversation_per_ticket(closeconv_env, tmp_path):
    export = write(tmp_path / "finale.csv", [
        HELPDESK_HEADER,
        helpdesk_row("Case 1", "Assign seriousness", "Value 1", "2012/10/09 14:50:17.000"),   # line 2, CEST
        helpdesk_row("Case 1", "Take in charge ticket", "Value 2", "2012/10/09 14:51:01.000"),
        helpdesk_row("Case 1", "Wait", "Value 2", "2012/10/10 09:00:00.000"),                 # skipped
        helpdesk_row("Case 1", "Resolve ticket", "Value 2", "2012/10/09 16:50:17.000"),
        helpdesk_row("Case 1", "Closed", "Value 2", "2012/10/12 15:02:56.000"),
        # the same customer's second ticket overlaps the first: it is its own conversation
        helpdesk_row("Case 2", "Insert ticket", "Value 3", "2012/12/01 10:00:00.000"),        # CET
        helpdesk_row("Case 2", "Assign seriousness", "Value 3", "2012/10/10 10:00:00.000"),
        helpdesk_row("Case 2", "Closed", "Value 3", "2012/12/03 10:00:00.000"),
        helpdesk_row("Case 3", "Teleport ticket", "Value 4", "2012/10/10 10:00:00.000"),      # line 10: not mapped
        helpdesk_row("Case 3", "Closed", "Value 4", "13/10/2012 10:00"),                      # line 11: bad time
        "Case 4,Closed,Value 4",                                                              # line 12: short row
    ])
    out = closeconv_env.landing
    result = map_cli("--config", HELPDESK_MAPPING, export, "--out", out)
    assert result.exit_code == 0, result.output
    assert "11 rows → 7 events" in result.output

    events = read_jsonl(out / "finale.jsonl")
    assert len(events) == 7
    first = events[0]
    # naive local times in the declared zone, DST-correct: +02:00 in October, +01:00 in December
    assert (first["occurred_at"], first["event_type"], first["source"]) == ("2012-10-09T12:50:17.000000Z", "message.received", "contact")
    assert events[4]["occurred_at"] == "2012-12-01T09:00:00.000000Z"
    assert first["contact_id"] == "Value 1 / Case 1" and first["event_id"].startswith("helpdesk:")
    assign = events[1]
    assert (assign["event_type"], assign["assignee_id"], assign["user_id"]) == ("contact.assignee.updated", "Value 2", "Value 2")

    rejects = {r["line"]: r for r in read_jsonl(tmp_path / "landing-rejects" / "finale.rejects.jsonl")}
    assert sorted(rejects) == [4, 10, 11, 12]
    assert rejects[4]["reason_code"] == "skipped" and "Wait" in rejects[4]["reason"]
    assert rejects[10]["reason_code"] == "unmapped_value" and "'Teleport ticket'" in rejects[10]["reason"]
    assert "fields.event_type.values" in rejects[10]["reason"]
    assert rejects[11]["reason_code"] == "invalid_timestamp" and "timestamps.format" in rejects[11]["reason"]
    assert rejects[12]["reason_code"] == "malformed_row" and rejects[12]["raw_record"].startswith("Case 4")

    # Deterministic: mapping again gives the same file.
    before = (out / "finale.jsonl").read_text()
    assert map_cli("--config", HELPDESK_MAPPING, export, "--out", out).exit_code == 0
    assert (out / "finale.jsonl").read_text() == before

    result = run_pipeline(closeconv_env.settings(), quiet=True)
    assert result.success, _failure_message(result)
    wh = Warehouse(closeconv_env.warehouse_path)
    convs = wh.rows("SELECT contact_id, status, opened_by_source, first_response_time_s, resolution_time_s, "
                    "closed_by_user_id, first_assignee_id FROM conversations ORDER BY contact_id")
    assert [c["contact_id"] for c in convs] == ["Value 1 / Case 1", "Value 1 / Case 2"]
    case1, case2 = convs
    assert case1["status"] == "closed" and case1["opened_by_source"] == "contact"
    assert case1["first_response_time_s"] == 2 * 3600 and case1["closed_by_user_id"] == "Value 2"
    assert case1["first_assignee_id"] == "Value 2"
    assert case2["status"] == "closed" and case2["resolution_time_s"] == (53 * 24 + 24) * 3600 + 3600


TWITTER_HEADER = "tweet_id,author_id,inbound,created_at,text,response_tweet_id,in_response_to_tweet_id"


def test_twitter_log_with_auto_close(closeconv_env, tmp_path):
    export = write(tmp_path / "twcs.csv", [
        TWITTER_HEADER,
        '2,BrandSupport,False,Wed Oct 11 07:05:44 +0000 2017,"@115 Sorry to hear that, DM us",,1',
        '1,115,True,Wed Oct 11 06:55:44 +0000 2017,@BrandSupport my phone is broken,2,',
        '3,115,True,Thu Oct 12 12:00:00 +0000 2017,@BrandSupport still broken,,',
        '4,BrandSupport,False,Wed Oct 11 08:00:00 +0000 2017,Announcing our new phone https://t.co/x,,',  # no addressee
        '5,116,True,Wed Oct 11 09:00:00 +0000 2017,@BrandSupport hello?,,',
    ])
    result = map_cli("--config", TWITTER_MAPPING, export, "--out", closeconv_env.landing)
    assert result.exit_code == 0, result.output
    events = {e["event_id"]: e for e in read_jsonl(closeconv_env.landing / "twcs.jsonl")}
    assert sorted(events) == ["1", "2", "3", "5"]
    assert events["2"] == {"event_id": "2", "event_type": "message.sent", "occurred_at": "2017-10-11T07:05:44.000000Z",
                                "contact_id": "115", "channel_id": "twitter", "source": "user",
                                "user_id": "BrandSupport", "team_id": "BrandSupport"}
    assert events["1"]["source"] == "contact" and events["1"]["user_id"] is None
    [reject] = read_jsonl(tmp_path / "landing-rejects" / "twcs.rejects.jsonl")
    assert reject["line"] == 5 and reject["reason_code"] == "pattern_no_match"

    result = run_pipeline(closeconv_env.settings().with_(auto_close_hours="24"), quiet=True)
    assert result.success, _failure_message(result)
    wh = Warehouse(closeconv_env.warehouse_path)
    convs = wh.rows("SELECT contact_id, status, closed_by_source, first_response_time_s, resolution_time_s "
                    "FROM conversations ORDER BY contact_id, opened_at")
    assert [(c["contact_id"], c["status"], c["closed_by_source"]) for c in convs] == [
        ("115", "closed", "auto_close"), ("115", "open", None), ("116", "open", None)]
    assert convs[0]["first_response_time_s"] == 600 and convs[0]["resolution_time_s"] == 600 + 24 * 3600


def test_jsonl_export_composite_key_constants_and_derived_ids(tmp_path):
    mapping = write(tmp_path / "m.yaml", [
        "fields:",
        "  contact_id: {columns: [account, ticket]}",
        # the first rule whose `when` holds is the one used (and the only one checked)
        "  event_type: [{when: {kind: done}, value: conversation.closed}, {column: kind, values: {in: message.received, out: message.sent}}]",
        "  occurred_at: at",
        "  source: [{when: {kind: in}, value: contact}, {value: user}]",
        "  user_id: {column: agent}",
        "  channel_id: {value: email}",
        "timestamps: {epoch: seconds}",
        "event_id_prefix: 'mail:'",
    ])
    export = write(tmp_path / "mail.jsonl", [
        json.dumps({"account": 7, "ticket": "T1", "kind": "in", "at": 1700000000}),
        json.dumps({"account": 7, "ticket": "T1", "kind": "out", "at": "2023-11-14T22:15:00+01:00", "agent": "ann"}),
        "not json",
        json.dumps({"account": 7, "kind": "done", "at": 1700003600, "agent": "ann"}),   # no ticket: no contact
        json.dumps({"account": 7, "ticket": "T1", "kind": "out", "at": "2023-11-14 22:20:00", "agent": "ann"}),
    ])
    result = map_cli("--config", mapping, export, "--out", tmp_path / "landing", "--rejects", tmp_path / "rej")
    assert result.exit_code == 0, result.output
    events = read_jsonl(tmp_path / "landing" / "mail.jsonl")
    assert [(e["contact_id"], e["occurred_at"], e["source"], e["channel_id"]) for e in events] == [
        ("7:T1", "2023-11-14T22:13:20.000000Z", "contact", "email"),
        ("7:T1", "2023-11-14T21:15:00.000000Z", "user", "email"),
    ]
    assert all(e["event_id"].startswith("mail:") and len(e["event_id"]) == 5 + 32 for e in events)
    rejects = {r["line"]: r for r in read_jsonl(tmp_path / "rej" / "mail.rejects.jsonl")}
    assert rejects[3]["reason_code"] == "invalid_json"
    assert rejects[4]["reason_code"] == "missing_value" and "contact_id" in rejects[4]["reason"]
    # an ISO time without an offset and no declared zone: rejected, naming the setting
    assert rejects[5]["reason_code"] == "naive_timestamp" and "timestamps.timezone" in rejects[5]["reason"]
    assert "4 rows" not in result.output and "5 rows → 2 events" in result.output


def test_configuration_errors_exit_2_before_any_work(tmp_path):
    export = write(tmp_path / "x.csv", ["a,b,when", "1,2,2026/01/01 10:00:00"])
    out = tmp_path / "out"

    def fails(lines: list[str], *needles: str) -> None:
        mapping = write(tmp_path / "m.yaml", lines)
        result = map_cli("--config", mapping, export, "--out", out)
        assert result.exit_code == 2, result.output
        assert "configuration error" in result.output and str(mapping) in result.output
        for needle in needles:
            assert needle in result.output, result.output
        assert not out.exists()

    base = ["fields:", "  contact_id: a", "  event_type: {value: message.received}", "  occurred_at: when"]
    # a naive format with no zone declared: the setting is named, never guessed
    fails([*base, "timestamps: {format: '%Y/%m/%d %H:%M:%S'}"], "timestamps", "timezone")
    fails([*base, "timestamps: {format: '%Y/%m/%d %H:%M:%S', timezone: Mars/Olympus}"], "unknown timezone")
    fails([*base, "  customer: b"], "customer is not a contract field")
    fails(["fields:", "  contact_id: a", "  occurred_at: when"], "event_type")
    fails([*base, "  user_id: {column: b, value: x}"], "exactly one of column, columns or value")
    fails([*base, "  user_id: Agent", "timestamps: {format: '%Y/%m/%d %H:%M:%S', timezone: UTC}"], "'Agent'", "no row")
    fails(["fields: [", "oops"], "not valid YAML")
    result = map_cli("--config", tmp_path / "absent.yaml", export, "--out", out)
    assert result.exit_code == 2 and "does not exist" in result.output
