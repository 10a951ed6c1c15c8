"""KPI tiles: `st.metric` with the change against the previous period; "—" when there is no data."""

from __future__ import annotations

import streamlit as st

from closeconv.reports.format import NONE_SHOWN, format_count, format_duration, format_percent

# Lower is better for these: a rise shows red.
LOWER_IS_BETTER_KINDS = {"duration"}
LOWER_IS_BETTER_KEYS = {"reopened_within_24h"}


# Short tile labels (the full definition is the tile's help).
SHORT_LABELS = {
    "closed": "Closed", "opened": "Opened", "frt_avg_s": "FRT · average", "frt_median_s": "FRT · median",
    "frt_p90_s": "FRT · p90", "resolution_avg_s": "Resolution · average", "resolution_median_s": "Resolution · median",
    "resolution_p90_s": "Resolution · p90", "answered_pct": "Answered", "reopened_within_24h": "Reopened < 24 h",
}


def _format(kind: str, value: float | None) -> str:
    if value is None:
        return NONE_SHOWN
    if kind == "duration":
        return format_duration(value)
    if kind == "percent":
        return format_percent(value)
    return format_count(value)


def _delta(kind: str, value: float | None, previous: float | None) -> str | None:
    if value is None or previous is None:
        return None
    change = value - previous
    if kind == "duration":
        return ("+" if change >= 0 else "-") + format_duration(abs(change))
    if kind == "percent":
        # format_percent takes a fraction or a percentage as the data layer does; show points.
        return ("+" if change >= 0 else "-") + format_percent(abs(change)).replace("%", " pts")
    return f"{change:+,.0f}"


def render(kpis, columns: int = 5, has_previous: bool = True) -> None:
    for start in range(0, len(kpis), columns):
        row = st.columns(columns)
        for col, k in zip(row, kpis[start:start + columns]):
            lower_better = k.kind in LOWER_IS_BETTER_KINDS or k.key in LOWER_IS_BETTER_KEYS
            col.metric(SHORT_LABELS.get(k.key, k.label), _format(k.kind, k.value), delta=_delta(k.kind, k.value, k.previous),
                       delta_color="inverse" if lower_better else "normal", border=True,
                       delta_description="vs previous period" if has_previous else None,
                       help=k.label + ("" if k.previous is not None or not has_previous
                                       else " · no data in the previous period to compare with"))
