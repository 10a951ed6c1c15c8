"""Conversation List: match count, paginated sortable table, CSV export, drill-down."""

from __future__ import annotations

import math
from urllib.parse import urlencode

import streamlit as st

from closeconv.reports.conversations import count_conversations, list_conversations
from closeconv.reports.filters import to_query_params
from dashboard import common, drilldown, filter_bar
from dashboard.data import cached
from dashboard.download_tokens import export_url
from dashboard.tables import LIST_COLUMNS, column_config, pick, readable, with_closed_by

# Labels are the options: a bound widget puts its option text in the URL (`sort=Resolution time`).
SORT_BY_LABEL = {"Close time": "closed_at", "First response time": "first_response_time_s",
                 "Resolution time": "resolution_time_s"}
PAGE_SIZES = (25, 50, 100, 250)

wh = common.require_data("Conversation List")
cfg = common.config()
filters = filter_bar.render(wh, "list")
today = wh.today()

# A changed filter starts again at page 1 (a URL's own page is kept on the first run).
signature = repr(filters)
if st.session_state.get("list_signature", signature) != signature:
    st.session_state["page"] = 1
st.session_state["list_signature"] = signature

total = cached(count_conversations, wh, filters, today)
with st.container(key="match_count"):
    st.markdown(f"### {total:,} conversations")

controls = st.columns([2, 1, 1, 2], vertical_alignment="bottom")
sort = SORT_BY_LABEL[controls[0].selectbox("Sort by", list(SORT_BY_LABEL), key="sort", bind="query-params")]
descending = controls[1].toggle("Descending", value=True, key="desc", bind="query-params",
                                help="Newest / longest first")
page_size = controls[2].selectbox("Rows per page", PAGE_SIZES, key="page_size", bind="query-params")
query = urlencode(to_query_params(filters), doseq=True)
with controls[3]:
    st.link_button("Download CSV", export_url("conversations", query), icon=":material/download:",
                   help=f"All {total:,} matching conversations as one CSV file", disabled=total == 0)

if total == 0:
    common.empty_state("No closed conversation matches these filters. Widen the period or clear a filter.")
else:
    pages = max(1, math.ceil(total / page_size))
    table_slot = st.container()
    footer = st.columns([3, 2], vertical_alignment="center")
    with footer[0]:
        page = st.pagination(pages, key="page", bind="query-params")
    page = min(max(int(page or 1), 1), pages)
    rows = cached(list_conversations, wh, filters, today, sort=sort, descending=descending, limit=page_size,
                  offset=(page - 1) * page_size, redact_summaries=cfg.redact_summaries)
    ids = rows["conversation_id"].to_list()
    table_key = f"table-{signature}-{page}-{page_size}-{sort}-{descending}-{st.session_state.get('selection_nonce', 0)}"

    def open_selected() -> None:
        picked = st.session_state[table_key].selection.rows
        if picked:
            st.query_params["conversation"] = ids[picked[0]]

    shown = readable(pick(with_closed_by(rows), LIST_COLUMNS), wh.timezone)
    with table_slot:
        st.dataframe(shown, hide_index=True, placeholder="—", column_config=column_config(shown), on_select=open_selected,
                     selection_mode="single-row", key=table_key, height=min(38 + 35 * len(ids), 38 + 35 * 15))
    first = (page - 1) * page_size + 1
    footer[1].caption(f"Rows {first:,}–{first + len(ids) - 1:,} of {total:,} · select a row to open it")

conversation_id = st.query_params.get("conversation")
if conversation_id:
    drilldown.show(wh, conversation_id, cfg.redact_summaries)
