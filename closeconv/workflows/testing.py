"""Build a small ``events`` table by hand, for tests, benchmarks and what-if demos.

The table has the columns of :data:`closeconv.contract.EVENTS_COLUMNS`. ``event_order`` is
computed as the ingestion does (occurred_at, then kind rank, then event_id). Conversation
ids are assigned by a minimal sessionization (per contact: opened/received opens a
conversation when none is open, closed closes it) unless given explicitly.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

import duckdb
import polars as pl

from closeconv.contract import EVENT_KIND_RANK, EVENTS_COLUMNS

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


def make_events_table(con: duckdb.DuckDBPyConnection, events: list[Ev], table: str = "events") -> None:
    """(Re)create ``table`` in ``con`` from ``events``."""
    rows = []
    for i, e in enumerate(events):
        rows.append(e if e.event_id else Ev(**{**e.__dict__, "event_id": f"e{i:06d}"}))
    rows.sort(key=lambda e: (e.occurred_at, EVENT_KIND_RANK[e.kind], e.event_id))
    open_conv: dict[str, str] = {}
    out = []
    for order, e in enumerate(rows, start=1):
        conv = e.conversation_id
        if conv is None:
            cur = open_conv.get(e.contact_id)
            if e.kind in ("conversation.opened", "message.received") and cur is None:
                cur = f"conv-{e.contact_id}-{e.event_id}"
                open_conv[e.contact_id] = cur
            if e.kind == "conversation.closed" and cur is not None:
                open_conv.pop(e.contact_id, None)
            conv = cur if e.kind != "contact.assignee.updated" else cur
        out.append(
            (
                e.event_id, e.kind, e.occurred_at, e.contact_id, conv, e.channel_id,
                e.source, e.user_id, e.team_id, e.assignee_id, e.category, e.summary,
                order, "test.jsonl", order,
            )
        )
    cols = ", ".join(f"{name} {typ}" for name, typ in EVENTS_COLUMNS.items())
    con.sql(f"CREATE OR REPLACE TABLE {table} ({cols})")
    if out:
        schema = {
            name: (pl.Datetime("us", "UTC") if typ == "TIMESTAMPTZ" else pl.Int64 if typ == "BIGINT" else pl.String)
            for name, typ in EVENTS_COLUMNS.items()
        }
        frame = pl.DataFrame(out, schema=schema, orient="row")
        con.register("_cc_new_events", frame.to_arrow())
        try:
            con.sql(f"INSERT INTO {table} SELECT * FROM _cc_new_events")
        finally:
            con.unregister("_cc_new_events")
