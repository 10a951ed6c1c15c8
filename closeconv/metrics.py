"""Per-conversation metrics (spec §5) and daily aggregates, as SQL over the `events` table.

Durations are DOUBLE seconds (`epoch(b) - epoch(a)`): INTERVALs do not convert to Polars.
Aggregates ignore nulls and are null over no values, never 0.
"""

from __future__ import annotations

from zoneinfo import ZoneInfo

import duckdb
import polars as pl

from closeconv.contract import FRT_BUCKETS, PLATFORM_FIELDS
from closeconv.scoped_sql import over_contacts
from closeconv.sessionize import CONVERSATION_OPENERS_SQL
from closeconv.workflows.assignees import conversation_assignees_sql

# Platform and closeconv figures closer than this count as the same (the platform rounds to seconds).
PLATFORM_TOLERANCE_S = 1.0


def frt_bucket_sql(expr: str, *, order: bool = False) -> str:
    """The bucket label of a first response time, or with ``order`` its rank 1, 2, … (fastest
    first): labels like `10–30m` do not sort by text, so reports order by the rank."""
    cases = []
    for rank, (label, upper) in enumerate(FRT_BUCKETS, start=1):
        value = str(rank) if order else f"'{label}'"
        cases.append(f"ELSE {value}" if upper is None else f"WHEN {expr} < {upper} THEN {value}")
    return f"CASE WHEN {expr} IS NULL THEN NULL " + " ".join(cases) + " END"


