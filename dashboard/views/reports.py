"""Reports: KPI tiles against the previous period, opened vs closed per day, FRT buckets,
and conversations by category, channel and closed-by source."""

from __future__ import annotations

import polars as pl
import streamlit as st

from closeconv.reports import charts as report_charts
from closeconv.reports.filters import FRT_BUCKET_LABELS, previous_period, resolve_period, to_query_params
from closeconv.reports.format import source_label
from closeconv.reports.kpis import kpis
from dashboard import charts, common, filter_bar, kpi_tiles
from dashboard.data import cached

wh = common.require_data("Reports")
filters = filter_bar.render(wh, "reports")
today = wh.today()
period = resolve_period(filters, wh.timezone, today)
previous = previous_period(period, wh.timezone) if period else None
if period and period.first_day and period.last_day:
    caption = f"Closed {period.first_day:%Y-%m-%d} – {period.last_day:%Y-%m-%d}"
    if previous:
        caption += f" · changes against {previous.first_day:%Y-%m-%d} – {previous.last_day:%Y-%m-%d}"
else:
    caption = "All time · pick a period to compare against the one before it"
st.caption(caption)

tiles = cached(kpis, wh, filters, today)
kpi_tiles.render(tiles, has_previous=previous is not None)

closed = next((k.value for k in tiles if k.key == "closed"), None)
if not closed:
    common.empty_state("No closed conversation in this period. The charts appear once there is one.")
    st.stop()

st.subheader("Opened vs closed per day")
per_day = cached(report_charts.opened_vs_closed_per_day, wh, filters, today)
st.altair_chart(charts.opened_vs_closed(per_day), width="stretch")

left, right = st.columns(2)
with left:
    st.subheader("First response time")
    frt = cached(report_charts.frt_breakdown, wh, filters, today)
    bucket = frt.columns[0]
    clicked = st.altair_chart(charts.bars(frt, bucket, "First response", sort=list(FRT_BUCKET_LABELS), horizontal=False,
                                          pick="bucket"), width="stretch", on_select="rerun", key="frt_chart")
    st.caption("Click a bar to list its conversations.")
    picked = (clicked.selection.get("bucket") or []) if clicked else []
    if picked and picked[0].get(bucket):
        params = to_query_params(filters) | {"frt_bucket": [picked[0][bucket]]}
        st.switch_page("views/conversations.py", query_params=params)
with right:
    st.subheader("By closed-by source")
    by_source = cached(report_charts.by_closed_by_source, wh, filters, today)
    by_source = by_source.with_columns(pl.col(by_source.columns[0]).map_elements(source_label, return_dtype=pl.String))
    st.altair_chart(charts.bars(by_source, by_source.columns[0], "Closed by", value="closed"), width="stretch")

left, right = st.columns(2)
with left:
    st.subheader("By category")
    by_category = cached(report_charts.by_category, wh, filters, today)
    st.altair_chart(charts.bars(by_category, by_category.columns[0], "Category", value="closed"), width="stretch")
with right:
    st.subheader("By channel")
    by_channel = cached(report_charts.by_channel, wh, filters, today)
    st.altair_chart(charts.bars(by_channel, by_channel.columns[0], "Channel", value="closed"), width="stretch")
