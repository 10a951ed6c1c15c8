"""Users report: one row per user over the conversations closed in the period (spec §8)."""

from __future__ import annotations

from urllib.parse import urlencode

import streamlit as st

from closeconv.reports.filters import to_query_params
from closeconv.reports.users import USER_COLUMN_LABELS, USER_SORT_COLUMNS, users_report
from dashboard import common, filter_bar
from dashboard.data import cached
from dashboard.download_tokens import export_url
from dashboard.tables import readable

wh = common.require_data("Users")
filters = filter_bar.render(wh, "users")
today = wh.today()

top = st.columns([3, 2, 1, 2], vertical_alignment="bottom")
sort = top[1].selectbox("Sort by", USER_SORT_COLUMNS, index=USER_SORT_COLUMNS.index("closed_conversations"),
                        key="users_sort", persist_state="session", format_func=USER_COLUMN_LABELS.get)
descending = top[2].toggle("Descending", value=True, key="users_desc", persist_state="session")
report = cached(users_report, wh, filters, today, sort=sort, descending=descending)
with top[0].container(key="match_count"):
    st.markdown(f"### {report.height:,} users")
with top[3]:
    st.link_button("Download CSV", export_url("users", urlencode(to_query_params(filters), doseq=True)),
                   icon=":material/download:", disabled=report.height == 0)
st.caption("Every figure covers the conversations closed in the period and matching the filters, except "
           "Messages Sent (human messages sent in the period). "
           "A figure over nothing reads —.")
if report.height == 0:
    common.empty_state("No user closed, was assigned or sent a message in this period.")
else:
    shown = readable(report.select([c for c in USER_COLUMN_LABELS if c in report.columns]), wh.timezone)
    st.dataframe(shown, hide_index=True, column_config=USER_COLUMN_LABELS, placeholder="—",
                 height=min(38 + 35 * shown.height, 38 + 35 * 20))
