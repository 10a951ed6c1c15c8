"""`closeconv intake backfill` against a local fake of respond.io's API v2 (issue 9 §5).

The fake is a real HTTP server on 127.0.0.1 that pages, throttles (429 + Retry-After) and
fails (500s, an outage) on purpose. Sleeps are injected, so waits are recorded, not slept.
"""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import pytest
from click.testing import CliRunner

from closeconv.cli import main
from closeconv.commands.run import _failure_message, run_pipeline
from closeconv.intake import backfill as backfill_module
from closeconv.intake.backfill import BackfillError, run_backfill
from closeconv.intake.respondio_api import RetryPolicy
from conftest import REPO, Warehouse
from fake_respondio_api import TOKEN, FakeRespondioApi, Faults, expected_event_ids, sample_workspace

SINCE = datetime(2026, 1, 1, tzinfo=timezone.utc)
SINCE_MS = int(SINCE.timestamp() * 1000)


def written_events(landing: Path) -> list[dict]:
    events = []
    for path in sorted((landing / "respondio-backfill").glob("*.jsonl")):
        events += [json.loads(line) for line in path.read_text().splitlines()]
    return events


def backfill(api, root: Path, sleeps: list[float] | None = None, **kw):
    sleeps = [] if sleeps is None else sleeps
    return run_backfill(
        base_url=api.base_url, token=TOKEN, since=SINCE, reference_dir=root / "reference",
        landing_dir=root / "landing", state_path=root / "landing" / ".state.json", progress=False,
        retry=RetryPolicy(attempts=kw.pop("attempts", 6), backoff_s=0.01, sleep=sleeps.append), **kw,
    )


def test_full_backfill_over_a_flaky_paginating_api(tmp_path):
    ws = sample_workspace()
    sleeps: list[float] = []
    faults = Faults(throttle_every=5, retry_after="1", fail_every=7, max_page=2)
    with FakeRespondioApi(ws, faults, prefix="/white-label/api/v2") as api:
        summary = backfill(api, tmp_path, sleeps, batch_events=10)
        statuses = api.statuses()
    assert 429 in statuses and 500 in statuses
    # Retry-After is honoured; 5xx backs off exponentially from backoff_s
    assert sleeps.count(1.0) == statuses.count(429)
    assert summary.throttled == statuses.count(429) and summary.retried == statuses.count(500)

    events = written_events(tmp_path / "landing")
    ids = [e["event_id"] for e in events]
    assert len(ids) == len(set(ids)) and set(ids) == expected_event_ids(ws, SINCE_MS)
    assert summary.state.before_since == 7 and summary.state.untimed == 1 and summary.state.complete
    by_id = {e["event_id"]: e for e in events}
    # contact 900: message 1 a human reply, 3 a workflow's, 5 timed by its status only, 6 in seconds
    human, workflow = by_id["respondio:message:5000002"], by_id["respondio:message:5000004"]
    assert human == {"event_id": "respondio:message:5000002", "event_type": "message.sent",
                     "occurred_at": "2026-01-01T00:01:00.000Z", "contact_id": "900", "channel_id": "1",
                     "source": "user", "user_id": "101", "team_id": "7"}
    assert (workflow["source"], workflow["user_id"]) == ("workflow", None)
    assert by_id["respondio:message:5000006"]["occurred_at"] == "2026-01-01T00:05:00.000Z"
    assert by_id["respondio:message:5000007"]["occurred_at"] == "2026-01-01T00:06:00.000Z"
    assert by_id["respondio:message:5000003"]["event_type"] == "message.received"
    # an outgoing message without a sender is not claimed as a human reply
    no_sender = by_id["respondio:message:5000017"]  # contact 901, message 7
    assert (no_sender["event_type"], no_sender["source"]) == ("message.sent", "api")
    # files appear whole: no hidden leftovers beside them
    assert not [p for p in (tmp_path / "landing" / "respondio-backfill").iterdir() if p.name.startswith(".")]

    ref = tmp_path / "reference"
    users = list(csv.DictReader(open(ref / "users.csv")))
    assert users[0] == {"user_id": "101", "name": "Ann Agent", "email": "ann@example.com", "team_id": "7", "role": "agent"}
    assert users[1]["user_id"] == "102" and users[1]["team_id"] == ""
    assert list(csv.DictReader(open(ref / "teams.csv"))) == [{"team_id": "7", "name": "Support"}, {"team_id": "8", "name": "Sales, EMEA"}]
    assert [c["name"] for c in csv.DictReader(open(ref / "categories.csv"))] == ["Resolved", "Spam"]
    assert [c["channel_id"] for c in csv.DictReader(open(ref / "channels.csv"))] == ["1", "2"]


def test_interrupted_run_resumes_to_exactly_the_full_set(tmp_path):
    ws = sample_workspace(contacts=9)
    faults = Faults(max_page=2, down_after=25)
    with FakeRespondioApi(ws, faults) as api:
        with pytest.raises(BackfillError, match="still failing"):
            backfill(api, tmp_path, batch_events=4, attempts=3)
        state = json.loads((tmp_path / "landing" / ".state.json").read_text())
        assert not state["complete"] and state["next_file"] > 1
        partial = written_events(tmp_path / "landing")
        assert 0 < len(partial) < len(expected_event_ids(ws, SINCE_MS))

        faults.down_after = None  # the outage is over
        requests_before = len(api.requests)
        summary = backfill(api, tmp_path, batch_events=4)
        # it continued: the reference data and the finished contacts were not fetched again
        resumed = [path for _, path, _ in api.requests[requests_before:]]
        assert not any("/space/" in p for p in resumed)
        assert summary.state.complete
        ids = [e["event_id"] for e in written_events(tmp_path / "landing")]
        assert len(ids) == len(set(ids)) == len(expected_event_ids(ws, SINCE_MS))
        assert set(ids) == expected_event_ids(ws, SINCE_MS)

        requests_before = len(api.requests)
        again = backfill(api, tmp_path)
        assert again.already_complete and len(api.requests) == requests_before


