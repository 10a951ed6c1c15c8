"""Workflows: runs per day by outcome, unassignment actions per day, skipped runs by reason
with examples, and the drift list (replayed unassignments the recorded data disagrees with)."""

from __future__ import annotations

import altair as alt
import streamlit as st

from closeconv.reports import workflows
from closeconv.reports.filters import PRESET_LABELS, PRESETS, Filters, resolve_period
from dashboard import common
from dashboard.data import cached
from dashboard.tables import column_config, pick, readable

DRIFT_COLUMNS = ("open", "expected_unassigned_at", "contact_id", "conversation_id", "workflow_id",
                 "replayed_from_assignee_name", "recorded_assignee_name", "recorded_assignee_since",
                 "recorded_assignee_until")

wh = common.require_data("Workflows")
preset = st.selectbox("Period", PRESETS, index=None, key="workflows_period", format_func=PRESET_LABELS.get,
                      placeholder="All time", width=260)
period = resolve_period(Filters(preset=preset), wh.timezone, wh.today())

runs = cached(workflows.runs_per_day, wh, period)
total = int(runs["runs"].sum()) if runs.height else 0
skipped_runs = int(runs.filter(runs["outcome"] == "skipped")["runs"].sum()) if runs.height else 0
with st.container(key="match_count"):
    st.markdown(f"### {total:,} workflow runs")
if total:
    st.caption(f"{total - skipped_runs:,} completed · {skipped_runs:,} skipped")
if runs.height == 0:
    common.empty_state("No workflow ran in this period. Workflows live in `workflows/*.yaml` "
                       "(`closeconv workflows new --template unassign-after-close`).")
    st.stop()

left, right = st.columns(2)
with left:
    st.subheader("Runs per day by outcome")
    st.altair_chart(
        alt.Chart(runs).mark_bar().encode(
            x=alt.X("yearmonthdate(day):O", title=None, axis=alt.Axis(format="%b %d", labelAngle=0, labelOverlap=True)),
            y=alt.Y("runs:Q", title="Runs", stack=True),
            color=alt.Color("outcome:N", title=None, legend=alt.Legend(orient="top"),
                            scale=alt.Scale(domain=["completed", "skipped"], range=["#1f5fbf", "#e0a030"])),
            tooltip=[alt.Tooltip("day:T", format="%Y-%m-%d"), "outcome:N", "runs:Q"],
        ).properties(height=260), width="stretch")
with right:
    st.subheader("Unassignment actions per day")
    actions = cached(workflows.unassign_actions_per_day, wh, period)
    st.altair_chart(
        alt.Chart(actions).mark_bar().encode(
            x=alt.X("yearmonthdate(day):O", title=None, axis=alt.Axis(format="%b %d", labelAngle=0, labelOverlap=True)),
            y=alt.Y("actions:Q", title="Unassignments", stack=True),
            color=alt.Color("workflow_id:N", title=None, legend=alt.Legend(orient="top")),
            tooltip=[alt.Tooltip("day:T", format="%Y-%m-%d"), "workflow_id:N", "actions:Q"],
        ).properties(height=260), width="stretch")

st.subheader("Skipped runs by reason")
skipped = cached(workflows.skipped_by_reason, wh, period)
if skipped.height == 0:
    st.caption("No run was skipped.")
else:
    shown = readable(skipped, wh.timezone)
    st.dataframe(shown, hide_index=True, placeholder="—", column_config=column_config(shown))

st.subheader("Drift")
drift_total = cached(workflows.drift_count, wh)
st.caption(f"{drift_total:,} replayed unassignments that the recorded assignments disagree with: "
           "the workflow should have unassigned the contact, but the data says someone stayed assigned. "
           "Open a conversation to see its timeline.")
if drift_total:
    drift = cached(workflows.drift_list, wh, limit=200)
    drift = drift.with_columns(("/?conversation=" + drift["conversation_id"]).alias("open"))
    drift = pick(drift, DRIFT_COLUMNS)
    shown = readable(drift, wh.timezone)
    config = column_config(shown)
    config["open"] = st.column_config.LinkColumn("Open", display_text="Open")
    st.dataframe(shown, hide_index=True, placeholder="—", column_config=config)
