"""`closeconv run --backfill-from DAY --backfill-to DAY`: recompute every contact with an event on
those days (inclusive, local dates in the workspace timezone), in every step (docs/operations.md).

A backfill marks the contacts in the change journal (closeconv/changes.py) before the events
step; the run then recomputes them as if their records had just arrived, whatever the staging
tables say.
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import duckdb

from closeconv import changes
from closeconv.config import ConfigError


def backfill_days(start: str | None, end: str | None) -> tuple[date, date] | None:
    """The inclusive day range of `--backfill-from/--backfill-to` (both or neither), or None."""
    if start is None and end is None:
        return None
    if start is None or end is None:
        raise ConfigError("--backfill-from and --backfill-to go together: give both days (YYYY-MM-DD)")
    days = []
    for flag, text in (("--backfill-from", start), ("--backfill-to", end)):
        try:
            days.append(date.fromisoformat(text.strip()))
        except ValueError:
            raise ConfigError(f"{flag} {text!r} is not a date; use YYYY-MM-DD, e.g. 2026-03-01") from None
    if days[1] < days[0]:
        raise ConfigError(f"--backfill-to {days[1]} is before --backfill-from {days[0]}")
    return days[0], days[1]


def mark_backfill(con: duckdb.DuckDBPyConnection, days: tuple[date, date], timezone: str) -> int:
    """Journal, for every step, the contacts with an event (a staged record, or a derived one in
    `events`) on these local days; returns how many contacts."""
    zone = ZoneInfo(timezone)
    start = datetime.combine(days[0], time(), zone)
    end = datetime.combine(days[1] + timedelta(days=1), time(), zone)
    sources = ["SELECT contact_id FROM validated_records WHERE reason_code IS NULL AND occurred_at >= ? AND occurred_at < ?"]
    if not changes.missing_tables(con, ["events"]):
        sources.append("SELECT contact_id FROM events WHERE occurred_at >= ? AND occurred_at < ?")
    select = "SELECT DISTINCT contact_id FROM (" + " UNION ALL ".join(sources) + ")"
    params = [start, end] * len(sources)
    changes.mark_contacts(con, changes.STEPS, select, params)
    return con.execute(f"SELECT count(*) FROM ({select})", params).fetchall()[0][0]
