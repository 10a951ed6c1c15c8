"""Filters -> a SQL WHERE clause over `conversations` with `?` parameters (never spliced values).

What each filter matches (all "any of" the given values):
- date range: `closed_at` within the period's UTC bounds (local midnight to local midnight);
- `category`: the closing-note category, case-insensitive;
- `closed_by_source`, `opened_source`: `closed_by_source` / `opened_by_source` (lower-cased);
- `closed_by_user`: `closed_by_user_id`; `team`: `closed_by_team_id`;
- `assignee`: `assignee_at_close` (the assignee when it closed, before any workflow the close
  triggered), not the first assignee;
- `channel`: `channel_id`;
- `q`: the contact id or the conversation id, exactly;
- `frt_bucket`: the `frt_bucket` label.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from closeconv.reports.filters import Filters, Period

# filter field -> (column, how values are normalized before matching)
_COLUMNS: dict[str, tuple[str, bool]] = {
    "category": ("lower({a}.category)", True),
    "closed_by_source": ("{a}.closed_by_source", True),
    "opened_source": ("{a}.opened_by_source", True),
    "closed_by_user": ("{a}.closed_by_user_id", False),
    "team": ("{a}.closed_by_team_id", False),
    "assignee": ("{a}.assignee_at_close", False),
    "channel": ("{a}.channel_id", False),
    "frt_bucket": ("{a}.frt_bucket", False),
}


@dataclass
class Where:
    conditions: list[str] = field(default_factory=list)
    params: list = field(default_factory=list)

    def add(self, sql: str, *params) -> "Where":
        self.conditions.append(sql)
        self.params.extend(params)
        return self

    @property
    def sql(self) -> str:
        return " AND ".join(self.conditions) if self.conditions else "TRUE"


def attribute_conditions(f: Filters, alias: str = "c") -> Where:
    """Every filter except the date range."""
    where = Where()
    for name, (column, lower) in _COLUMNS.items():
        values = getattr(f, name)
        if values:
            wanted = [v.lower() for v in values] if lower else list(values)
            where.add(f"list_contains(?::VARCHAR[], {column.format(a=alias)})", wanted)
    if f.q:
        where.add(f"({alias}.contact_id = ? OR {alias}.conversation_id = ?)", f.q, f.q)
    return where


def time_range(column: str, period: Period | None) -> Where:
    where = Where()
    if period and period.start_utc:
        where.add(f"{column} >= ?::TIMESTAMPTZ", period.start_utc)
    if period and period.end_utc_exclusive:
        where.add(f"{column} < ?::TIMESTAMPTZ", period.end_utc_exclusive)
    return where


def closed_where(f: Filters, period: Period | None, alias: str = "c") -> Where:
    """Closed conversations closed in `period` and matching the other filters."""
    where = Where().add(f"{alias}.status = 'closed'")
    for part in (time_range(f"{alias}.closed_at", period), attribute_conditions(f, alias)):
        where.conditions += part.conditions
        where.params += part.params
    return where


def span(earlier: Period, later: Period) -> Period:
    """From the start of `earlier` to the end of `later` (one scan over a period and its predecessor)."""
    return Period(earlier.first_day, later.last_day, earlier.start_utc, later.end_utc_exclusive)


SLOT_MS = 15 * 60 * 1000


def local_day_counts(ts: str, source: str, group: str | None = None, group_as: str = "g") -> str:
    """SQL counting rows of `source` (FROM … WHERE …, alias-qualified `ts`) per local day.

    Converting every timestamp to local time is the slow part (ICU), so rows are first counted
    per 15-minute UTC slot and only the slots are converted: every UTC offset and DST change
    falls on a quarter hour, so a slot never straddles two local days. The timezone is the
    statement's first parameter (then those of `source`). Result columns: day, [group_as,] n.
    """
    inner_group = f", {group} AS {group_as}" if group else ""
    outer_group = f", {group_as}" if group else ""
    return f"""
        SELECT timezone(?, to_timestamp(slot * {SLOT_MS // 1000}))::DATE AS day{outer_group}, sum(n)::BIGINT AS n
        FROM (SELECT epoch_ms({ts}) // {SLOT_MS} AS slot{inner_group}, count(*) AS n {source} GROUP BY ALL)
        GROUP BY ALL"""
