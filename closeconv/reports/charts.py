"""The Reports page's charts as small frames, aggregated in SQL under the shared filters.

Days are local days in the workspace timezone (`timezone(tz, ts)::DATE`, DST-correct).
"""

from __future__ import annotations

from datetime import date

import polars as pl

from closeconv.reports.access import Warehouse
from closeconv.reports.filters import FRT_BUCKET_LABELS, Filters, resolve_period
from closeconv.reports.format import source_label
from closeconv.reports.where import attribute_conditions, closed_where, local_day_counts, time_range

NO_CATEGORY = "(no category)"


def opened_vs_closed_per_day(wh: Warehouse, f: Filters, today: date) -> pl.DataFrame:
    """day, opened, closed: every local day of the period (of the data, for all time), zero-filled."""
    tz = wh.timezone
    period = resolve_period(f, tz, today)
    closed = closed_where(f, period)
    attrs = attribute_conditions(f)
    opened_range = time_range("c.opened_at", period)
    sql = f"""
        WITH closed AS ({local_day_counts("c.closed_at", f"FROM conversations c WHERE {closed.sql}")}),
        opened AS ({local_day_counts("c.opened_at", f"FROM conversations c WHERE {attrs.sql} AND {opened_range.sql}")}),
        bounds AS (
            SELECT coalesce(?::DATE, least((SELECT min(day) FROM closed), (SELECT min(day) FROM opened))) AS first_day,
                   coalesce(?::DATE, greatest((SELECT max(day) FROM closed), (SELECT max(day) FROM opened))) AS last_day),
        days AS (
            SELECT unnest(generate_series(first_day, last_day, INTERVAL 1 DAY))::DATE AS day
            FROM bounds WHERE first_day IS NOT NULL AND last_day IS NOT NULL)
        SELECT d.day, coalesce(o.n, 0) AS opened, coalesce(cl.n, 0) AS closed
        FROM days d LEFT JOIN opened o USING (day) LEFT JOIN closed cl USING (day)
        ORDER BY d.day"""
    params = [tz, *closed.params, tz, *attrs.params, *opened_range.params,
              period.first_day if period else None, period.last_day if period else None]
    return wh.query(sql, params)


def frt_breakdown(wh: Warehouse, f: Filters, today: date) -> pl.DataFrame:
    """bucket, conversations, share (of the answered ones): all 7 buckets of spec §2, in order."""
    where = closed_where(f, resolve_period(f, wh.timezone, today))
    counts = dict(wh.query(
        f"SELECT c.frt_bucket, count(*) AS n FROM conversations c WHERE {where.sql} AND c.frt_bucket IS NOT NULL GROUP BY 1",
        where.params,
    ).iter_rows())
    answered = sum(counts.values())
    return pl.DataFrame(
        {
            "bucket": list(FRT_BUCKET_LABELS),
            "conversations": [int(counts.get(b, 0)) for b in FRT_BUCKET_LABELS],
            "share": [counts.get(b, 0) / answered if answered else None for b in FRT_BUCKET_LABELS],
        },
        schema={"bucket": pl.String, "conversations": pl.Int64, "share": pl.Float64},
    )


def _breakdown(wh: Warehouse, f: Filters, today: date, column: str, name: str) -> pl.DataFrame:
    where = closed_where(f, resolve_period(f, wh.timezone, today))
    return wh.query(
        f"""
        SELECT c.{column} AS {name}, count(*) AS closed,
               CASE WHEN count(*) > 0 THEN 100.0 * count(c.first_response_time_s) / count(*) END AS answered_pct,
               avg(c.first_response_time_s) AS frt_avg_s,
               quantile_cont(c.first_response_time_s, 0.5) AS frt_median_s,
               avg(c.resolution_time_s) AS resolution_avg_s,
               quantile_cont(c.resolution_time_s, 0.5) AS resolution_median_s
        FROM conversations c WHERE {where.sql}
        GROUP BY 1 ORDER BY closed DESC, 1 NULLS LAST""",
        where.params,
    )


def by_category(wh: Warehouse, f: Filters, today: date) -> pl.DataFrame:
    """category (None = no closing note; label "(no category)"), closed, answered_pct, FRT and resolution."""
    frame = _breakdown(wh, f, today, "category", "category")
    return frame.with_columns(pl.col("category").fill_null(NO_CATEGORY).alias("label"))


def by_channel(wh: Warehouse, f: Filters, today: date) -> pl.DataFrame:
    frame = _breakdown(wh, f, today, "channel_id", "channel_id")
    return frame.with_columns(pl.col("channel_id").fill_null("(no channel)").alias("label"))


def by_closed_by_source(wh: Warehouse, f: Filters, today: date) -> pl.DataFrame:
    frame = _breakdown(wh, f, today, "closed_by_source", "closed_by_source")
    return frame.with_columns(
        pl.col("closed_by_source").map_elements(source_label, return_dtype=pl.String).alias("label")
    )
