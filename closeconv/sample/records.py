"""Timestamps, event ids and renderers: events → records (a JSON line, or a row for CSV / Parquet)."""

from __future__ import annotations

from datetime import date, timedelta

from closeconv.contract import ALLOWED_SOURCES
from closeconv.sample.derived import (
    ASSIGN,
    DAY_MS,
    RECEIVED,
    _ACTOR_JSON,
    _AGENT_IDS,
    _AGENT_TEAM,
    _ASSIGNEE_JSON,
    _CATEGORY_NAMES,
    _M64,
    _PLUS7_MS,
    _SUMMARY_JSON,
    _json_str,
    _summary_text,
)
from closeconv.sample.workspace import UNLISTED_CATEGORY

_HMS: list[str] = []
_MS3: list[str] = []


def _time_tables() -> tuple[list[str], list[str]]:
    if not _HMS:
        _HMS.extend(f"{h:02d}:{m:02d}:{s:02d}." for h in range(24) for m in range(60) for s in range(60))
        _MS3.extend(f"{i:03d}" for i in range(1000))
    return _HMS, _MS3


class _DayPrefixes(dict):
    """Day number (since 1970-01-01) -> 'YYYY-MM-DDT', computed once per day."""

    def __missing__(self, d: int) -> str:
        p = self[d] = (date(1970, 1, 1) + timedelta(days=d)).isoformat() + "T"
        return p


class _Iso:
    """ISO-8601 text of epoch milliseconds (the general path; emitters inline it)."""

    def __init__(self) -> None:
        self.hms, self.ms3 = _time_tables()
        self.days = _DayPrefixes()

    def __call__(self, t: int, suffix: str) -> str:
        d, r = divmod(t, DAY_MS)
        s, ms = divmod(r, 1000)
        return f"{self.days[d]}{self.hms[s]}{self.ms3[ms]}{suffix}"


# How a valid record is written is decided by one uniform draw u per record (from a
# dedicated random stream, so formats and bad rates never change the valid events):
#   u < 0.03 -> epoch milliseconds (JSONL; ISO `Z` in CSV/Parquet); u < 0.06 -> `+07:00`;
#   otherwise `Z`; and a message.received with u > 0.92 is written without `source`.
_Z, _PLUS7, _EPOCH, _NAIVE = 0, 1, 2, 3
_U_EPOCH = 0.03
_U_PLUS7 = 0.06
_U_NO_SOURCE = 0.92


def _style_of(u: float) -> int:
    return _EPOCH if u < _U_EPOCH else _PLUS7 if u < _U_PLUS7 else _Z


def _mix64(x: int) -> int:
    """A bijection on 64-bit integers (splitmix64 finaliser)."""
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9 & _M64
    x = (x ^ (x >> 27)) * 0x94D049BB133111EB & _M64
    return x ^ (x >> 31)


# Event ids: "evt_" + 16 hex digits of a bijection of a per-batch serial (a batch is one
# conversation with its reopen, or one broadcast message) + 3 hex digits of the position in
# the batch. Unique by construction, never random.
_MAX_BATCH = 4096
_SUFFIX = tuple(f"{i:03x}" for i in range(_MAX_BATCH))
_BAD_SERIAL_BASE = 1 << 62  # bad records' own ids live in a separate serial space


# --------------------------------------------------------------------------------------------
# Renderers: events -> records (a JSON line, or a row tuple for CSV / Parquet).
# An event is (t_ms, event_type, source, actor_agent_idx, assignee_agent_idx, note) where
# actor/assignee -1 means none, and note is None or (category | None, summary_idx | -1, n).
# The emitters are the fast path for valid events; render() is the general path (bad records).
# Both produce the same text for the same input.
# --------------------------------------------------------------------------------------------

_CAT_JSON: dict[str | None, str] = {c: _json_str(c) for c in (*_CATEGORY_NAMES, UNLISTED_CATEGORY)}
_CAT_JSON[None] = "null"
_SOURCES = sorted({s for v in ALLOWED_SOURCES.values() for s in v} | {"contact"})


def _note_json(note: tuple) -> str:
    cat, si, n = note
    if si < 0:
        return f',"category":{_CAT_JSON[cat]},"summary":null'
    pre, post = _SUMMARY_JSON[si]
    summary = f"{pre}{n}{post}" if post else pre
    return f',"category":{_CAT_JSON[cat]},"summary":{summary}'


