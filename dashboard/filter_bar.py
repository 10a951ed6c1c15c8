"""The one filter bar of the Conversation List, Reports and Users pages.

Every widget is bound to its URL query parameter (`bind="query-params"`, the key is the public
parameter name), so opening a URL restores the view and changing a widget updates the URL. The
widget values are turned back into query parameters and parsed by the data layer, so the rules
(presets, `from`/`to` winning, hostile values) live in one place: closeconv.reports.filters.
"""

from __future__ import annotations

from datetime import date

import streamlit as st

from closeconv.reports.conversations import filter_options
from closeconv.reports.filters import EXTRA_MULTI_PARAMS, MULTI_PARAMS, PRESET_LABELS, PRESETS, Filters, parse_query_params
from dashboard.data import cached

MULTI_LABELS = {
    "category": "Category",
    "closed_by_source": "Closed by source",
    "closed_by_user": "Closed by user",
    "team": "Closed by team",
    "assignee": "Assignee at close",
    "channel": "Channel",
    "opened_source": "Opened by source",
}
DATE_FORMAT = "YYYY-MM-DD"


def _raw_params() -> dict[str, list[str]]:
    return {name: st.query_params.get_all(name) for name in st.query_params.keys()}


def _clear_dates() -> None:
    st.session_state["from"] = None
    st.session_state["to"] = None


def _clear_all() -> None:
    _clear_dates()
    st.session_state["preset"] = None
    st.session_state["q"] = ""
    for name in MULTI_PARAMS:
        st.session_state[name] = []


def render(wh) -> Filters:
    """Draw the filter bar in the sidebar; return the Filters it selects (notices shown on the page)."""
    raw = _raw_params()
    options = cached(filter_options, wh)
    bar = st.sidebar
    bar.header("Filters")
    bar.caption(f"Closed date, in {wh.timezone}")
    preset = bar.selectbox("Period", PRESETS, index=None, key="preset", bind="query-params",
                           format_func=PRESET_LABELS.get, placeholder="All time", on_change=_clear_dates)
    date_from = bar.date_input("From", value=None, key="from", bind="query-params", format=DATE_FORMAT)
    date_to = bar.date_input("To", value=None, key="to", bind="query-params", format=DATE_FORMAT)
    q = bar.text_input("Contact or conversation id", key="q", bind="query-params", placeholder="e.g. c000123")
    selected: dict[str, list[str]] = {}
    for name in MULTI_PARAMS:
        known = options.get(name, [])
        labels = {value: label for value, label in known}
        # Values from the URL that match nothing stay visible (and select nothing) instead of vanishing.
        values = [value for value, _ in known] + [v for v in raw.get(name, []) if v not in labels]
        selected[name] = bar.multiselect(MULTI_LABELS[name], values, key=name, bind="query-params",
                                         format_func=lambda v, labels=labels: labels.get(v, v),
                                         placeholder="Any")
    bar.button("Clear filters", on_click=_clear_all, icon=":material/filter_alt_off:", width="stretch")

    params: dict[str, list[str]] = {name: values for name, values in selected.items() if values}
    if isinstance(date_from, date):
        params["from"] = [date_from.isoformat()]
    if isinstance(date_to, date):
        params["to"] = [date_to.isoformat()]
    if preset:
        params["preset"] = [preset]
    if q:
        params["q"] = [q]
    for name in EXTRA_MULTI_PARAMS:  # not in the bar: set by a chart, kept from the URL
        if raw.get(name):
            params[name] = raw[name]
    filters, _ = parse_query_params(params)
    _, notices = parse_query_params(raw)
    for notice in notices:
        st.warning(notice, icon=":material/info:")
    return filters
