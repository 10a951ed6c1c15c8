"""The asset graph: landing files → events / rejected_events → workflow replay → conversations →
daily metrics → the published warehouse.

Assets keep their data in the pipeline's private staging DuckDB (no IO manager: each step
reads and writes tables in place), and only `warehouse` touches the file analysts open.
"""


import time

import dagster as dg

from closeconv.backfill import backfill_days, mark_backfill
from closeconv.config import ConfigError
from closeconv.ingest import forget_staging_caches, stage_landing_files
from closeconv.landing_archive import archive_processed_files
from closeconv.pipeline import (
    build_conversation_tables,
    build_events,
    build_workflow_tables,
)
from closeconv.progress import report
from closeconv.warehouse import ShrinkRefused, publish
from pipelines.defs.checks import require_every_check_declared, run_checks, specs_for
from pipelines.defs.policies import FRESHNESS_POLICY
from pipelines.defs.resources import (
    LandingResource,
    ReferenceDataResource,
    WarehouseResource,
    WorkflowsResource,
    settings_of,
)

INGEST, WORKFLOWS, METRICS, PUBLISH = "ingest", "workflows", "metrics", "publish"

# The tables each building step writes; each step runs the blocking checks of its tables.
EVENT_TABLES = ("events", "rejected_events")
WORKFLOW_TABLES = ("workflow_runs", "workflow_actions", "assignments", "workflow_drift")
USER_ACTIVITY_TABLES = ("conversation_assignees", "user_messages_15min", "user_closes")
CONVERSATION_TABLES = ("conversations", "daily_conversation_metrics", *USER_ACTIVITY_TABLES)


class StagingConfig(dg.Config):
    """Run config of `landing_files`; `closeconv run --full-refresh` sets it (docs/operations.md)."""

    full_refresh: bool = False  # forget every cached parse and validation: read every file again
    # `closeconv run --backfill-from/--backfill-to`: recompute every contact with an event on these
    # local days (inclusive, YYYY-MM-DD; closeconv/backfill.py)
    backfill_from: str | None = None
    backfill_to: str | None = None


@dg.asset(
    group_name=INGEST,
    freshness_policy=FRESHNESS_POLICY,
    kinds={"duckdb"},
    description="Every record of every event file in the landing folder, parsed once per file version.",
)
def landing_files(
    context: dg.AssetExecutionContext,
    config: StagingConfig,
    warehouse: WarehouseResource,
    landing: LandingResource,
    workflows: WorkflowsResource,
    reference: ReferenceDataResource,
) -> dg.MaterializeResult:
    started = time.perf_counter()
    try:
        # Every configuration problem before any work; in the UI it reads as its message.
        settings_of(warehouse, landing, workflows, reference).check()
        backfill = backfill_days(config.backfill_from, config.backfill_to)
    except ConfigError as exc:
        raise dg.Failure(description=f"configuration error: {exc}", allow_retries=False) from None
    with warehouse.staging() as con:
        if config.full_refresh:
            forget_staging_caches(con)
        stats = stage_landing_files(con, landing.folder(), landing.archive_folder())
        backfilled = None if backfill is None else mark_backfill(con, backfill, warehouse.timezone)
    ignored = ""
    if stats.files_ignored:
        shown = ", ".join(stats.files_ignored[:5]) + (" …" if len(stats.files_ignored) > 5 else "")
        ignored = (f"; ignored {len(stats.files_ignored)} files of unknown format ({shown}): "
                   "use .jsonl, .ndjson, .jsonl.gz, .csv, .csv.gz or .parquet")
    report(
        context,
        f"landing_files: {stats.files_total} files ({stats.files_parsed} new or changed), "
        f"{stats.records_read:,} records{ignored}"
        + ("" if backfill is None else f"; backfill {backfill[0]} to {backfill[1]}: {backfilled:,} contacts"),
        started,
    )
    return dg.MaterializeResult(
        metadata={
            "files": stats.files_total,
            "files_parsed": stats.files_parsed,
            "files_unknown_type": len(stats.files_ignored),
            "files_ignored": dg.MetadataValue.json(stats.files_ignored),
            "records_read": stats.records_read,
        }
    )


