"""Lookup tables derived from the workspace, built once, and the working-hours load pattern."""

from __future__ import annotations

import json
import math
from itertools import accumulate

from closeconv.sample.workspace import AGENTS, CATEGORIES, CHANNELS, TEAMS, _SUMMARIES, _TOPICS

OPENED, CLOSED = "conversation.opened", "conversation.closed"
RECEIVED, SENT, ASSIGN = "message.received", "message.sent", "contact.assignee.updated"

DAY_MS = 86_400_000
HOUR_MS = 3_600_000
_INF = 1 << 62
_M64 = (1 << 64) - 1
_PLUS7_MS = 7 * HOUR_MS

_AGENT_IDS = tuple(a[0] for a in AGENTS)
_AGENT_TEAM = tuple(a[3] for a in AGENTS)
_TEAM_AGENTS: dict[str, tuple[int, ...]] = {t: tuple(i for i, a in enumerate(AGENTS) if a[3] == t) for t, _ in TEAMS}
_TEAM_MANAGER: dict[str, int] = {
    t: next(i for i in idx if AGENTS[i][4] == "manager") for t, idx in _TEAM_AGENTS.items()
}
# Agents take most conversations; managers fewer.
_TEAM_AGENT_CUM: dict[str, list[float]] = {
    t: list(accumulate(0.4 if AGENTS[i][4] == "manager" else 1.0 for i in idx)) for t, idx in _TEAM_AGENTS.items()
}
# Each agent's median first response (seconds) during working hours.
_AGENT_FRT_MEDIAN_S = (150.0, 45.0, 80.0, 120.0, 200.0, 60.0, 240.0, 95.0, 180.0, 50.0, 110.0, 75.0)
_AGENT_FRT_MU = tuple(math.log(s * 1000) for s in _AGENT_FRT_MEDIAN_S)

_CHANNEL_IDS = tuple(c for c, _ in CHANNELS)
_CHANNEL_CUM = list(accumulate(w for _, w in CHANNELS))

_TOPIC_CUM = list(accumulate(w for _, _, w in _TOPICS))
_CATEGORY_NAMES = tuple(c for c, _ in CATEGORIES)

# Summary templates, flattened: index -> template; category -> indices.
_SUMMARY_TEMPLATES: list[str] = []
_SUMMARY_BY_CATEGORY: dict[str, tuple[int, ...]] = {}
for _cat, _texts in _SUMMARIES.items():
    _SUMMARY_BY_CATEGORY[_cat] = tuple(range(len(_SUMMARY_TEMPLATES), len(_SUMMARY_TEMPLATES) + len(_texts)))
    _SUMMARY_TEMPLATES.extend(_texts)
_THANKS_SUMMARY = _SUMMARY_TEMPLATES.index("Customer said thanks")


def _json_str(s: str) -> str:
    return json.dumps(s)  # ASCII-only lines: \u escapes keep joins and encoding on the fast path


def _summary_json_parts(template: str) -> tuple[str, str]:
    """JSON text of a template split around its number: prefix + str(n) + suffix."""
    if "{n}" not in template:
        return _json_str(template), ""
    pre, post = template.split("{n}", 1)
    return _json_str(pre)[:-1], _json_str(post)[1:]


_SUMMARY_JSON = tuple(_summary_json_parts(t) for t in _SUMMARY_TEMPLATES)
_SUMMARY_HAS_N = tuple("{n}" in t for t in _SUMMARY_TEMPLATES)


def _summary_text(idx: int, n: int) -> str:
    t = _SUMMARY_TEMPLATES[idx]
    return t.replace("{n}", str(n)) if _SUMMARY_HAS_N[idx] else t


# Pre-escaped JSON fragments.
_ACTOR_JSON = tuple(f',"user_id":"{a[0]}","team_id":"{a[3]}"' for a in AGENTS)
_ASSIGNEE_JSON = tuple(f',"assignee_id":"{a[0]}"' for a in AGENTS)


# Opens per hour of the week (UTC), before normalisation: busy 08-18 on weekdays.
_WEEKDAY_HOURS = (
    0.06, 0.04, 0.03, 0.03, 0.04, 0.07, 0.15, 0.35, 0.80, 1.00, 1.00, 0.95,
    0.75, 0.85, 0.95, 0.95, 0.90, 0.80, 0.50, 0.38, 0.30, 0.22, 0.15, 0.10,
)
_WEEKEND_FACTOR = 0.28


def _hour_weight(weekday: int, hour: int) -> float:
    w = _WEEKDAY_HOURS[hour]
    return w * _WEEKEND_FACTOR if weekday >= 5 else w


def _weekday(day_number: int) -> int:
    """Monday = 0 for a day number counted from 1970-01-01 (a Thursday)."""
    return (day_number + 3) % 7


def _is_working(t: int) -> bool:
    d, r = divmod(t, DAY_MS)
    return _weekday(d) < 5 and 8 * HOUR_MS <= r < 18 * HOUR_MS


def _next_working_start(t: int) -> int:
    d, r = divmod(t, DAY_MS)
    if _weekday(d) < 5 and r < 8 * HOUR_MS:
        return d * DAY_MS + 8 * HOUR_MS
    d += 1
    while _weekday(d) >= 5:
        d += 1
    return d * DAY_MS + 8 * HOUR_MS
