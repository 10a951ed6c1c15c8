"""One conversation, opened from a table row or the `conversation` URL parameter: its header,
why its first response time is what it is, its event timeline, and the workflow runs and
actions its close caused."""

from __future__ import annotations

import polars as pl
import streamlit as st

from closeconv.reports.conversations import conversation_detail
from closeconv.reports.format import format_duration, source_label
from dashboard.data import cached
from dashboard.tables import TIMELINE_COLUMNS, column_config, pick, readable

REDACTED = "(hidden: summaries are redacted on this dashboard)"


def _close() -> None:
    st.query_params.pop("conversation", None)
    # A fresh table key clears the row selection, so picking the same row again reopens it.
    st.session_state["selection_nonce"] = st.session_state.get("selection_nonce", 0) + 1


def _redact(frame: pl.DataFrame) -> pl.DataFrame:
    if "summary" not in frame.columns:
        return frame
    return frame.with_columns(pl.when(pl.col("summary").is_not_null()).then(pl.lit(REDACTED))
                              .otherwise(None).alias("summary"))


def show(wh, conversation_id: str, redact_summaries: bool) -> None:
    _dialog(wh, conversation_id, redact_summaries)


@st.dialog("Conversation", width="large", on_dismiss=_close)
def _dialog(wh, conversation_id: str, redact_summaries: bool) -> None:
    detail = cached(conversation_detail, wh, conversation_id)
    if detail is None:
        st.warning(f"No conversation with id `{conversation_id}` in this warehouse.")
        return
    h = detail.header
    tz = wh.timezone
    st.subheader(f"`{conversation_id}` · contact `{h.get('contact_id')}`")
    cols = st.columns(4)
    cols[0].metric("Status", str(h.get("status", "—")).capitalize())
    cols[1].metric("First response", format_duration(h.get("first_response_time_s")))
    cols[2].metric("Resolution", format_duration(h.get("resolution_time_s")))
    closed_by = h.get("closed_by_user_name") or (source_label(h["closed_by_source"]) if h.get("closed_by_source") else "—")
    cols[3].metric("Closed by", closed_by, help=f"Source: {source_label(h.get('closed_by_source'))}")
    summary = h.get("summary")
    if redact_summaries and summary:
        summary = REDACTED
    st.markdown(f"**Category:** {h.get('category') or '—'}  \n**Summary:** {summary or '—'}")
    st.markdown("#### Why this first response time")
    st.info(detail.frt.text, icon=":material/timer:")
    st.markdown("#### Timeline")
    timeline = detail.timeline
    if redact_summaries:
        timeline = _redact(timeline)
    shown = readable(pick(timeline, TIMELINE_COLUMNS), tz)
    st.dataframe(shown, hide_index=True, placeholder="—", column_config=column_config(shown))
    st.markdown("#### Workflow runs caused by its close")
    if detail.workflow_runs.height == 0:
        st.caption("No workflow ran on this conversation.")
    else:
        shown = readable(detail.workflow_runs, tz)
        st.dataframe(shown, hide_index=True, placeholder="—", column_config=column_config(shown))
    if detail.workflow_actions.height:
        st.markdown("#### Workflow actions")
        shown = readable(detail.workflow_actions, tz)
        st.dataframe(shown, hide_index=True, placeholder="—", column_config=column_config(shown))
