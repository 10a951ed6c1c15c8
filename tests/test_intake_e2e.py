"""End to end: the real receiver (a subprocess), signed payloads over HTTP in shuffled order
with redeliveries and forgeries, then the real pipeline, then conversations and metrics."""

from __future__ import annotations

import json
import random
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from closeconv.ingest import discover_landing_files
from closeconv.intake.signatures import chatwoot_signature, respondio_signature
from receiver.testing import CLOSECONV, ReceiverProcess, respondio_conversation

KEYS = ["key-for-message-received", "key-for-conversation-closed"]
CW_SECRET = "chatwoot-secret"
T0 = 1_772_442_000  # 2026-03-02T09:00:00Z


def post_respondio(client: httpx.Client, url: str, payload: dict | bytes, key: str = KEYS[0], signature: str | None = None):
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    headers = {"content-type": "application/json"}
    sig = signature if signature is not None else respondio_signature(key, body)
    if sig:
        headers["X-Webhook-Signature"] = sig
    return client.post(url + "/webhooks/respondio", content=body, headers=headers)


def metric(text: str, name: str) -> float:
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(name))


@pytest.fixture
def receiver(closeconv_env, tmp_path):
    with ReceiverProcess(closeconv_env.landing, tmp_path / "archive", KEYS, CW_SECRET) as r:
        yield r