def _make_jsonl_renderer():
    iso = _Iso()
    actor_json = (*_ACTOR_JSON, "")  # index -1 -> ""
    assignee_json = (*_ASSIGNEE_JSON, ',"assignee_id":null')
    hms, ms3, days = iso.hms, iso.ms3, iso.days
    src_json: dict[str | None, str] = {s: f',"source":"{s}"' for s in _SOURCES}
    src_json[None] = ""

    def render(eid, t, style, contact, channel, etype, src, actor, assignee, note) -> str:
        if style == 0:
            ts = f'"{iso(t, "Z")}"'
        elif style == 2:
            ts = str(t)
        elif style == 1:
            ts = f'"{iso(t + _PLUS7_MS, "+07:00")}"'
        else:
            ts = f'"{iso(t, "")}"'
        cc = f',"contact_id":"{contact}"' if contact is not None else ""
        if etype == ASSIGN:
            tail = assignee_json[assignee]
        elif note is not None:
            tail = _note_json(note)
        else:
            tail = ""
        return (
            f'{{"event_id":"{eid}","event_type":"{etype}","occurred_at":{ts}{cc},"channel_id":"{channel}"'
            f"{src_json[src]}{actor_json[actor]}{tail}}}\n"
        )

    def emit(prefix: str, events: list[tuple], us: list[float], contact: str, channel: str) -> list[str]:
        cc = f',"contact_id":"{contact}","channel_id":"{channel}"'
        out: list[str] = []
        add = out.append
        for (t, etype, src, actor, assignee, note), u, sfx in zip(events, us, _SUFFIX):
            if u >= _U_PLUS7:
                d, r = divmod(t, 86_400_000)
                s, ms = divmod(r, 1000)
                ts = f'"{days[d]}{hms[s]}{ms3[ms]}Z"'
            elif u < _U_EPOCH:
                ts = t
            else:
                d, r = divmod(t + _PLUS7_MS, 86_400_000)
                s, ms = divmod(r, 1000)
                ts = f'"{days[d]}{hms[s]}{ms3[ms]}+07:00"'
            if etype == RECEIVED:
                if u > _U_NO_SOURCE:
                    add(f'{{"event_id":"{prefix}{sfx}","event_type":"message.received","occurred_at":{ts}{cc}}}\n')
                else:
                    add(
                        f'{{"event_id":"{prefix}{sfx}","event_type":"message.received","occurred_at":{ts}{cc}'
                        ',"source":"contact"}\n'
                    )
            else:
                if etype == ASSIGN:
                    tail = assignee_json[assignee]
                elif note is None:
                    tail = ""
                else:
                    tail = _note_json(note)
                add(
                    f'{{"event_id":"{prefix}{sfx}","event_type":"{etype}","occurred_at":{ts}{cc}'
                    f"{src_json[src]}{actor_json[actor]}{tail}}}\n"
                )
        return out

    return render, emit


def _make_row_renderer():
    """Rows in EVENT_FIELDS order; occurred_at is always an ISO string."""
    iso = _Iso()
    hms, ms3, days = iso.hms, iso.ms3, iso.days
    ids = (*_AGENT_IDS, None)  # index -1 -> None
    teams = (*_AGENT_TEAM, None)

    def render(eid, t, style, contact, channel, etype, src, actor, assignee, note) -> tuple:
        if style == 1:
            ts = iso(t + _PLUS7_MS, "+07:00")
        elif style == 3:
            ts = iso(t, "")
        else:
            ts = iso(t, "Z")
        cat = summary = None
        if note is not None:
            cat, si, n = note
            if si >= 0:
                summary = _summary_text(si, n)
        return (eid, etype, ts, contact, None, channel, src, ids[actor], teams[actor], ids[assignee], cat, summary)

    def emit(prefix: str, events: list[tuple], us: list[float], contact: str, channel: str) -> list[tuple]:
        out: list[tuple] = []
        add = out.append
        for (t, etype, src, actor, assignee, note), u, sfx in zip(events, us, _SUFFIX):
            if u >= _U_PLUS7 or u < _U_EPOCH:
                d, r = divmod(t, 86_400_000)
                s, ms = divmod(r, 1000)
                ts = f"{days[d]}{hms[s]}{ms3[ms]}Z"
            else:
                d, r = divmod(t + _PLUS7_MS, 86_400_000)
                s, ms = divmod(r, 1000)
                ts = f"{days[d]}{hms[s]}{ms3[ms]}+07:00"
            cat = summary = None
            if note is not None:
                cat, si, n = note
                if si >= 0:
                    summary = _summary_text(si, n)
            if etype == RECEIVED and u > _U_NO_SOURCE:
                src = None
            add((f"{prefix}{sfx}", etype, ts, contact, None, channel, src, ids[actor], teams[actor],
                 ids[assignee], cat, summary))
        return out

    return render, emit