def build_conversations(
    con: duckdb.DuckDBPyConnection, categories: pl.DataFrame | None = None, contacts: str | None = None
) -> None:
    """Create table `conversations` from `events` and `assignments`.

    With configured categories, `category_is_configured` flags a closing-note category outside
    the list (kept, not rejected); it is null without a list or without a category.
    With `contacts` (a SQL predicate on `contact_id`), replace only those contacts' rows: every
    figure of a conversation comes from its own contact's events and timeline.
    """
    configured = categories if categories is not None else pl.DataFrame({"name": []}, schema={"name": pl.String})
    con.register("_configured_categories", configured.select(pl.col("name").str.to_lowercase().alias("name")))
    has_list = categories is not None
    # An events table from before contract v1.1 has no platform columns: they read as null.
    present = {r[0] for r in con.sql("SELECT column_name FROM (DESCRIBE events)").fetchall()}
    platform = ",\n                ".join(
        f"any_value(e.{c}) FILTER (WHERE e.event_type = 'conversation.closed') AS {c}" if c in present else f"NULL::{t} AS {c}"
        for c, t in PLATFORM_FIELDS.items()
    )
    query = f"""
        -- Read three times: materialized (DuckDB's default then), it is a full-width copy of
        -- every conversation event; inlined, each reader scans only the columns it needs.
        WITH conv_events AS NOT MATERIALIZED (
            SELECT * FROM events WHERE conversation_id IS NOT NULL
        ),
        -- Also the span of each conversation the assignees query starts from (open_order,
        -- opened_at, close_order): it would otherwise group all events by conversation again.
        base AS (
            SELECT e.conversation_id,
                any_value(e.contact_id) AS contact_id,
                min(e.occurred_at) AS opened_at,
                coalesce(arg_min(e.channel_id, e.event_order),
                         arg_min(e.channel_id, e.event_order) FILTER (WHERE e.channel_id IS NOT NULL)) AS channel_id,
                min(e.event_order) AS open_order,
                max(e.occurred_at) FILTER (WHERE e.event_type = 'conversation.closed') AS closed_at,
                max(e.event_order) FILTER (WHERE e.event_type = 'conversation.closed') AS close_order,
                any_value(e.source) FILTER (WHERE e.event_type = 'conversation.closed') AS closed_by_source,
                any_value(e.user_id) FILTER (WHERE e.event_type = 'conversation.closed') AS closed_by_user_id,
                any_value(e.team_id) FILTER (WHERE e.event_type = 'conversation.closed') AS closed_by_team_id,
                any_value(e.category) FILTER (WHERE e.event_type = 'conversation.closed') AS category,
                any_value(e.summary) FILTER (WHERE e.event_type = 'conversation.closed') AS summary,
                min(e.occurred_at) FILTER (WHERE e.event_type = 'message.received') AS first_incoming_at,
                count(*) FILTER (WHERE e.event_type = 'message.received') AS incoming_message_count,
                count(*) FILTER (WHERE e.event_type = 'message.sent') AS outgoing_message_count,
                count(*) FILTER (WHERE e.event_type = 'message.sent' AND e.source = 'user') AS human_outgoing_message_count,
                {platform}
            FROM conv_events e GROUP BY e.conversation_id
        ),
        opened AS (
            SELECT b.*, o.opened_by_source, o.opened_by_user_id
            FROM base b JOIN ({CONVERSATION_OPENERS_SQL}) o USING (conversation_id)
        ),
        frt_start AS (
            -- An agent's own opening message answers nothing: FRT runs from the contact's first message.
            SELECT *, CASE WHEN opened_by_source = 'contact' THEN opened_at ELSE first_incoming_at END AS frt_start_at
            FROM opened
        ),
        first_response AS (
            SELECT f.conversation_id,
                min(e.occurred_at) AS first_response_at,
                arg_min(e.user_id, e.event_order) AS first_response_by_user_id
            FROM frt_start f JOIN conv_events e USING (conversation_id)
            WHERE e.event_type = 'message.sent' AND e.source = 'user' AND e.occurred_at >= f.frt_start_at
            GROUP BY f.conversation_id
        ),
        msgs AS (
            SELECT conversation_id, event_order, occurred_at, event_type,
                (event_type = 'message.sent' AND source = 'user') AS is_human_reply,
                coalesce(sum((event_type = 'message.sent' AND source = 'user')::INT) OVER (
                    PARTITION BY conversation_id ORDER BY event_order
                    ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING), 0) AS replies_before
            FROM conv_events WHERE event_type IN ('message.received', 'message.sent')
        ),
        -- Run k = incoming messages after the k-th human reply; the (k+1)-th reply answers it.
        response_times AS (
            SELECT conversation_id, replies_before,
                epoch(min(occurred_at) FILTER (WHERE is_human_reply))
                  - epoch(min(occurred_at) FILTER (WHERE event_type = 'message.received')) AS response_time_s
            FROM msgs GROUP BY conversation_id, replies_before
        ),
        responses AS (
            SELECT conversation_id, count(response_time_s) AS response_count,
                avg(response_time_s) AS average_response_time_s
            FROM response_times GROUP BY conversation_id
        ),
        previous_close AS (
            SELECT conversation_id,
                lag(closed_at) OVER (PARTITION BY contact_id ORDER BY open_order) AS previous_closed_at
            FROM base
        )
        SELECT
            f.conversation_id, f.contact_id, f.channel_id,
            CASE WHEN f.closed_at IS NULL THEN 'open' ELSE 'closed' END AS status,
            f.opened_at, f.opened_by_source, f.opened_by_user_id,
            f.closed_at, f.closed_by_source, f.closed_by_user_id, f.closed_by_team_id,
            f.category, f.summary,
            f.first_incoming_at,
            r.first_response_at, r.first_response_by_user_id,
            epoch(r.first_response_at) - epoch(f.frt_start_at) AS first_response_time_s,
            epoch(f.closed_at) - epoch(f.opened_at) AS resolution_time_s,
            {frt_bucket_sql("(epoch(r.first_response_at) - epoch(f.frt_start_at))")} AS frt_bucket,
            CAST({frt_bucket_sql("(epoch(r.first_response_at) - epoch(f.frt_start_at))", order=True)} AS INTEGER)
                AS frt_bucket_order,
            f.incoming_message_count, f.outgoing_message_count, f.human_outgoing_message_count,
            coalesce(rs.response_count, 0) AS response_count, rs.average_response_time_s,
            ca.first_assignee_id, ca.first_assigned_at, ca.assignee_at_close,
            coalesce(epoch(f.opened_at) - epoch(p.previous_closed_at) < 86400, false) AS reopened_within_24h,
            CASE WHEN f.category IS NULL OR NOT {has_list} THEN NULL
                 ELSE lower(f.category) IN (SELECT name FROM _configured_categories) END AS category_is_configured,
            {", ".join("f." + c for c in PLATFORM_FIELDS)},
            -- null when the platform gave no figure; a figure the platform has and closeconv lacks differs
            CASE WHEN f.platform_first_response_time_s IS NULL AND f.platform_resolution_time_s IS NULL
                      AND f.platform_incoming_message_count IS NULL AND f.platform_outgoing_message_count IS NULL THEN NULL
                 ELSE coalesce(abs(f.platform_first_response_time_s - (epoch(r.first_response_at) - epoch(f.frt_start_at))) > {PLATFORM_TOLERANCE_S}
                               OR (r.first_response_at IS NULL) <> (f.platform_first_response_time_s IS NULL), false)
                   OR coalesce(abs(f.platform_resolution_time_s - (epoch(f.closed_at) - epoch(f.opened_at))) > {PLATFORM_TOLERANCE_S}, false)
                   OR coalesce(f.platform_incoming_message_count <> f.incoming_message_count, false)
                   OR coalesce(f.platform_outgoing_message_count <> f.outgoing_message_count, false)
            END AS platform_metrics_differ
        FROM frt_start f
        LEFT JOIN first_response r USING (conversation_id)
        LEFT JOIN responses rs USING (conversation_id)
        LEFT JOIN previous_close p USING (conversation_id)
        LEFT JOIN ({conversation_assignees_sql("base")}) ca USING (conversation_id)
        ORDER BY f.opened_at, f.conversation_id
        """
    if contacts is None:
        con.sql(f"CREATE OR REPLACE TABLE conversations AS {query}")
    else:
        con.sql(f"DELETE FROM conversations WHERE {contacts}")
        con.sql(f"INSERT INTO conversations {over_contacts(query, contacts, ['events', 'assignments'])}")
    con.unregister("_configured_categories")