@dg.multi_asset(
    specs=[
        dg.AssetSpec("events", deps=["landing_files"], group_name=INGEST, kinds={"duckdb"},
                     freshness_policy=FRESHNESS_POLICY,
                     description="Validated, deduplicated, sessionized events (spec §3–§4)."),
        dg.AssetSpec("rejected_events", deps=["landing_files"], group_name=INGEST, kinds={"duckdb"},
                     freshness_policy=FRESHNESS_POLICY,
                     description="Quarantined records with file, line, raw record and reason."),
    ],
    check_specs=specs_for(EVENT_TABLES),
)
def events_and_rejections(context: dg.AssetExecutionContext, warehouse: WarehouseResource):
    started = time.perf_counter()
    with warehouse.staging() as con:
        counts = build_events(con, auto_close_hours=warehouse.auto_close())
        reasons = ", ".join(f"{k} {v:,}" for k, v in counts.rejected_by_reason.items()) or "none"
        report(
            context,
            f"events: {counts.records_read:,} read → {counts.events_loaded:,} loaded, "
            f"{counts.duplicates_dropped:,} duplicates dropped, {counts.rejected:,} rejected ({reasons}), "
            f"{sum(counts.conversation_id_conflicts.values()):,} conversation id conflicts"
            + (f", {counts.auto_closes:,} auto-closes derived" if counts.auto_closes else "")
            + ("; every contact recomputed" if counts.contacts_recomputed is None
               else f"; {counts.contacts_recomputed:,} contacts recomputed"),
            started,
        )
        checked = run_checks(con, EVENT_TABLES)
    yield dg.MaterializeResult(
        asset_key="events",
        metadata={
            "records_read": counts.records_read,
            "events_loaded": counts.events_loaded,
            "duplicates_dropped": counts.duplicates_dropped,
            "contacts_recomputed": "all" if counts.contacts_recomputed is None else counts.contacts_recomputed,
            "dagster/row_count": counts.events_loaded,
            "conversation_id_conflicts": dg.MetadataValue.json(counts.conversation_id_conflicts),
        },
    )
    yield dg.MaterializeResult(
        asset_key="rejected_events",
        metadata={
            "rejected": counts.rejected,
            "rejected_by_reason": dg.MetadataValue.json(counts.rejected_by_reason),
            "dagster/row_count": counts.rejected,
        },
    )
    yield from checked


@dg.multi_asset(
    specs=[
        dg.AssetSpec(name, deps=["events"], group_name=WORKFLOWS, kinds={"duckdb"},
                     freshness_policy=FRESHNESS_POLICY)
        for name in WORKFLOW_TABLES
    ],
    description="Replay workflows/*.yaml over the events: runs, actions, the merged assignment timeline, drift.",
    check_specs=specs_for(WORKFLOW_TABLES),
)
def replay_workflows(
    context: dg.AssetExecutionContext,
    warehouse: WarehouseResource,
    workflows: WorkflowsResource,
    reference: ReferenceDataResource,
):
    started = time.perf_counter()
    with warehouse.staging() as con:
        counts = build_workflow_tables(con, workflows.folder(), reference.folder())
        report(
            context,
            f"workflows: {counts['workflows']} enabled, {counts['workflow_runs']:,} runs, "
            f"{counts['workflow_actions']:,} actions, {counts['drifted_contacts']:,} drifted contacts"
            + ("" if counts["replayed_contacts"] is None else f" ({counts['replayed_contacts']:,} contacts replayed)"),
            started,
        )
        checked = run_checks(con, WORKFLOW_TABLES)
    for name in WORKFLOW_TABLES:
        yield dg.MaterializeResult(asset_key=name, metadata={"dagster/row_count": counts[name]})
    yield from checked


