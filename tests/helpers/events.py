"""Build an ``events`` table for a test through the production path.

The events are written as a JSONL landing file and go through ``stage_landing_files`` and
``closeconv.pipeline.build_events`` (validation, deduplication, the real sessionization), so
a test of replay or metrics sees exactly the ``events`` the pipeline would publish. A record
the contract rejects fails the test loudly instead of vanishing.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

import duckdb

from closeconv.ingest import stage_landing_files
from closeconv.pipeline import build_events

KINDS = {
    "open": "conversation.opened",
    "opened": "conversation.opened",
    "recv": "message.received",
    "sent": "message.sent",
    "assign": "contact.assignee.updated",
    "close": "conversation.closed",
    "closed": "conversation.closed",
}
DAY = datetime(2026, 3, 2, tzinfo=timezone.utc)


def at(hhmmss: str, day: datetime = DAY) -> datetime:
    """'09:10' or '09:10:02' on 2026-03-02 UTC (or ``day``)."""
    parts = [int(x) for x in hhmmss.split(":")]
    while len(parts) < 3:
        parts.append(0)
    return day + timedelta(hours=parts[0], minutes=parts[1], seconds=parts[2])


@dataclass
class Ev:
    kind: str
    occurred_at: datetime
    contact_id: str = "c1"
    source: str | None = None
    user_id: str | None = None
    team_id: str | None = None
    assignee_id: str | None = None
    category: str | None = None
    summary: str | None = None
    channel_id: str | None = "ch1"
    event_id: str | None = None
    conversation_id: str | None = None


def ev(kind: str, when: str | datetime, contact: str = "c1", **kw) -> Ev:
    """ev('close', '09:10', source='user', user_id='u1'). ``kind`` is a short name or an event type."""
    etype = KINDS.get(kind, kind)
    occurred = at(when) if isinstance(when, str) else when
    if etype == "message.received":
        kw.setdefault("source", "contact")
    return Ev(kind=etype, occurred_at=occurred, contact_id=contact, **kw)


def _record(e: Ev, event_id: str) -> dict:
    record = {k: v for k, v in asdict(e).items() if k not in ("kind", "occurred_at") and v is not None}
    record.update(event_id=event_id, event_type=e.kind,
                  occurred_at=e.occurred_at.astimezone(timezone.utc).isoformat().replace("+00:00", "Z"))
    if e.kind == "contact.assignee.updated":
        record["assignee_id"] = e.assignee_id  # null = unassigned, but the field must be there
    return record


def make_events_table(con: duckdb.DuckDBPyConnection, events: list[Ev], *, allow_rejected: bool = False) -> None:
    """(Re)create ``events`` in ``con`` from ``events`` through ingest → validate → sessionize."""
    with tempfile.TemporaryDirectory(prefix="closeconv-test-") as tmp:
        landing = Path(tmp)
        with open(landing / "test.jsonl", "w", encoding="utf-8") as fh:
            for i, e in enumerate(events):
                fh.write(json.dumps(_record(e, e.event_id or f"e{i:06d}")) + "\n")
        for table in ("events", "rejected_events", "landing_files", "validated_records"):
            con.sql(f"DROP TABLE IF EXISTS {table}")
        stage_landing_files(con, landing)
        counts = build_events(con)
    if counts.rejected and not allow_rejected:
        reasons = con.sql("SELECT event_id, reason FROM rejected_events ORDER BY line").fetchall()
        raise AssertionError(f"test events were rejected by the contract: {reasons}")


def build_tables(con: duckdb.DuckDBPyConnection, events: list[Ev], workflows=(), tz: str = "UTC", users=None) -> None:
    """Every table the pipeline publishes, in its order: events → replay → conversations → daily → user activity."""
    from closeconv.metrics import build_conversations, build_daily_conversation_metrics
    from closeconv.user_activity import build_user_activity
    from closeconv.workflows import replay_workflows

    make_events_table(con, events)
    replay_workflows(con, list(workflows), users)
    build_conversations(con)
    build_daily_conversation_metrics(con, tz)
    build_user_activity(con)
