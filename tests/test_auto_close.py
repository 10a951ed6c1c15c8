"""The optional auto-close rule (issue 9 §6): derived closes for sources that never send one.

Real pipeline runs (Dagster job, DuckDB file) over events without closes, with the rule on.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from click.testing import CliRunner

from closeconv.cli import main
from closeconv.commands.run import _failure_message, run_pipeline
from closeconv.contract import ALLOWED_SOURCES
from conftest import Warehouse, at, closed, recv, sent

# Whatever non-human senders the contract knows (ai_agent arrives with contract v1.1).
NON_HUMAN = [s for s in ("workflow", "broadcast", "bot", "ai_agent") if s in ALLOWED_SOURCES["message.sent"]]


def run_with_auto_close(env, hours: str | None) -> Warehouse:
    result = run_pipeline(env.settings().with_(auto_close_hours=hours), quiet=True)
    assert result.success, _failure_message(result)
    return Warehouse(env.warehouse_path)


def conversations(wh: Warehouse, contact: str) -> list[dict]:
    return wh.rows(
        "SELECT status, opened_at, closed_at, closed_by_source, resolution_time_s, first_response_time_s "
        "FROM conversations WHERE contact_id = ? ORDER BY opened_at", [contact],
    )


def test_closes_after_n_hours_without_a_contact_reply(closeconv_env):
    soon = datetime.now(timezone.utc) - timedelta(minutes=30)
    closeconv_env.write_jsonl("events.jsonl", [
        # the timer starts at the human reply and runs out 2 h later
        recv("09:00", "plain"), sent("09:10", user="u1", contact="plain"),
        # workflow, broadcast and AI messages neither reset the timer nor keep it alive;
        # the contact's next message opens a new conversation
        recv("09:00", "bots"), sent("09:10", user="u1", contact="bots"),
        *[sent(f"{10 + i}:0{i}", source=s, contact="bots") for i, s in enumerate(NON_HUMAN)],
        recv("13:30", "bots"),
        # a contact reply ends the timer; the next human message starts a new one
        recv("09:00", "replied"), sent("09:10", user="u1", contact="replied"),
        recv("10:00", "replied"), sent("10:30", user="u1", contact="replied"),
        sent("15:00", user="u1", contact="replied"),  # after the auto-close: in no conversation
        # no human message: no timer, the conversation stays open
        recv("09:00", "unanswered"), sent("09:05", source="workflow", contact="unanswered"),
        # a real close before the timer runs out wins; so does a late one before the contact's next message
        recv("09:00", "closed"), sent("09:10", user="u1", contact="closed"), closed("10:00", user="u1", contact="closed"),
        recv("09:00", "late"), sent("09:10", user="u1", contact="late"), sent("12:00", source="workflow", contact="late"),
        closed("14:00", user="u2", contact="late"),
        # a timer that has not run out yet closes nothing
        recv((soon - timedelta(minutes=5)).isoformat(), "recent"), sent(soon.isoformat(), user="u1", contact="recent"),
    ])
    wh = run_with_auto_close(closeconv_env, "2")

    [plain] = conversations(wh, "plain")
    assert plain["status"] == "closed" and plain["closed_by_source"] == "auto_close"
    assert plain["closed_at"].isoformat() == at("11:10").replace("Z", "+00:00")
    assert plain["resolution_time_s"] == 2 * 3600 + 600
    assert plain["first_response_time_s"] == 600

    first, second = conversations(wh, "bots")
    assert (first["closed_by_source"], first["resolution_time_s"]) == ("auto_close", 2 * 3600 + 600)
    assert second["status"] == "open" and second["opened_at"].isoformat() == at("13:30").replace("Z", "+00:00")

    [replied] = conversations(wh, "replied")
    assert replied["closed_by_source"] == "auto_close"
    assert replied["closed_at"].isoformat() == at("12:30").replace("Z", "+00:00")
    assert wh.scalar("SELECT conversation_id FROM events WHERE contact_id = 'replied' AND occurred_at = ?",
                     [at("15:00")]) is None

    assert [c["status"] for c in conversations(wh, "unanswered")] == ["open"]
    [real] = conversations(wh, "closed")
    assert real["closed_by_source"] == "user" and real["resolution_time_s"] == 3600
    [late] = conversations(wh, "late")
    assert late["closed_by_source"] == "user" and late["resolution_time_s"] == 5 * 3600
    assert [c["status"] for c in conversations(wh, "recent")] == ["open"]

    # Derived closes are marked: source auto_close, an event_id prefix and no source file.
    derived = wh.rows("SELECT event_id, source, source_file FROM events WHERE source = 'auto_close' ORDER BY event_id")
    assert len(derived) == 3
    assert all(d["event_id"].startswith("auto_close:") and d["source_file"] is None for d in derived)
    assert wh.scalar("SELECT count(*) FROM rejected_events") == 0
    run = wh.rows("SELECT records_read, events_loaded FROM pipeline_runs")[0]
    assert run["events_loaded"] == run["records_read"] + 3


def test_off_by_default_and_deterministic(closeconv_env, monkeypatch):
    closeconv_env.write_jsonl("events.jsonl", [recv("09:00", "a"), sent("09:10", user="u1", contact="a")])
    # settings that say "off" win over a variable left in the shell
    monkeypatch.setenv("CLOSECONV_AUTO_CLOSE_HOURS", "1")
    wh = run_with_auto_close(closeconv_env, None)
    assert [c["status"] for c in conversations(wh, "a")] == ["open"]
    ids = []
    for _ in range(2):
        wh = run_with_auto_close(closeconv_env, "1.5")
        ids.append(wh.rows("SELECT conversation_id, closed_at FROM conversations"))
    assert ids[0] == ids[1] and ids[0][0]["closed_at"].isoformat() == at("10:40").replace("Z", "+00:00")


def test_cli_flag_and_env_and_a_bad_value(closeconv_env, monkeypatch):
    monkeypatch.delenv("CLOSECONV_AUTO_CLOSE_HOURS", raising=False)
    closeconv_env.write_jsonl("events.jsonl", [recv("09:00", "a"), sent("09:10", user="u1", contact="a")])
    args = ["run", "--quiet", "--landing", str(closeconv_env.landing), "--warehouse", str(closeconv_env.warehouse_path),
            "--workflows", str(closeconv_env.workflows), "--reference", str(closeconv_env.reference)]
    closeconv_env.workflows.mkdir(exist_ok=True)
    runner = CliRunner()
    result = runner.invoke(main, [*args, "--auto-close-hours", "1"])
    assert result.exit_code == 0, result.output
    assert Warehouse(closeconv_env.warehouse_path).scalar("SELECT closed_by_source FROM conversations") == "auto_close"

    result = runner.invoke(main, args, env={"CLOSECONV_AUTO_CLOSE_HOURS": "soon"})
    assert result.exit_code == 2
    assert "CLOSECONV_AUTO_CLOSE_HOURS" in result.output and "positive number of hours" in result.output
    result = runner.invoke(main, [*args, "--auto-close-hours", "0"])
    assert result.exit_code == 2 and "--auto-close-hours" in result.output
