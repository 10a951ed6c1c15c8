"""How figures read on screen: durations, counts, percents, sources. "—" for no data, never 0."""

from __future__ import annotations

import math

NONE_SHOWN = "—"

SOURCE_LABELS: dict[str, str] = {
    "user": "User", "contact": "Contact", "workflow": "Workflow", "api": "API", "zapier": "Zapier",
    "make": "Make", "bot": "Bot", "auto_close": "Auto-close", "ctc_ads": "Click-to-Chat ads",
    "echo": "Echo", "broadcast": "Broadcast",
}


def _missing(x) -> bool:
    return x is None or (isinstance(x, float) and math.isnan(x))


def format_duration(seconds: float | None) -> str:
    """45s, 4m 05s, 2h 03m, 3d 4h (truncated to the unit shown); "—" for None/NaN."""
    if _missing(seconds):
        return NONE_SHOWN
    sign = "-" if seconds < 0 else ""
    s = int(abs(seconds))
    if s < 60:
        return f"{sign}{s}s"
    if s < 3600:
        return f"{sign}{s // 60}m {s % 60:02d}s"
    if s < 86400:
        return f"{sign}{s // 3600}h {s % 3600 // 60:02d}m"
    return f"{sign}{s // 86400}d {s % 86400 // 3600}h"


def format_count(n: float | None) -> str:
    return NONE_SHOWN if _missing(n) else f"{int(n):,}"


def format_percent(x: float | None, digits: int = 1) -> str:
    return NONE_SHOWN if _missing(x) else f"{x:.{digits}f}%"


def source_label(source: str | None) -> str:
    if source is None:
        return NONE_SHOWN
    return SOURCE_LABELS.get(source, source.replace("_", " ").capitalize())
