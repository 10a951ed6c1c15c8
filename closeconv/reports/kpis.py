"""The Reports page's KPI tiles, each with its value in the previous period of the same length.

Two queries, each one scan over the period and its predecessor together: the closed-side
figures (by close time) and the opened count (by open time, the other filters applied, so a
closed-side filter such as `closed_by_source` leaves out conversations still open). Counts over
nothing are 0; an average, median, p90 or percentage over nothing is None ("—"), never 0.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Literal

from closeconv.reports.access import Warehouse
from closeconv.reports.filters import Filters, Period, previous_period, resolve_period
from closeconv.reports.where import attribute_conditions, closed_where, span, time_range


@dataclass(frozen=True)
class Kpi:
    key: str
    label: str
    value: float | None
    previous: float | None
    kind: Literal["count", "duration", "percent"]

    @property
    def delta(self) -> float | None:
        """value − previous, or None when either is missing."""
        if self.value is None or self.previous is None:
            return None
        return self.value - self.previous


# key -> (label, kind); the closed-side keys are columns of the closed query.
KPI_DEFINITIONS: dict[str, tuple[str, str]] = {
    "closed": ("Conversations closed", "count"),
    "opened": ("Conversations opened", "count"),
    "frt_avg_s": ("First response time, average", "duration"),
    "frt_median_s": ("First response time, median", "duration"),
    "frt_p90_s": ("First response time, p90", "duration"),
    "resolution_avg_s": ("Resolution time, average", "duration"),
    "resolution_median_s": ("Resolution time, median", "duration"),
    "resolution_p90_s": ("Resolution time, p90", "duration"),
    "answered_pct": ("Answered by a human", "percent"),
    "reopened_within_24h": ("Reopened within 24 h", "count"),
}
KPI_KEYS: tuple[str, ...] = tuple(KPI_DEFINITIONS)
COUNT_KEYS = ("closed", "opened", "reopened_within_24h")

_CLOSED_AGGREGATES = """
    count(*) AS closed,
    avg(c.first_response_time_s) AS frt_avg_s,
    quantile_cont(c.first_response_time_s, 0.5) AS frt_median_s,
    quantile_cont(c.first_response_time_s, 0.9) AS frt_p90_s,
    avg(c.resolution_time_s) AS resolution_avg_s,
    quantile_cont(c.resolution_time_s, 0.5) AS resolution_median_s,
    quantile_cont(c.resolution_time_s, 0.9) AS resolution_p90_s,
    CASE WHEN count(*) > 0 THEN 100.0 * count(c.first_response_time_s) / count(*) END AS answered_pct,
    count(*) FILTER (WHERE c.reopened_within_24h) AS reopened_within_24h"""


def _split(period: Period | None, previous: Period | None, column: str) -> tuple[str, list]:
    """SQL for 'belongs to the current period' within the scanned span."""
    if previous is None:
        return "TRUE", []
    return f"({column} >= ?::TIMESTAMPTZ)", [period.start_utc]


def kpis(wh: Warehouse, f: Filters, today: date) -> list[Kpi]:
    tz = wh.timezone
    period = resolve_period(f, tz, today)
    previous = previous_period(period, tz) if period else None
    scanned = span(previous, period) if previous else period

    closed = closed_where(f, scanned)
    closed_current, closed_current_params = _split(period, previous, "c.closed_at")
    opened = attribute_conditions(f)
    opened_span = time_range("c.opened_at", scanned)
    opened_current, opened_current_params = _split(period, previous, "c.opened_at")
    opened_where = " AND ".join([opened.sql, opened_span.sql])

    closed_rows, opened_rows = wh.query_many([
        (f"SELECT {closed_current} AS is_current, {_CLOSED_AGGREGATES} FROM conversations c "
         f"WHERE {closed.sql} GROUP BY ALL", [*closed_current_params, *closed.params]),
        (f"SELECT {opened_current} AS is_current, count(*) AS opened FROM conversations c "
         f"WHERE {opened_where} GROUP BY ALL", [*opened_current_params, *opened.params, *opened_span.params]),
    ])
    figures: dict[bool, dict[str, float | None]] = {True: {}, False: {}}
    for frame in (closed_rows, opened_rows):
        for row in frame.iter_rows(named=True):
            figures[bool(row.pop("is_current"))].update(row)

    def value(side: bool, key: str) -> float | None:
        if side is False and previous is None:
            return None
        got = figures[side].get(key)
        if got is None and key in COUNT_KEYS:
            return 0.0
        return None if got is None else float(got)

    return [Kpi(key=key, label=label, value=value(True, key), previous=value(False, key), kind=kind)
            for key, (label, kind) in KPI_DEFINITIONS.items()]
