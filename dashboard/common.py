"""What every page shares: the warehouse, the "data as of" line and the empty states."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import streamlit as st

from closeconv.reports.access import Warehouse, WarehouseUnavailable
from dashboard.config import DashboardConfig


def config() -> DashboardConfig:
    return DashboardConfig.from_env()


def open_warehouse() -> Warehouse:
    cfg = config()
    return Warehouse(cfg.warehouse_path, timezone_override=cfg.timezone_override)


def page_header(title: str, wh: Warehouse) -> None:
    """The page title and, on every page, how fresh the data is."""
    st.title(title)
    as_of = wh.data_as_of
    if as_of is not None:
        local = as_of.astimezone(ZoneInfo(wh.timezone))
        st.caption(f"Data as of {local:%Y-%m-%d %H:%M} {wh.timezone} · warehouse `{wh.path.name}`",
                   help="When the pipeline last published the warehouse. New data shows up within a minute.")


def require_data(title: str) -> Warehouse:
    """The warehouse, or a page that says how to build one (and stop)."""
    wh = open_warehouse()
    try:
        empty = wh.is_empty()
    except WarehouseUnavailable:
        empty = True
    if not empty:
        page_header(title, wh)
        return wh
    st.title(title)
    what = "There is no warehouse" if not wh.exists() else "The warehouse holds no conversations yet"
    st.info(
        f"**{what}** at `{wh.path}`.\n\n"
        "Build one, then reload this page:\n\n"
        "- with sample data: `python3 dev.py demo` (or `.venv/bin/closeconv demo --no-serve`)\n"
        "- from your own event files in `data/landing/`: `.venv/bin/closeconv run`\n\n"
        "Serve another file with `closeconv dashboard --warehouse FILE`.",
        icon=":material/database:",
    )
    st.stop()


def empty_state(message: str) -> None:
    st.info(message, icon=":material/filter_alt_off:")


def local_time(ts: datetime | None, tz: str) -> str:
    if ts is None:
        return "—"
    return ts.astimezone(ZoneInfo(tz)).strftime("%Y-%m-%d %H:%M:%S")
