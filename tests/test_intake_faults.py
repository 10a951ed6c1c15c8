"""Faults: a receiver killed with SIGKILL mid-load loses no acknowledged event; a landing
folder that cannot be written answers 503 (the platform retries) and says why."""

from __future__ import annotations

import asyncio
import json
import shutil

import httpx

from closeconv.intake.signatures import respondio_signature
from receiver.testing import ReceiverProcess, respondio_conversation, send_load

KEY = "fault-key"
T0 = 1_772_442_000


def test_sigkill_mid_load_loses_no_acknowledged_event(closeconv_env, tmp_path):
    payloads = [p for i in range(600) for p in respondio_conversation(5000 + i, T0 + 30 * i, tag="k")]
    receiver = ReceiverProcess(closeconv_env.landing, tmp_path / "archive", [KEY]).start()
    killed = {}

    def kill_midway(result):
        if len(result.acked) >= 700 and not killed:
            receiver.kill()  # SIGKILL: no shutdown code runs
            killed["at"] = len(result.acked)

    result = asyncio.run(send_load(receiver.url + "/webhooks/respondio", payloads, KEY, concurrency=16,
                                   deadline_s=120, on_ack=kill_midway))
    assert killed, "the load finished before the kill"
    assert 700 <= len(result.acked) < len(payloads)
    assert result.errors  # requests after the kill failed: they were never acknowledged
    # the killed receiver left its files hidden, half-way
    assert list(closeconv_env.landing.glob(".intake-*.jsonl.part"))
    # restart: recovery finishes the leftovers; the rest of the load goes through
    with ReceiverProcess(closeconv_env.landing, tmp_path / "archive", [KEY]) as again:
        rest = [p for p in payloads if p["event_id"] not in set(result.acked)]
        second = asyncio.run(send_load(again.url + "/webhooks/respondio", rest, KEY, concurrency=16, deadline_s=120))
    assert not list(closeconv_env.landing.glob(".*"))
    wh = closeconv_env.run()
    loaded = {r["event_id"] for r in wh.rows("SELECT event_id FROM events")}
    assert set(result.acked) <= loaded, f"{len(set(result.acked) - loaded)} acknowledged events lost"
    assert set(second.acked) <= loaded
    assert loaded == {p["event_id"] for p in payloads}
    assert wh.scalar("SELECT count(*) FROM rejected_events") == 0
    assert wh.scalar("SELECT count(*) FROM conversations WHERE status = 'closed'") == 600


def test_unwritable_landing_answers_503_and_recovers(closeconv_env, tmp_path):
    # rotate after every commit, so each commit opens a new landing file in the folder
    r = ReceiverProcess(closeconv_env.landing, tmp_path / "archive", [KEY], extra_args=["--rotate-mb", "0.000001"])
    payloads = respondio_conversation(6000, T0, tag="u")

    def post(client, payload):
        body = json.dumps(payload).encode()
        return client.post(r.url + "/webhooks/respondio", content=body,
                           headers={"x-webhook-signature": respondio_signature(KEY, body)})

    moved = tmp_path / "landing-before"
    with r, httpx.Client(timeout=10) as client:
        assert post(client, payloads[0]).status_code == 200
        # the landing folder becomes unwritable: its path is now a file
        closeconv_env.landing.rename(moved)
        closeconv_env.landing.write_text("not a folder")
        failed = post(client, payloads[1])
        assert failed.status_code == 503 and failed.headers["retry-after"]
        assert "NotADirectoryError" in failed.json()["reason"] or "Not a directory" in failed.json()["reason"]
        health = client.get(r.url + "/healthz")
        assert health.status_code == 503 and health.json()["status"] == "failing"
        assert 'closeconv_intake_rejected_total{reason="storage_unavailable"} 1' in client.get(r.url + "/metrics").text
        # the platform retries after the disk is fixed: accepted, not taken for a duplicate
        closeconv_env.landing.unlink()
        closeconv_env.landing.mkdir()
        retried = post(client, payloads[1])
        assert retried.status_code == 200 and retried.json()["status"] == "stored"
        assert client.get(r.url + "/healthz").status_code == 200
        for p in payloads[2:]:
            assert post(client, p).status_code == 200
    assert "intake storage unavailable, answering 503" in r.log()
    for f in moved.glob("*.jsonl"):
        shutil.move(str(f), closeconv_env.landing / f.name)
    wh = closeconv_env.run()
    assert {x["event_id"] for x in wh.rows("SELECT event_id FROM events")} == {p["event_id"] for p in payloads}
    # the refused attempt left nothing in the archive: one record per stored delivery
    archived = [json.loads(line) for f in (tmp_path / "archive").glob("*.archive.jsonl") for line in f.read_text().splitlines()]
    assert sorted(a["event_ids"][0] for a in archived) == sorted(p["event_id"] for p in payloads)
