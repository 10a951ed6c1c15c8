"""The Pipeline health page: the last published run, data freshness, rejected records."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import polars as pl

from closeconv.reports.access import Warehouse


@dataclass(frozen=True)
class Freshness:
    newest_event_at: datetime | None
    age_s: float | None  # now − newest event; None without events
    published_at: datetime | None


def last_run(wh: Warehouse) -> dict[str, Any] | None:
    """The newest `pipeline_runs` row (published_at, counts, …), or None."""
    runs = recent_runs(wh, limit=1)
    return runs.row(0, named=True) if runs.height else None


def recent_runs(wh: Warehouse, limit: int = 10) -> pl.DataFrame:
    if "pipeline_runs" not in wh.tables:
        return pl.DataFrame()
    frame = wh.query("SELECT * FROM pipeline_runs ORDER BY published_at DESC LIMIT ?", [max(1, int(limit))])
    return frame.with_columns(pl.col("published_at").dt.convert_time_zone(wh.timezone))


def freshness(wh: Warehouse, now: datetime) -> Freshness:
    newest = wh.scalar("SELECT max(occurred_at) FROM events")
    age = (now - newest).total_seconds() if newest is not None else None
    return Freshness(newest_event_at=newest, age_s=age, published_at=wh.data_as_of)


def rejected_by_reason(wh: Warehouse) -> pl.DataFrame:
    """reason_code, records, files, example_reason."""
    return wh.query(
        """SELECT reason_code, count(*) AS records, count(DISTINCT file) AS files,
                  arg_min(reason, (file, line)) AS example_reason
           FROM rejected_events GROUP BY 1 ORDER BY records DESC, 1"""
    )


def rejected_examples(wh: Warehouse, reason_code: str | None = None, limit: int = 5) -> pl.DataFrame:
    """file, line, raw_record, reason (first ones by file and line), for one reason code or all."""
    return wh.query(
        """SELECT file, line, reason_code, reason, raw_record, event_id FROM rejected_events
           WHERE ?::VARCHAR IS NULL OR reason_code = ?
           ORDER BY file, line LIMIT ?""",
        [reason_code, reason_code, max(1, int(limit))],
    )
