"""Crash states between the two files of a commit, reconciled by the store on start (real
files, the real store on an asyncio loop; the HTTP layer is covered by the e2e tests)."""

from __future__ import annotations

import asyncio
import json

from closeconv.intake.archive import archive_record
from closeconv.intake.mapping import map_delivery
from closeconv.intake.settings import resolve_intake_settings
from receiver.store import IntakeStore

T0 = 1_772_442_000
ASSIGNED = {"event_type": "contact.assignee.updated", "event_id": "a-1", "contact": {"id": 1, "assignee": {"id": 7}}}
RECEIVED = {"event_type": "message.received", "event_id": "r-1", "contact": {"id": 1},
            "message": {"messageId": 11, "timestamp": T0 * 1000, "channelId": 3}}


def settings(tmp_path):
    return resolve_intake_settings(tmp_path / "landing", tmp_path / "archive", environ={"CLOSECONV_RESPONDIO_SIGNING_KEYS": "k"})


def lines(folder, pattern):
    return [json.loads(x) for f in sorted(folder.glob(pattern)) for x in f.read_text().splitlines()]


async def run_store(s, deliveries):
    store = IntakeStore(s)
    await store.start()
    answers = [await store.submit("respondio", json.dumps(p).encode(), T0 * 1000 + 999_000, None) for p in deliveries]
    await store.stop()
    return store, [a[0] for a in answers]


def test_landed_but_not_archived_retry_is_archived_not_landed_twice(tmp_path):
    s = settings(tmp_path)
    s.landing_dir.mkdir(), s.archive_dir.mkdir()
    # the crash: the landing sync finished (received at T0+5 s), the archive sync did not
    first = map_delivery("respondio", json.dumps(ASSIGNED).encode(), (T0 + 5) * 1000)
    (s.landing_dir / ".intake-20260302T090005Z-1-00001.jsonl.part").write_text(json.dumps(first.events[0]) + "\n")
    store, answers = asyncio.run(run_store(s, [ASSIGNED]))  # the platform's retry, received later
    assert answers == ["stored"]
    landed = lines(s.landing_dir, "intake-*.jsonl")
    assert landed == first.events  # once, with the first receive time: no conflicting second version
    archived = lines(s.archive_dir, "*.archive.jsonl")
    assert [a["event_ids"] for a in archived] == [["a-1"]]
    assert not list(s.landing_dir.glob(".*")) and not list(s.archive_dir.glob(".*"))


def test_archived_but_not_landed_delivery_is_landed_on_start(tmp_path):
    s = settings(tmp_path)
    s.landing_dir.mkdir(), s.archive_dir.mkdir()
    body = json.dumps(RECEIVED).encode()
    delivery = map_delivery("respondio", body, T0 * 1000)
    (s.archive_dir / ".intake-20260302T090000Z-1-00001.archive.jsonl.part").write_bytes(
        archive_record("respondio", body, T0 * 1000, None, delivery) + b'{"platform": "respondio", "torn')
    store, answers = asyncio.run(run_store(s, [RECEIVED]))  # and its retry is a duplicate
    assert answers == ["duplicate"]
    assert lines(s.landing_dir, "intake-*.jsonl") == delivery.events
    assert len(lines(s.archive_dir, "*.archive.jsonl")) == 1  # the torn line was dropped
