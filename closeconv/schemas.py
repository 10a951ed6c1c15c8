"""Pandera schemas of the published tables: the contract the asset checks enforce.

Record-level rules with human reasons live in SQL (closeconv.ingest); these schemas guard
the result, so a bug that lets a bad row through fails the run instead of reaching analysts.
"""

from __future__ import annotations

import pandera.polars as pa
import polars as pl

from closeconv.contract import ALLOWED_SOURCES, EVENT_TYPES, FRT_BUCKETS

ALL_SOURCES = sorted({s for sources in ALLOWED_SOURCES.values() for s in sources})


class EventsSchema(pa.DataFrameModel):
    event_id: str = pa.Field(unique=True, nullable=False)
    event_type: str = pa.Field(isin=list(EVENT_TYPES), nullable=False)
    occurred_at: pl.Datetime(time_unit="us", time_zone="UTC") = pa.Field(nullable=False)  # type: ignore[valid-type]
    contact_id: str = pa.Field(nullable=False, str_length={"min_value": 1})
    conversation_id: str = pa.Field(nullable=True)
    source: str = pa.Field(isin=ALL_SOURCES, nullable=False)
    event_order: int = pa.Field(unique=True, ge=1)

    @pa.dataframe_check
    def source_allowed_for_type(cls, data) -> pl.LazyFrame:
        allowed = pl.lit(False)
        for event_type, sources in ALLOWED_SOURCES.items():
            allowed = allowed | ((pl.col("event_type") == event_type) & pl.col("source").is_in(list(sources)))
        return data.lazyframe.select(allowed)

    @pa.dataframe_check
    def user_id_when_user_source(cls, data) -> pl.LazyFrame:
        needs = pl.col("event_type").is_in(["message.sent", "conversation.closed"]) & (pl.col("source") == "user")
        return data.lazyframe.select(~needs | pl.col("user_id").is_not_null())

    class Config:
        strict = False  # extra columns (channel_id, summary, …) are allowed


class ConversationsSchema(pa.DataFrameModel):
    conversation_id: str = pa.Field(unique=True, nullable=False)
    contact_id: str = pa.Field(nullable=False)
    status: str = pa.Field(isin=["open", "closed"])
    first_response_time_s: float = pa.Field(nullable=True, ge=0)
    resolution_time_s: float = pa.Field(nullable=True, ge=0)
    average_response_time_s: float = pa.Field(nullable=True, ge=0)
    frt_bucket: str = pa.Field(nullable=True, isin=[label for label, _ in FRT_BUCKETS])

    @pa.dataframe_check
    def closed_after_opened(cls, data) -> pl.LazyFrame:
        return data.lazyframe.select(pl.col("closed_at").is_null() | (pl.col("closed_at") >= pl.col("opened_at")))

    @pa.dataframe_check
    def closed_has_close_fields(cls, data) -> pl.LazyFrame:
        closed = pl.col("status") == "closed"
        return data.lazyframe.select(
            (closed & pl.col("closed_at").is_not_null() & pl.col("closed_by_source").is_not_null())
            | (~closed & pl.col("closed_at").is_null())
        )

    class Config:
        strict = False
