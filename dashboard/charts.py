"""Altair charts of the Reports page, in one consistent look."""

from __future__ import annotations

import altair as alt
import polars as pl

from closeconv.reports.format import format_duration

OPENED_COLOR, CLOSED_COLOR = "#9ab8e6", "#1f5fbf"


def opened_vs_closed(frame: pl.DataFrame) -> alt.Chart:
    long = frame.unpivot(index="day", on=["opened", "closed"], variable_name="series", value_name="conversations")
    return (
        alt.Chart(long)
        .mark_line(point=True)
        .encode(
            # Ticks at least a day apart: Vega put one at noon too, so every date showed twice.
            x=alt.X("day:T", title=None, axis=alt.Axis(format="%b %d", tickMinStep=86_400_000)),
            y=alt.Y("conversations:Q", title="Conversations"),
            color=alt.Color("series:N", title=None,
                            scale=alt.Scale(domain=["opened", "closed"], range=[OPENED_COLOR, CLOSED_COLOR]),
                            legend=alt.Legend(orient="top")),
            tooltip=[alt.Tooltip("day:T", format="%Y-%m-%d"), "series:N", "conversations:Q"],
        )
        .properties(height=300)
    )


def bars(frame: pl.DataFrame, label: str, title: str, sort: list[str] | None = None, horizontal: bool = True,
         value: str = "conversations", pick: str | None = None) -> alt.Chart:
    """`value` per value of `label`, largest first unless `sort` fixes the order. Duration columns
    (`*_s`) and `answered_pct` go into the tooltip, readable."""
    frame = frame.with_columns(pl.col(label).cast(pl.String).fill_null("(none)"))
    extra = []
    for name in frame.columns:
        if name.endswith("_s"):
            readable_name = name[:-2].replace("_", " ").replace("frt", "FRT").replace("avg", "average")
            frame = frame.with_columns(pl.col(name).map_elements(format_duration, return_dtype=pl.String,
                                                                 skip_nulls=False).alias(readable_name))
            extra.append(alt.Tooltip(f"{readable_name}:N"))
        elif name == "answered_pct":
            extra.append(alt.Tooltip("answered_pct:Q", title="answered %", format=".1f"))
    order = sort if sort is not None else "-x" if horizontal else "-y"
    if horizontal:
        enc = dict(y=alt.Y(f"{label}:N", title=None, sort=order, axis=alt.Axis(labelOverlap=False, labelLimit=220)), x=alt.X(f"{value}:Q", title="Conversations"))
    else:
        enc = dict(x=alt.X(f"{label}:N", title=title, sort=order, axis=alt.Axis(labelAngle=0)),
                   y=alt.Y(f"{value}:Q", title="Conversations"))
    height = max(160, 36 * frame.height) if horizontal else 260
    chart = (
        alt.Chart(frame)
        .mark_bar(color=CLOSED_COLOR, cornerRadiusEnd=3)
        .encode(**enc, tooltip=[alt.Tooltip(f"{label}:N", title=title), alt.Tooltip(f"{value}:Q", title="conversations"),
                                *extra])
        .properties(height=height)
    )
    if pick:  # a click on a bar selects its value (the page reads it back)
        chart = chart.add_params(alt.selection_point(name=pick, fields=[label]))
    return chart
