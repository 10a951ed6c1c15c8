"""Pipeline health: the last run, data freshness, and rejected records by reason with examples."""

from __future__ import annotations

from datetime import datetime, timezone

import streamlit as st

from closeconv.reports import health
from closeconv.reports.format import format_count, format_duration
from dashboard import common
from dashboard.data import cached
from dashboard.tables import column_config, readable

wh = common.require_data("Pipeline health")
tz = wh.timezone
run = cached(health.last_run, wh)
fresh = health.freshness(wh, datetime.now(timezone.utc))

st.subheader("Last run")
if run is None:
    st.caption("No run recorded in `pipeline_runs`.")
else:
    cols = st.columns(5)
    cols[0].metric("Published", common.local_time(run.get("published_at"), tz)[:16])
    cols[1].metric("Duration", format_duration(run.get("duration_s")))
    cols[2].metric("Events loaded", format_count(run.get("events_loaded")))
    cols[3].metric("Rejected", format_count(run.get("records_rejected")))
    cols[4].metric("Closed conversations", format_count(run.get("conversations_closed")))

st.subheader("Freshness")
cols = st.columns(3)
cols[0].metric("Newest event", common.local_time(getattr(fresh, "newest_event_at", None), tz)[:16])
age = getattr(fresh, "age_s", None)
cols[1].metric("Newest event age", format_duration(age))
cols[2].metric("Warehouse age", format_duration(getattr(fresh, "published_age_s", None)))

st.subheader("Recent runs")
recent = cached(health.recent_runs, wh)
shown = readable(recent, tz)
st.dataframe(shown, hide_index=True, column_config=column_config(shown))

st.subheader("Rejected records by reason")
rejected = cached(health.rejected_by_reason, wh)
if rejected.height == 0:
    st.success("No record was rejected.", icon=":material/check_circle:")
else:
    st.dataframe(rejected, hide_index=True, column_config=column_config(rejected))
    for reason in rejected[rejected.columns[0]].to_list():
        with st.expander(f"Examples: {reason}"):
            examples = cached(health.rejected_examples, wh, reason)
            st.dataframe(readable(examples, tz), hide_index=True)