def test_shuffled_signed_deliveries_with_redeliveries_become_conversations(closeconv_env, receiver, tmp_path):
    rng = random.Random(9)
    payloads = []
    for i in range(40):
        payloads += respondio_conversation(2000 + i, T0 + 60 * i, user_id=7 + i % 3, frt_s=30 + i,
                                           close_after_s=600 + i, ms_times=i % 2 == 0)
    deliveries = payloads + rng.sample(payloads, 25)  # at-least-once: 25 redeliveries
    rng.shuffle(deliveries)  # no order is guaranteed: a close may come before its open
    unused = {"event_type": "contact.tag.updated", "event_id": "tag-1", "contact": {"id": 2000}}
    malformed = b'{"event_type": "message.received", "truncated'
    acked: set[str] = set()
    with httpx.Client(timeout=10) as client:
        for p in deliveries:
            r = post_respondio(client, receiver.url, p, key=rng.choice(KEYS))
            assert r.status_code == 200, r.text
            acked.add(p["event_id"])
        assert post_respondio(client, receiver.url, unused).json() == {
            "status": "stored", "outcome": "ignored", "reason": "event type contact.tag.updated is not used by closeconv"}
        bad = post_respondio(client, receiver.url, malformed)
        assert bad.status_code == 200 and bad.json()["outcome"] == "malformed"
        # forgeries: wrong key, no header, a body changed after signing
        forged = {"event_type": "conversation.closed", "event_id": "forged", "contact": {"id": 2000},
                  "conversation": {"closedTime": T0, "closedBySource": "api"}}
        assert post_respondio(client, receiver.url, forged, key="not-a-key").status_code == 401
        assert post_respondio(client, receiver.url, forged, signature="").status_code == 401
        sig = respondio_signature(KEYS[0], json.dumps(forged).encode())
        r401 = post_respondio(client, receiver.url, json.dumps(forged).encode() + b" ", signature=sig)
        assert r401.status_code == 401 and KEYS[0] not in r401.text
        text = client.get(receiver.url + "/metrics").text
        assert client.get(receiver.url + "/healthz").json()["status"] == "ok"
    assert metric(text, 'closeconv_intake_received_total{platform="respondio"}') == len(deliveries) + 5
    assert metric(text, 'closeconv_intake_stored_total{platform="respondio"}') == len(payloads) + 2
    assert metric(text, 'closeconv_intake_duplicates_total{platform="respondio"}') == 25
    assert metric(text, "closeconv_intake_signature_failures_total") == 3
    assert metric(text, 'closeconv_intake_ignored_total{platform="respondio",event_type="contact.tag.updated"}') == 1
    assert metric(text, "closeconv_intake_rejected_total{reason=\"malformed") == 1
    assert "closeconv_intake_write_latency_seconds{quantile=\"0.99\"}" in text

    # while running, the events sit in hidden parts the pipeline does not read
    files, _ = discover_landing_files(closeconv_env.landing)
    assert files == [] and list(closeconv_env.landing.glob(".intake-*.jsonl.part"))
    assert receiver.stop() == 0
    files, _ = discover_landing_files(closeconv_env.landing)
    assert [f.name for f in files] and not list(closeconv_env.landing.glob(".*"))
    assert not any(KEYS[0] in p.read_text() or KEYS[1] in p.read_text() for p in tmp_path.rglob("*.log"))

    wh = closeconv_env.run()
    assert wh.scalar("SELECT count(*) FROM events") == len(payloads)
    assert {r["event_id"] for r in wh.rows("SELECT event_id FROM events")} == acked
    assert wh.scalar("SELECT count(*) FROM rejected_events") == 0
    conv = wh.frame("SELECT * FROM conversations ORDER BY contact_id")
    assert conv.height == 40 and set(conv["status"]) == {"closed"}
    first = conv.row(0, named=True)
    assert first["contact_id"] == "2000" and first["first_response_time_s"] == 30.0
    assert first["resolution_time_s"] == 600.0 and first["closed_by_user_id"] == "7"
    assert first["platform_first_response_time_s"] == 30.0 and first["platform_metrics_differ"] is False
    assert conv["platform_metrics_differ"].to_list() == [False] * 40
    daily = wh.rows("SELECT sum(conversations_closed) AS n, min(frt_median_s) AS m FROM daily_conversation_metrics")
    assert daily[0]["n"] == 40

    # the archive holds every accepted body; remap gives the same events
    out = tmp_path / "remapped"
    proc = subprocess.run([str(CLOSECONV), "intake", "remap", str(tmp_path / "archive"), "--out", str(out)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert f"→ {len(payloads)} events" in proc.stdout and "1 unused event types" in proc.stdout
    assert "malformed      1  body is not valid JSON" in proc.stdout
    remapped = [json.loads(line) for f in out.glob("remap-*.jsonl") for line in f.read_text().splitlines()]
    landed = [json.loads(line) for f in closeconv_env.landing.glob("intake-*.jsonl") for line in f.read_text().splitlines()]
    assert sorted(remapped, key=lambda e: e["event_id"]) == sorted(landed, key=lambda e: e["event_id"])


def test_restart_keeps_deduplicating_from_the_archive(closeconv_env, tmp_path):
    payload = respondio_conversation(3000, T0)[1]
    with ReceiverProcess(closeconv_env.landing, tmp_path / "archive", KEYS) as r, httpx.Client() as client:
        assert post_respondio(client, r.url, payload).json()["status"] == "stored"
    with ReceiverProcess(closeconv_env.landing, tmp_path / "archive", KEYS) as r, httpx.Client() as client:
        assert post_respondio(client, r.url, payload).json()["status"] == "duplicate"
        # same message under a new event_id (a platform retry with a fresh envelope) is a duplicate too
        assert post_respondio(client, r.url, payload | {"event_id": "other-id"}).json()["status"] == "duplicate"


def test_chatwoot_over_http(closeconv_env, receiver):
    def send(client, payload, delivery, ts=None, secret=CW_SECRET):
        body = json.dumps(payload).encode()
        ts = str(int(time.time())) if ts is None else ts
        return client.post(receiver.url + "/webhooks/chatwoot", content=body, headers={
            "X-Chatwoot-Signature": chatwoot_signature(secret, ts, body), "X-Chatwoot-Timestamp": ts,
            "X-Chatwoot-Delivery": delivery, "content-type": "application/json"})

    conv = {"id": 77, "inbox_id": 3, "contact_inbox": {"contact_id": 4}, "meta": {"sender": {"id": 4}}}
    incoming = {"event": "message_created", "id": 1, "message_type": "incoming", "private": False,
                "created_at": "2026-03-02T09:00:00Z", "sender": {"id": 4, "type": "contact"}, "conversation": conv}
    reply = {"event": "message_created", "id": 2, "message_type": "outgoing", "private": False,
             "created_at": "2026-03-02T09:02:00Z", "sender": {"id": 12, "type": "user"}, "conversation": conv}
    resolved = {"event": "conversation_status_changed", "id": 77, "inbox_id": 3, "status": "resolved",
                "meta": {"sender": {"id": 4}, "assignee": {"id": 12}}, "updated_at": T0 + 900}
    with httpx.Client(timeout=10) as client:
        assert send(client, reply, "d2").status_code == 200
        assert send(client, resolved, "d3").status_code == 200
        assert send(client, incoming, "d1").status_code == 200
        assert send(client, incoming, "d1").json()["status"] == "duplicate"
        stale = send(client, incoming, "d9", ts=str(int(time.time()) - 3600))
        assert stale.status_code == 401 and stale.json()["reason"] == "stale_timestamp"
        assert send(client, incoming, "d8", secret="wrong").status_code == 401
    receiver.stop()
    wh = closeconv_env.run()
    c = wh.rows("SELECT * FROM conversations")
    assert len(c) == 1 and c[0]["first_response_time_s"] == 120.0 and c[0]["closed_by_user_id"] == "12"


def test_serve_refuses_to_start_without_a_key(tmp_path):
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    proc = subprocess.run([str(CLOSECONV), "intake", "serve", "--landing", str(tmp_path / "landing")],
                          env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert "CLOSECONV_RESPONDIO_SIGNING_KEYS" in proc.stderr and "configuration error" in proc.stderr
    (tmp_path / "file").write_text("x")
    env["CLOSECONV_RESPONDIO_SIGNING_KEYS"] = "k"
    proc = subprocess.run([str(CLOSECONV), "intake", "serve", "--landing", str(tmp_path / "file")],
                          env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "is a file, not a folder" in proc.stderr


def test_secrets_file_and_replay_samples(closeconv_env, tmp_path):
    secrets = tmp_path / "intake.env"
    secrets.write_text("CLOSECONV_RESPONDIO_SIGNING_KEYS=sample-key\n")
    r = ReceiverProcess(closeconv_env.landing, tmp_path / "archive", extra_args=["--secrets", str(secrets)])
    with r:
        proc = subprocess.run([str(CLOSECONV), "intake", "replay-samples", "--url", r.url + "/webhooks/respondio",
                               "--key", "sample-key"], capture_output=True, text=True, timeout=120, env=r.env)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert "sent 15 payloads, 0 not accepted" in proc.stdout
        assert proc.stdout.count('"duplicate"') == 1 and proc.stdout.count('"ignored"') == 1
        wrong = subprocess.run([str(CLOSECONV), "intake", "replay-samples", "--url", r.url + "/webhooks/respondio",
                                "--key", "not-it"], capture_output=True, text=True, timeout=120, env=r.env)
        assert wrong.returncode == 1 and wrong.stdout.count(" 401 ") + wrong.stdout.count("401 ") >= 15
    wh = closeconv_env.run()
    rows = {r["contact_id"]: r for r in wh.rows("SELECT * FROM conversations")}
    assert set(rows) == {"1001", "1002", "1003"}
    assert rows["1001"]["status"] == "closed" and rows["1001"]["first_response_time_s"] == 95.0
    assert rows["1002"]["closed_by_source"] == "auto_close" and rows["1002"]["first_response_time_s"] == 720.0
    assert rows["1003"]["status"] == "open" and rows["1003"]["opened_by_source"] == "growth_widget"
    # the samples are recent (shifted to now), so a dashboard's default date range shows them
    assert wh.scalar("SELECT max(occurred_at) FROM events WHERE event_type <> 'contact.assignee.updated'") is not None
    assert wh.scalar("SELECT epoch(now()) - epoch(max(occurred_at)) FROM events WHERE event_type = 'conversation.closed'") < 3 * 86400


def test_files_rotate_on_time_so_a_run_sees_events_while_the_receiver_runs(closeconv_env, tmp_path):
    payloads = respondio_conversation(4000, T0)
    with ReceiverProcess(closeconv_env.landing, tmp_path / "archive", KEYS, extra_args=["--rotate-seconds", "0.3"]) as r:
        with httpx.Client(timeout=10) as client:
            for p in payloads:
                assert post_respondio(client, r.url, p).status_code == 200
        deadline = time.monotonic() + 15
        while list(closeconv_env.landing.glob(".*.part")) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not list(closeconv_env.landing.glob(".*.part")), "the idle receiver did not rotate its file"
        wh = closeconv_env.run()  # the receiver is still up
        assert wh.scalar("SELECT count(*) FROM conversations WHERE status = 'closed'") == 1