@pytest.mark.parametrize("crash_at_save", range(2, 9))
def test_crash_between_a_file_and_its_checkpoint_writes_no_duplicate(tmp_path, monkeypatch, crash_at_save):
    """Save 1 is the reference data; every later save follows a messages file already renamed
    into place. Crashing at each in turn covers files that end mid-contact and at a contact's end."""
    ws = sample_workspace(contacts=5)
    saves = {"n": 0}
    real_save = backfill_module.Checkpoint.save

    def crashing_save(self, path):
        saves["n"] += 1
        if saves["n"] == crash_at_save:
            raise KeyboardInterrupt
        real_save(self, path)

    with FakeRespondioApi(ws, Faults(max_page=3)) as api:
        monkeypatch.setattr(backfill_module.Checkpoint, "save", crashing_save)
        with pytest.raises(KeyboardInterrupt):
            backfill(api, tmp_path, batch_events=5)
        monkeypatch.setattr(backfill_module.Checkpoint, "save", real_save)
        backfill(api, tmp_path, batch_events=5)
    ids = [e["event_id"] for e in written_events(tmp_path / "landing")]
    assert len(ids) == len(set(ids)) and set(ids) == expected_event_ids(ws, SINCE_MS)


def cli_env(tmp_path: Path, token: str | None = TOKEN) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLOSECONV_")}
    if token is not None:
        env["CLOSECONV_RESPONDIO_API_TOKEN"] = token
    return env


def test_cli_backfill_then_pipeline_run(closeconv_env, tmp_path):
    ws = sample_workspace(contacts=3)
    args = ["intake", "backfill", "--since", "2026-01-01", "--landing", str(closeconv_env.landing),
            "--reference", str(closeconv_env.reference), "--no-progress"]
    with FakeRespondioApi(ws, Faults(max_page=4, throttle_every=6, retry_after="0")) as api:
        result = CliRunner().invoke(main, [*args, "--base-url", api.base_url], env=cli_env(tmp_path))
    assert result.exit_code == 0, result.output
    assert "done" in result.output and "cannot give" in result.output.lower()
    assert "opens, closes" in result.output
    assert "rate-limited" in result.output

    result = run_pipeline(closeconv_env.settings(), quiet=True)
    assert result.success, _failure_message(result)
    wh = Warehouse(closeconv_env.warehouse_path)
    assert wh.scalar("SELECT count(*) FROM events") == len(expected_event_ids(ws, SINCE_MS))
    assert wh.scalar("SELECT count(*) FROM rejected_events") == 0
    # message history only: conversations open implicitly and stay open (no closes from the API)
    assert wh.rows("SELECT DISTINCT status FROM conversations") == [{"status": "open"}]
    assert wh.scalar("SELECT count(*) FROM conversations WHERE first_response_by_user_id = '103'") == 3


def test_cli_refuses_without_token_with_a_bad_token_and_with_another_checkpoint(tmp_path):
    args = ["intake", "backfill", "--since", "2026-01-01", "--landing", str(tmp_path / "landing"),
            "--reference", str(tmp_path / "ref"), "--no-progress"]
    runner = CliRunner()
    result = runner.invoke(main, args, env=cli_env(tmp_path, token=None))
    assert result.exit_code == 2 and "CLOSECONV_RESPONDIO_API_TOKEN is not set" in result.output
    with FakeRespondioApi(sample_workspace(contacts=1)) as api:
        result = runner.invoke(main, [*args, "--base-url", api.base_url], env=cli_env(tmp_path, token="wrong-secret"))
        assert result.exit_code == 1 and "token was refused" in result.output
        assert "wrong-secret" not in result.output
        result = runner.invoke(main, [*args, "--base-url", api.base_url], env=cli_env(tmp_path))
        assert result.exit_code == 0, result.output
        result = runner.invoke(main, [*args, "--base-url", api.base_url, "--since", "2025-06-01"], env=cli_env(tmp_path))
        assert result.exit_code == 2 and "--state" in result.output
    result = runner.invoke(main, ["intake", "backfill", "--help"])
    assert "cannot give" in result.output and "CLOSECONV_RESPONDIO_API_TOKEN" in result.output


def test_killed_process_resumes_without_duplicates(tmp_path):
    """SIGKILL in the middle of a run (a real process), then a second run finishes the set."""
    ws = sample_workspace(contacts=30, messages_per_contact=6)
    landing = tmp_path / "landing"
    args = [str(Path(sys.executable).parent / "closeconv"), "intake", "backfill", "--since", "2026-01-01",
            "--landing", str(landing), "--reference", str(tmp_path / "ref"), "--no-progress", "--events-per-file", "7"]
    with FakeRespondioApi(ws, Faults(max_page=2, delay_s=0.01)) as api:
        proc = subprocess.Popen([*args, "--base-url", api.base_url], env=cli_env(tmp_path), cwd=REPO,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and len(list((landing / "respondio-backfill").glob("*.jsonl"))) < 3:
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        assert len(list((landing / "respondio-backfill").glob("*.jsonl"))) >= 3
        api.faults.delay_s = 0.0
        done = subprocess.run([*args, "--base-url", api.base_url], env=cli_env(tmp_path), cwd=REPO,
                              capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    ids = [e["event_id"] for e in written_events(landing)]
    assert len(ids) == len(set(ids)) and set(ids) == expected_event_ids(ws, SINCE_MS)
