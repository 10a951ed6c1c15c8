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
cfg = common.config()
tz = wh.timezone
run = cached(health.last_run, wh)
now = datetime.now(timezone.utc)
fresh = health.freshness(wh, now)

st.subheader("Last run")
if run is None:
    st.caption("No run recorded in `pipeline_runs`.")
else:
    st.markdown(f"Published **{common.local_time(run.get('published_at'), tz)}** ({tz}) by run `{run.get('run_id')}`, "
                f"from {format_count(run.get('landing_files'))} landing file(s).")
    cols = st.columns(5)
    cols[0].metric("Records read", format_count(run.get("records_read")), border=True)
    cols[1].metric("Events loaded", format_count(run.get("events_loaded")), border=True)
    cols[2].metric("Duplicates dropped", format_count(run.get("duplicates_dropped")), border=True)
    cols[3].metric("Rejected", format_count(run.get("records_rejected")), border=True)
    cols[4].metric("Closed conversations", format_count(run.get("conversations_closed")), border=True)

st.subheader("Freshness")
cols = st.columns(3)
cols[0].metric("Newest event", common.local_time(fresh.newest_event_at, tz)[:16], border=True)
cols[1].metric("Newest event is", format_duration(fresh.age_s) + " old" if fresh.age_s is not None else "—",
               border=True, help="Time since the newest event in the warehouse: how far behind the data is.")
published_age = (now - fresh.published_at).total_seconds() if fresh.published_at else None
cols[2].metric("Warehouse published", format_duration(published_age) + " ago" if published_age is not None else "—",
               border=True)

st.subheader("Recent runs")
recent = cached(health.recent_runs, wh)
shown = readable(recent, tz)
st.dataframe(shown, hide_index=True, placeholder="—", column_config=column_config(shown))

st.subheader("Rejected records by reason")
rejected = cached(health.rejected_by_reason, wh)
if rejected.height == 0:
    st.success("No record was rejected.", icon=":material/check_circle:")
else:
    st.dataframe(rejected, hide_index=True, placeholder="—", column_config=column_config(rejected))
    for reason in rejected[rejected.columns[0]].to_list():
        with st.expander(f"Examples: {reason}"):
            examples = cached(health.rejected_examples, wh, reason)
            if cfg.redact_summaries and "raw_record" in examples.columns:
                # A raw record can carry a closing-note summary: hidden like the summaries themselves.
                examples = examples.drop("raw_record")
                st.caption("Raw records are hidden: summaries are redacted on this dashboard.")
            st.dataframe(readable(examples, tz), hide_index=True, placeholder="—")
