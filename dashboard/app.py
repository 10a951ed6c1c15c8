"""closeconv dashboard: the Conversation List and the reports, on the published warehouse.

Served by `closeconv dashboard` (through dashboard/server.py, which adds the CSV routes).
"""

import time

import streamlit as st

from closeconv.reports.access import WarehouseUnavailable
from dashboard import sign_in
from dashboard.config import DASHBOARD_DIR, DashboardConfig

AUTO_RETRIES, AUTO_RETRY_DELAY_S = 5, 2.0

st.set_page_config(page_title="closeconv", page_icon=":material/forum:", layout="wide")
# Less empty space above the page title than Streamlit's default.
st.html("<style>[data-testid='stMainBlockContainer']{padding-top:2.5rem}</style>")
cfg = DashboardConfig.from_env()
views = DASHBOARD_DIR / "views"
pages = [
    st.Page(views / "conversations.py", title="Conversation List", icon=":material/forum:", default=True),
    st.Page(views / "reports.py", title="Reports", icon=":material/insights:", url_path="reports"),
    st.Page(views / "users.py", title="Users", icon=":material/group:", url_path="users"),
    st.Page(views / "workflows.py", title="Workflows", icon=":material/account_tree:", url_path="workflows"),
    st.Page(views / "health.py", title="Pipeline health", icon=":material/monitor_heart:", url_path="health"),
]
signed_in = sign_in.is_signed_in(cfg)
page = st.navigation(pages, position="top" if signed_in else "hidden")
if not signed_in:
    sign_in.sign_in_page(cfg)
sign_in.sign_out_button(cfg)
try:
    page.run()
    st.session_state["unavailable_retries"] = 0
except WarehouseUnavailable as exc:  # the file stayed unreadable through the data layer's retries
    retries = st.session_state.get("unavailable_retries", 0)
    st.warning(f"The warehouse could not be read just now ({exc}). A pipeline run may be publishing a new one.",
               icon=":material/sync:")
    if retries < AUTO_RETRIES:
        st.session_state["unavailable_retries"] = retries + 1
        time.sleep(AUTO_RETRY_DELAY_S)
        st.rerun()
    st.button("Try again", type="primary")