def _tz_literal(tz: str) -> str:
    ZoneInfo(tz)  # refuse anything that is not an IANA name before it reaches SQL
    return "'" + tz.replace("'", "''") + "'"


def local_day_sql(tz: str, column: str) -> str:
    """The workspace-local day of a TIMESTAMPTZ column (the days of daily_conversation_metrics)."""
    return f"CAST(timezone({_tz_literal(tz)}, {column}) AS DATE)"


def build_daily_conversation_metrics(con: duckdb.DuckDBPyConnection, tz: str, days: str | None = None) -> None:
    """Per local day (workspace timezone), category, channel and closed-by source.

    Closed-conversation metrics are by close day; `conversations_opened` is by open day
    (reports count opened conversations by open time), so a row can have one without the other.
    With `days` (a table of local days, column `day`), replace only those days' rows.
    """
    tzl = _tz_literal(tz)
    close_day, open_day = local_day_sql(tz, "closed_at"), local_day_sql(tz, "opened_at")
    in_days = (lambda day: "true") if days is None else (lambda day: f"{day} IN (SELECT day FROM {days})")
    query = f"""
        WITH closed AS (
            SELECT {close_day} AS day, category, channel_id, closed_by_source,
                count(*) AS conversations_closed,
                count(first_response_time_s) AS conversations_answered,
                count(*) FILTER (WHERE reopened_within_24h) AS conversations_reopened_within_24h,
                avg(first_response_time_s) AS frt_avg_s,
                quantile_cont(first_response_time_s, 0.5) AS frt_median_s,
                quantile_cont(first_response_time_s, 0.9) AS frt_p90_s,
                avg(resolution_time_s) AS resolution_avg_s,
                quantile_cont(resolution_time_s, 0.5) AS resolution_median_s,
                quantile_cont(resolution_time_s, 0.9) AS resolution_p90_s
            FROM conversations WHERE status = 'closed' AND {in_days(close_day)}
            GROUP BY ALL
        ),
        opened AS (
            SELECT {open_day} AS day, category, channel_id, closed_by_source,
                count(*) AS conversations_opened
            FROM conversations WHERE {in_days(open_day)} GROUP BY ALL
        )
        SELECT coalesce(c.day, o.day) AS day, coalesce(c.category, o.category) AS category,
            coalesce(c.channel_id, o.channel_id) AS channel_id,
            coalesce(c.closed_by_source, o.closed_by_source) AS closed_by_source,
            coalesce(o.conversations_opened, 0) AS conversations_opened,
            coalesce(c.conversations_closed, 0) AS conversations_closed,
            coalesce(c.conversations_answered, 0) AS conversations_answered,
            coalesce(c.conversations_reopened_within_24h, 0) AS conversations_reopened_within_24h,
            c.frt_avg_s, c.frt_median_s, c.frt_p90_s,
            c.resolution_avg_s, c.resolution_median_s, c.resolution_p90_s,
            {tzl} AS timezone
        FROM closed c FULL OUTER JOIN opened o
          ON c.day = o.day AND c.category IS NOT DISTINCT FROM o.category
         AND c.channel_id IS NOT DISTINCT FROM o.channel_id
         AND c.closed_by_source IS NOT DISTINCT FROM o.closed_by_source
        ORDER BY day, category NULLS LAST, channel_id NULLS LAST, closed_by_source NULLS LAST
        """
    if days is None:
        con.sql(f"CREATE OR REPLACE TABLE daily_conversation_metrics AS {query}")
    else:
        con.sql(f"DELETE FROM daily_conversation_metrics WHERE day IN (SELECT day FROM {days})")
        con.sql(f"INSERT INTO daily_conversation_metrics {query}")
