"""Blocking asset checks: a failure stops the run before the warehouse is published, so
analysts keep the previous, trusted version."""


import dagster as dg
import pandera.errors
import polars as pl

from closeconv.schemas import ConversationsSchema, EventsSchema
from pipelines.defs.resources import WarehouseResource

EVENTS_MATCH_CONTRACT = "events_match_contract"
RECORDS_ACCOUNTED_FOR = "every_record_accounted_for"
CONVERSATIONS_VALID = "conversations_valid"
CONVERSATIONS_COVER_EVENTS = "conversations_cover_events"


def _pandera_result(schema, frame: pl.DataFrame, label: str) -> dg.AssetCheckResult:
    try:
        schema.validate(frame, lazy=True)
    except pandera.errors.SchemaErrors as exc:
        failures = exc.failure_cases
        return dg.AssetCheckResult(
            passed=False,
            description=f"{label} break the schema: {failures.height} failure cases",
            metadata={"failure_cases": dg.MetadataValue.md(str(failures.head(20)))},
        )
    return dg.AssetCheckResult(passed=True, metadata={"rows": frame.height})


@dg.asset_check(asset="events", name=EVENTS_MATCH_CONTRACT, blocking=True,
                description="Unique event ids and order, allowed types and sources, user_id where required.")
def events_match_contract(warehouse: WarehouseResource) -> dg.AssetCheckResult:
    with warehouse.staging() as con:
        frame = con.sql(
            "SELECT event_id, event_type, occurred_at, contact_id, conversation_id, source, user_id, event_order FROM events"
        ).pl()
    return _pandera_result(EventsSchema, frame, "events")


@dg.asset_check(asset="rejected_events", name=RECORDS_ACCOUNTED_FOR, blocking=True,
                description="loaded + duplicates dropped + rejected = records read: nothing is lost.")
def every_record_accounted_for(warehouse: WarehouseResource) -> dg.AssetCheckResult:
    with warehouse.staging() as con:
        read, duplicates = con.sql("SELECT records_read, duplicates_dropped FROM ingest_counts").fetchall()[0]
        # Derived events (auto-closes) were read from no file: they are not records.
        loaded = con.sql("SELECT count(*) FROM events WHERE source_file IS NOT NULL").fetchall()[0][0]
        rejected = con.sql("SELECT count(*) FROM rejected_events").fetchall()[0][0]
        staged = con.sql("SELECT count(*) FROM raw_records").fetchall()[0][0]
    passed = loaded + duplicates + rejected == read == staged
    return dg.AssetCheckResult(
        passed=passed,
        description=None if passed else f"{loaded} + {duplicates} + {rejected} != {read} records read",
        metadata={"records_read": read, "loaded": loaded, "duplicates_dropped": duplicates, "rejected": rejected},
    )


@dg.asset_check(asset="conversations", name=CONVERSATIONS_VALID, blocking=True,
                description="Unique ids, closed_at ≥ opened_at, non-negative durations, valid buckets.")
def conversations_valid(warehouse: WarehouseResource) -> dg.AssetCheckResult:
    with warehouse.staging() as con:
        frame = con.sql("SELECT * FROM conversations").pl()
    return _pandera_result(ConversationsSchema, frame, "conversations")


@dg.asset_check(asset="conversations", name=CONVERSATIONS_COVER_EVENTS, blocking=True,
                description="Every event's conversation_id names a conversation, and every conversation has events.")
def conversations_cover_events(warehouse: WarehouseResource) -> dg.AssetCheckResult:
    with warehouse.staging() as con:
        dangling = con.sql(
            "SELECT count(DISTINCT e.conversation_id) FROM events e ANTI JOIN conversations c USING (conversation_id) "
            "WHERE e.conversation_id IS NOT NULL"
        ).fetchall()[0][0]
        empty = con.sql(
            "SELECT count(*) FROM conversations c ANTI JOIN events e USING (conversation_id)"
        ).fetchall()[0][0]
    return dg.AssetCheckResult(
        passed=dangling == 0 and empty == 0,
        metadata={"events_without_conversation_row": dangling, "conversations_without_events": empty},
    )