@dg.multi_asset(
    specs=[
        dg.AssetSpec("conversations", deps=["events", "assignments"], group_name=METRICS, kinds={"duckdb"},
                     freshness_policy=FRESHNESS_POLICY,
                     description="One row per conversation with first-response and resolution metrics (spec §5)."),
        dg.AssetSpec("daily_conversation_metrics", deps=["conversations"], group_name=METRICS, kinds={"duckdb"},
                     freshness_policy=FRESHNESS_POLICY,
                     description="Per local day, category, channel and closed-by source: counts, avg/median/p90."),
        dg.AssetSpec("conversation_assignees", deps=["conversations", "assignments"], group_name=METRICS,
                     kinds={"duckdb"}, freshness_policy=FRESHNESS_POLICY,
                     description="Per closed conversation, every user assigned at some moment between open and close."),
        dg.AssetSpec("user_messages_15min", deps=["events"], group_name=METRICS, kinds={"duckdb"},
                     freshness_policy=FRESHNESS_POLICY,
                     description="Messages sent by each user per 15-minute UTC slot (exact for any local day)."),
        dg.AssetSpec("user_closes", deps=["conversations"], group_name=METRICS, kinds={"duckdb"},
                     freshness_policy=FRESHNESS_POLICY,
                     description="Each close by a user, with that user's previous close of the same contact."),
    ],
    check_specs=specs_for(CONVERSATION_TABLES),
)
def conversation_metrics(context: dg.AssetExecutionContext, warehouse: WarehouseResource, reference: ReferenceDataResource):
    started = time.perf_counter()
    with warehouse.staging() as con:
        by_status = build_conversation_tables(con, warehouse.timezone, reference.folder())
        days = con.sql("SELECT count(DISTINCT day) FROM daily_conversation_metrics").fetchall()[0][0]
        user_activity = {t: con.sql(f"SELECT count(*) FROM {t}").fetchall()[0][0] for t in USER_ACTIVITY_TABLES}
        report(
            context,
            f"conversations: {by_status.get('closed', 0):,} closed, {by_status.get('open', 0):,} open; "
            f"daily metrics over {days} days ({warehouse.timezone})",
            started,
        )
        checked = run_checks(con, CONVERSATION_TABLES)
    yield dg.MaterializeResult(
        asset_key="conversations",
        metadata={"closed": by_status.get("closed", 0), "open": by_status.get("open", 0),
                  "dagster/row_count": sum(by_status.values())},
    )
    yield dg.MaterializeResult(asset_key="daily_conversation_metrics", metadata={"days": days})
    for name, rows in user_activity.items():
        yield dg.MaterializeResult(asset_key=name, metadata={"dagster/row_count": rows})
    yield from checked


@dg.asset(
    group_name=PUBLISH,
    deps=["events", "rejected_events", "conversations", "daily_conversation_metrics", *USER_ACTIVITY_TABLES,
          *WORKFLOW_TABLES],
    freshness_policy=FRESHNESS_POLICY,
    kinds={"duckdb"},
    description="The analyst-facing DuckDB file, swapped in atomically so readers never block a run.",
)
def warehouse_file(context: dg.AssetExecutionContext, warehouse: WarehouseResource, landing: LandingResource) -> dg.MaterializeResult:
    started = time.perf_counter()
    archived: list[str] = []
    try:
        with warehouse.staging() as con:
            counts = publish(con, warehouse.settings(), context.run.run_id, allow_shrink=warehouse.allow_shrink)
            # Only after the publish: a failed run leaves every file where it was.
            if landing.archive_folder() is not None:
                archived = archive_processed_files(con, landing.folder(), landing.archive_folder())
    except ShrinkRefused as exc:
        raise dg.Failure(description=str(exc), allow_retries=False) from None
    moved = f"; moved {len(archived)} processed files to {landing.archive_path}" if archived else ""
    report(context, f"warehouse: published {warehouse.path}{moved}", started)
    return dg.MaterializeResult(metadata={"path": warehouse.path, "files_archived": len(archived),
                                          **{f"rows.{k}": v for k, v in counts.items()}})


require_every_check_declared([events_and_rejections, replay_workflows, conversation_metrics])
