"""The dashboard's data access: parameterized SQL over the published warehouse (DuckDB file).

No Streamlit or Dagster here: the app (dashboard/) calls these functions and caches their
results. Every filter is pushed down as a SQL parameter, counts and aggregates are computed in
SQL, lists come in LIMIT/OFFSET pages, and no connection stays open between queries (each call
opens the file read-only, runs, closes), so a pipeline run can always publish.

API (names are a contract with dashboard/):

filters.py
    PRESETS: tuple[str, ...]            today, yesterday, last_7_days, last_14_days, last_30_days,
                                        this_month, last_month
    PRESET_LABELS: dict[str, str]       preset -> "Last 7 days"
    MULTI_PARAMS: tuple[str, ...]       category, closed_by_source, closed_by_user, team, assignee,
                                        channel, opened_source (each repeatable, "any of")
    EXTRA_MULTI_PARAMS                  ("frt_bucket",): repeatable, not in the filter bar (chart drill)
    APP_PARAMS                          conversation, page, page_size, sort, desc: the app's own
                                        parameters, accepted without a notice
    FRT_BUCKET_LABELS                   the 7 bucket labels of spec §2, in order
    normalize_frt_bucket(value) -> str  "30s-2m" -> "30s–2m"
    Filters(date_from=None, date_to=None, preset=None, category=(), closed_by_source=(),
            closed_by_user=(), team=(), assignee=(), channel=(), opened_source=(), q=None,
            frt_bucket=())               frozen dataclass; Filters() = all closed conversations
    parse_query_params(params: Mapping[str, list[str] | str]) -> (Filters, list[str] notices)
                                        never raises; `from`/`to` win over `preset`
    to_query_params(f: Filters) -> dict[str, list[str]]
    Period(first_day, last_day, start_utc, end_utc_exclusive), .days
                                        local days inclusive; UTC instants [start, end); a side
                                        is None when only `to` or only `from` is given
    resolve_period(f, tz: str, today: date) -> Period | None      None = all time
    previous_period(p: Period, tz: str) -> Period | None          same number of days just before;
                                                                  None for an open-ended period
    period_of_days(first_day, last_day, tz) -> Period, preset_days(preset, today) -> (first, last)

access.py
    Warehouse(path: Path, timezone_override: str | None = None)
        .exists() -> bool, .is_empty() -> bool, .timezone -> str, .data_as_of -> datetime | None,
        .cache_key -> str, .tables -> frozenset[str], .query(sql, params=None) -> pl.DataFrame,
        .scalar(sql, params=None), .query_many([(sql, params), ...]) -> list[pl.DataFrame],
        .with_cursor(action) (dependent statements on one attachment),
        .copy_to_csv(sql, params, dest: Path) -> int, .today(now=None) -> date (local day in
        .timezone), .closed_day_range() -> (date, date) | None (first and last local close day)
    WarehouseUnavailable               raised when the file stays unreadable after retries

format.py
    format_duration(seconds) -> str    45s, 4m 10s, 2h 03m, 3d 4h; "—" for None/NaN
    format_count(n) -> str             1,234; "—" for None
    format_percent(x) -> str           87.5%; "—" for None
    source_label(source) -> str        auto_close -> "Auto-close"
    NONE_SHOWN = "—"

conversations.py
    SORT_COLUMNS = ("closed_at", "first_response_time_s", "resolution_time_s")
    count_conversations(wh, f, today) -> int
    list_conversations(wh, f, today, sort="closed_at", descending=True, limit=50, offset=0,
                       redact_summaries=False) -> pl.DataFrame
        §5 columns + *_name beside each user/team id; timestamps tz-aware in the workspace
        timezone; durations raw seconds (*_s); nulls last; ties by the row's stored position
    export_conversations_csv(wh, f, today, dest: Path, redact_summaries=False) -> int (rows)
        same columns plus opened_at_local / closed_at_local / timezone; durations in seconds
    conversation_detail(wh, conversation_id) -> ConversationDetail | None
        .header: dict (list columns + status), .timeline: pl.DataFrame (occurred_at, position,
        kind, source, user_id, user_name, assignee_id, assignee_name, category, summary, event_id,
        workflow_id, channel_id; kind "assignment by workflow" for replayed changes),
        .workflow_runs: pl.DataFrame, .workflow_actions: pl.DataFrame, .frt: FrtExplanation
    FrtExplanation(start_at, start_event_id, start_reason, stop_at, stop_event_id, stop_user, text)
    filter_options(wh) -> dict[str, list[tuple[value, label]]]   one entry per MULTI_PARAMS name
    frt_bucket_options() -> list[tuple[value, label]]

kpis.py
    Kpi(key, label, value: float | None, previous: float | None, kind: "count"|"duration"|"percent"), .delta
    KPI_KEYS = closed, opened, frt_avg_s, frt_median_s, frt_p90_s, resolution_avg_s,
               resolution_median_s, resolution_p90_s, answered_pct, reopened_within_24h
    kpis(wh, f, today) -> list[Kpi]

charts.py
    opened_vs_closed_per_day(wh, f, today) -> pl.DataFrame   day, opened, closed
    frt_breakdown(wh, f, today) -> pl.DataFrame              bucket, conversations, share (7 rows, in order)
    by_category / by_channel / by_closed_by_source(wh, f, today) -> pl.DataFrame
        <key column>, closed, answered_pct, frt_avg_s, frt_median_s, resolution_avg_s,
        resolution_median_s, label

users.py
    USER_SORT_COLUMNS = name, assigned_conversations, closed_conversations, unique_contacts_closed,
                        messages_sent, frt_avg_s, frt_median_s, resolution_avg_s, resolution_max_s
    users_report(wh, f, today, sort="closed_conversations", descending=True) -> pl.DataFrame
    export_users_csv(wh, f, today, dest: Path, sort=..., descending=...) -> int
    USER_COLUMN_LABELS: dict column -> header ("Assigned Conversations", ...)

workflows.py
    runs_per_day(wh, period=None), unassign_actions_per_day(wh, period=None),
    skipped_by_reason(wh, period=None, examples=3), drift_list(wh, limit=200, offset=0),
    drift_count(wh); days are local days of the workspace timezone

health.py
    last_run(wh) -> dict | None, recent_runs(wh, limit=10) -> pl.DataFrame,
    freshness(wh, now: datetime) -> Freshness(newest_event_at, age_s, published_at),
    rejected_by_reason(wh) -> pl.DataFrame (reason_code, records, files, example_reason),
    rejected_examples(wh, reason_code=None, limit=5) -> pl.DataFrame (file, line, reason_code,
    reason, raw_record, event_id)

where.py (filter -> SQL) documents what each filter matches: the date range is on closed_at in
the workspace timezone; `assignee` is assignee_at_close; `team` is closed_by_team_id; `q` is a
contact id or conversation id, exactly; category is case-insensitive.
"""
