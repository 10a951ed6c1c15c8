"""The dashboard's filters: URL query parameters <-> `Filters`, and date presets -> UTC instants.

A period is a run of whole local days in the workspace timezone. Its UTC bounds run from the
local midnight starting the first day to the local midnight ending the last day, computed with
the IANA zone, so a day of 23 or 25 hours (DST) is exactly that long.

Presets follow respond.io's date picker, each ending today inclusive where it says "last":
`today`; `yesterday`; `last_7_days` / `last_14_days` / `last_30_days` = the 7 / 14 / 30 local
days ending today, today included; `this_month` = the 1st of this month through today;
`last_month` = the whole previous calendar month.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, fields
from datetime import date, datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo

from closeconv.contract import FRT_BUCKETS

PRESETS: tuple[str, ...] = (
    "today", "yesterday", "last_7_days", "last_14_days", "last_30_days", "this_month", "last_month",
)
PRESET_LABELS: dict[str, str] = {
    "today": "Today", "yesterday": "Yesterday", "last_7_days": "Last 7 days",
    "last_14_days": "Last 14 days", "last_30_days": "Last 30 days",
    "this_month": "This month", "last_month": "Last month",
}
MULTI_PARAMS: tuple[str, ...] = (
    "category", "closed_by_source", "closed_by_user", "team", "assignee", "channel", "opened_source",
)
# Repeatable too, but not part of the filter bar: set by clicking an FRT-breakdown bar.
EXTRA_MULTI_PARAMS: tuple[str, ...] = ("frt_bucket",)
# Parameters the app owns; parse_query_params leaves them alone without a notice.
APP_PARAMS: frozenset[str] = frozenset({"conversation", "page", "page_size", "sort", "desc"})

FRT_BUCKET_LABELS: tuple[str, ...] = tuple(label for label, _ in FRT_BUCKETS)
MAX_VALUES_PER_PARAM = 200
_DAY = re.compile(r"\d{4}-\d{2}-\d{2}")


@dataclass(frozen=True)
class Filters:
    date_from: date | None = None
    date_to: date | None = None
    preset: str | None = None
    category: tuple[str, ...] = ()
    closed_by_source: tuple[str, ...] = ()
    closed_by_user: tuple[str, ...] = ()
    team: tuple[str, ...] = ()
    assignee: tuple[str, ...] = ()
    channel: tuple[str, ...] = ()
    opened_source: tuple[str, ...] = ()
    q: str | None = None
    frt_bucket: tuple[str, ...] = ()


@dataclass(frozen=True)
class Period:
    """Local days first_day..last_day inclusive (None = unbounded on that side) and their UTC bounds."""

    first_day: date | None
    last_day: date | None
    start_utc: datetime | None
    end_utc_exclusive: datetime | None

    @property
    def days(self) -> int | None:
        if self.first_day is None or self.last_day is None:
            return None
        return (self.last_day - self.first_day).days + 1


def _text(value: str) -> str:
    """Lone surrogates (from a malformed URL) cannot be sent to DuckDB: make them U+FFFD, so
    the value still matches nothing rather than being dropped (which would widen the filter)."""
    return "".join("\ufffd" if 0xD800 <= ord(ch) <= 0xDFFF else ch for ch in value)


def _values(raw: list[str] | str | None) -> list[str]:
    if raw is None:
        return []
    return [_text(raw)] if isinstance(raw, str) else [_text(v) for v in raw if isinstance(v, str)]


def _parse_day(name: str, raw: list[str] | str | None, notices: list[str]) -> date | None:
    values = [v.strip() for v in _values(raw) if v.strip()]
    if not values:
        return None
    if _DAY.fullmatch(values[-1]):
        try:
            return date.fromisoformat(values[-1])
        except ValueError:
            pass
    notices.append(f"Ignored `{name}={_shorten(values[-1])}`: not a day in the form YYYY-MM-DD.")
    return None


def _shorten(value: str, limit: int = 40) -> str:
    return value if len(value) <= limit else value[:limit] + "…"


def normalize_frt_bucket(value: str) -> str:
    """`30s-2m` (plain hyphen, any case, spaces) -> the label `30s–2m`; unknown values pass through."""
    squashed = value.strip().replace(" ", "").replace("-", "–").replace("—", "–").lower()
    for label in FRT_BUCKET_LABELS:
        if label.lower() == squashed:
            return label
    return value


def parse_query_params(params: Mapping[str, list[str] | str]) -> tuple[Filters, list[str]]:
    """URL query parameters -> Filters plus notices for the values it could not use. Never raises.

    Values are taken as typed: a hostile value (quotes, `%`, SQL, a 3,000-character string) is a
    SQL parameter like any other and simply matches nothing.
    """
    notices: list[str] = []
    try:
        return _parse(params, notices), notices
    except Exception as exc:  # a URL must never break a page
        return Filters(), [f"Ignored the filters in the address: {type(exc).__name__}."]


def _parse(params: Mapping[str, list[str] | str], notices: list[str]) -> Filters:
    date_from = _parse_day("from", params.get("from"), notices)
    date_to = _parse_day("to", params.get("to"), notices)
    if date_from and date_to and date_from > date_to:
        notices.append(f"`from` ({date_from}) was after `to` ({date_to}); swapped them.")
        date_from, date_to = date_to, date_from
    preset = None
    presets = [v.strip() for v in _values(params.get("preset")) if v.strip()]
    if presets:
        if presets[-1] in PRESETS:
            preset = presets[-1]
        else:
            notices.append(f"Ignored `preset={_shorten(presets[-1])}`: use one of {', '.join(PRESETS)}.")
    if preset and (date_from or date_to):
        notices.append(f"`from`/`to` given, so `preset={preset}` is not applied.")
        preset = None
    multi: dict[str, tuple[str, ...]] = {}
    for name in MULTI_PARAMS + EXTRA_MULTI_PARAMS:
        values = list(dict.fromkeys(v.strip() for v in _values(params.get(name)) if v.strip()))
        if len(values) > MAX_VALUES_PER_PARAM:
            notices.append(f"Kept the first {MAX_VALUES_PER_PARAM} of {len(values)} `{name}` values.")
            values = values[:MAX_VALUES_PER_PARAM]
        if name == "frt_bucket":
            values = [normalize_frt_bucket(v) for v in values]
            unknown = [v for v in values if v not in FRT_BUCKET_LABELS]
            if unknown:
                notices.append(f"Unknown `frt_bucket` {_shorten(unknown[0])!r}: use one of {', '.join(FRT_BUCKET_LABELS)}.")
        multi[name] = tuple(values)
    qs = [v.strip() for v in _values(params.get("q")) if v.strip()]
    known = {"from", "to", "preset", "q", *MULTI_PARAMS, *EXTRA_MULTI_PARAMS, *APP_PARAMS}
    unknown_names = sorted(k for k in params if isinstance(k, str) and k not in known)
    if unknown_names:
        notices.append(f"Ignored unknown parameter(s): {', '.join(_shorten(n) for n in unknown_names[:5])}.")
    return Filters(date_from=date_from, date_to=date_to, preset=preset, q=qs[-1] if qs else None, **multi)


def to_query_params(f: Filters) -> dict[str, list[str]]:
    """Filters -> query parameters (only the ones set), the inverse of parse_query_params."""
    out: dict[str, list[str]] = {}
    if f.date_from:
        out["from"] = [f.date_from.isoformat()]
    if f.date_to:
        out["to"] = [f.date_to.isoformat()]
    if f.preset and not (f.date_from or f.date_to):
        out["preset"] = [f.preset]
    for field in fields(Filters):
        if field.name in MULTI_PARAMS + EXTRA_MULTI_PARAMS:
            values = getattr(f, field.name)
            if values:
                out[field.name] = list(values)
    if f.q:
        out["q"] = [f.q]
    return out


def local_midnight_utc(day: date, tz: str) -> datetime:
    """The UTC instant at which `day` begins in `tz` (DST-correct)."""
    return datetime.combine(day, time(0), ZoneInfo(tz)).astimezone(timezone.utc)


def period_of_days(first_day: date | None, last_day: date | None, tz: str) -> Period:
    return Period(
        first_day=first_day,
        last_day=last_day,
        start_utc=local_midnight_utc(first_day, tz) if first_day else None,
        end_utc_exclusive=local_midnight_utc(last_day + timedelta(days=1), tz) if last_day else None,
    )


def preset_days(preset: str, today: date) -> tuple[date, date]:
    if preset == "today":
        return today, today
    if preset == "yesterday":
        return today - timedelta(days=1), today - timedelta(days=1)
    if preset in ("last_7_days", "last_14_days", "last_30_days"):
        n = int(preset.split("_")[1])
        return today - timedelta(days=n - 1), today
    if preset == "this_month":
        return today.replace(day=1), today
    if preset == "last_month":
        last = today.replace(day=1) - timedelta(days=1)
        return last.replace(day=1), last
    raise ValueError(f"unknown preset {preset!r}; use one of {', '.join(PRESETS)}")


def resolve_period(f: Filters, tz: str, today: date) -> Period | None:
    """The period the filters select (from/to win over preset); None = all time."""
    if f.date_from or f.date_to:
        return period_of_days(f.date_from, f.date_to, tz)
    if f.preset in PRESETS:
        return period_of_days(*preset_days(f.preset, today), tz)
    return None


def previous_period(p: Period, tz: str) -> Period | None:
    """The same number of local days just before `p`; None when `p` is open-ended."""
    if p.first_day is None or p.last_day is None:
        return None
    n = p.days
    return period_of_days(p.first_day - timedelta(days=n), p.first_day - timedelta(days=1), tz)
