"""The one filter bar of the Conversation List, Reports and Users pages.

Each widget's key is its public URL parameter. Opening a URL restores the view: the URL seeds
the bar the first time a session meets it. Changing a widget updates the URL: every run writes
the bar's values back with `st.query_params` (values, not labels: `closed_by_user=u_lucas`,
`preset=last_7_days`). The bar's state is kept for the session, so it follows the manager from
page to page (a page switch starts the new page with a bare URL and fresh widgets).
The widget values are parsed by the data layer, so the rules (presets, `from`/`to` winning,
hostile values) live in one place: closeconv.reports.filters.
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
BAR_PARAMS = ("preset", "from", "to", "q", *MULTI_PARAMS)
STATE = "filter_bar_params"  # the bar's query parameters for this session
PAGE = "filter_bar_page"  # the page the bar was last drawn on
DATE_FORMAT = "YYYY-MM-DD"


def _raw_params() -> dict[str, list[str]]:
    return {name: st.query_params.get_all(name) for name in st.query_params.keys()}


def _widget_value(name: str, values: list[str]):
    """A widget value from URL values (invalid ones dropped: the parser's notice says so)."""
    values = [v.strip() for v in values if v.strip()]
    if name in MULTI_PARAMS:
        return list(dict.fromkeys(values))
    if not values:
        return "" if name == "q" else None
    last = values[-1]
    if name == "preset":
        return last if last in PRESETS else None
    if name in ("from", "to"):
        try:
            return date.fromisoformat(last)
        except ValueError:
            return None
    return last


def _url_values(name: str, value) -> list[str]:
    if value is None or value == "" or value == []:
        return []
    if isinstance(value, list):
        return [str(v) for v in value]
    return [value.isoformat() if isinstance(value, date) else str(value)]


def _restore(page: str, raw: dict[str, list[str]]) -> None:
    """Before drawing: the session's first run takes the URL; a page switch takes the session's state."""
    if STATE not in st.session_state:
        st.session_state[STATE] = {name: raw[name] for name in BAR_PARAMS if name in raw}
    elif st.session_state.get(PAGE) == page:
        return  # same page: the widgets hold the truth
    saved = st.session_state[STATE]
    for name in BAR_PARAMS:
        st.session_state[name] = _widget_value(name, saved.get(name, []))
    st.session_state[PAGE] = page


def _save_and_mirror(values: dict[str, object]) -> dict[str, list[str]]:
    params = {name: _url_values(name, value) for name, value in values.items()}
    params = {name: v for name, v in params.items() if v}
    st.session_state[STATE] = params
    for name in BAR_PARAMS:
        if params.get(name):
            if st.query_params.get_all(name) != params[name]:
                st.query_params[name] = params[name]
        elif name in st.query_params:
            del st.query_params[name]
    return params


def _clear_dates() -> None:
    st.session_state["from"] = None
    st.session_state["to"] = None


def _clear_all() -> None:
    _clear_dates()
    st.session_state["preset"] = None
    st.session_state["q"] = ""
    for name in MULTI_PARAMS:
        st.session_state[name] = []


def period_picker(where) -> str | None:
    return where.selectbox("Period", PRESETS, index=None, key="preset", format_func=PRESET_LABELS.get,
                           placeholder="All time", on_change=_clear_dates)


def render(wh, page: str) -> Filters:
    """Draw the filter bar in the sidebar; return the Filters it selects (notices shown on the page)."""
    raw = _raw_params()
    _restore(page, raw)
    options = cached(filter_options, wh)
    bar = st.sidebar
    bar.header("Filters")
    bar.caption(f"Closed date, in {wh.timezone}")
    values: dict[str, object] = {"preset": period_picker(bar)}
    values["from"] = bar.date_input("From", value=None, key="from", format=DATE_FORMAT)
    values["to"] = bar.date_input("To", value=None, key="to", format=DATE_FORMAT)
    values["q"] = bar.text_input("Contact or conversation id", key="q", placeholder="e.g. c_000123")
    for name in MULTI_PARAMS:
        known = options.get(name, [])
        labels = {value: label for value, label in known}
        # Values from the URL that match nothing stay visible (and select nothing) instead of vanishing.
        choices = [value for value, _ in known] + [v for v in st.session_state.get(name) or [] if v not in labels]
        values[name] = bar.multiselect(MULTI_LABELS[name], choices, key=name, placeholder="Any",
                                       format_func=lambda v, labels=labels: labels.get(v, v))
    bar.button("Clear filters", on_click=_clear_all, icon=":material/filter_alt_off:", width="stretch")
    params = _save_and_mirror(values)
    for name in EXTRA_MULTI_PARAMS:  # not in the bar: set by a chart, kept from the URL
        if raw.get(name):
            params[name] = raw[name]

    filters, _ = parse_query_params(params)
    if filters.frt_bucket:
        note, clear = st.columns([5, 1], vertical_alignment="center")
        note.info(f"Only first response times in {', '.join(filters.frt_bucket)} (picked on the Reports chart).",
                  icon=":material/timer:")
        clear.button("Show all", on_click=lambda: st.query_params.pop("frt_bucket", None))
    _, notices = parse_query_params(raw)
    for notice in notices:
        st.warning(notice, icon=":material/info:")
    return filters
