"""The served app: the Streamlit pages plus the CSV download routes, in one ASGI server.

`closeconv dashboard` runs `python -m streamlit run dashboard/server.py`; Streamlit finds `app`.
"""

import streamlit as st

from dashboard.exports import ROUTES

app = st.App("app.py", routes=ROUTES)
