"""Deterministic sample data: conversation events in the event contract (v1, spec §3).

The generator simulates a support workspace (4 channels, 3 teams of 4 agents, returning
contacts, a working-hours load pattern, long-tailed response times, bots, workflows,
broadcasts, assignment changes, "ok thank you" reopens, conversations left open) and writes
flat event records as JSON Lines (optionally gzipped), CSV or Parquet.

Guarantees:
- Deterministic: the same arguments give byte-identical files. Randomness comes only from
  `random.Random` instances seeded from `seed`; no wall-clock value reaches the output.
- The valid events depend only on `seed`, `conversations`, `start` and `days`: the format,
  the number of files and the bad-record rate change how they are written, not what they are.
  Bad records are *extra* records (copies with a new id, re-deliveries, orphans), so with
  `bad_rate=0` every record is valid and the pipeline should find exactly
  `GenerateResult.conversations` conversations, `open_conversations` of them still open.
- Streaming: events are generated conversation by conversation and written as they go.
  Memory holds one conversation, a small queue of delayed duplicates, one Parquet row group
  and two compact per-contact arrays (9 bytes a contact).

Output is roughly chronological (by conversation open time), not globally sorted.
"""

from __future__ import annotations

import array
import csv
import gzip as _gzip
import heapq
import json
import math
import random
import time
from bisect import bisect_right
from collections import Counter
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from itertools import accumulate
from operator import itemgetter
from pathlib import Path

from closeconv.contract import ALLOWED_SOURCES, EVENT_FIELDS

__all__ = [
    "AGENTS",
    "BAD_KINDS",
    "CATEGORIES",
    "CHANNELS",
    "FORMATS",
    "GenerateResult",
    "TEAMS",
    "UNLISTED_CATEGORY",
    "generate_sample",
    "output_paths",
    "write_reference",
]

FORMATS: tuple[str, ...] = ("jsonl", "csv", "parquet")

# --------------------------------------------------------------------------------------------
# The workspace: reference data shared by the generator and write_reference().
# --------------------------------------------------------------------------------------------

# team_id, name
TEAMS: tuple[tuple[str, str], ...] = (
    ("t_support", "Customer Support"),
    ("t_tech", "Technical Support"),
    ("t_sales", "Sales"),
)

# user_id, name, email, team_id, role
AGENTS: tuple[tuple[str, str, str, str, str], ...] = (
    ("u_amara", "Amara Okafor", "amara.okafor@example.com", "t_support", "manager"),
    ("u_lucas", "Lucas Martin", "lucas.martin@example.com", "t_support", "agent"),
    ("u_mei", "Mei Tanaka", "mei.tanaka@example.com", "t_support", "agent"),
    ("u_sofia", "Sofía Hernández", "sofia.hernandez@example.com", "t_support", "agent"),
    ("u_daniel", "Daniel Weber", "daniel.weber@example.com", "t_tech", "manager"),
    ("u_priya", "Priya Sharma", "priya.sharma@example.com", "t_tech", "agent"),
    ("u_tomasz", "Tomasz Nowak", "tomasz.nowak@example.com", "t_tech", "agent"),
    ("u_chloe", "Chloé Dubois", "chloe.dubois@example.com", "t_tech", "agent"),
    ("u_nam", "Nguyen Van Nam", "nam.nguyen@example.com", "t_sales", "manager"),
    ("u_isabela", "Isabela Costa", "isabela.costa@example.com", "t_sales", "agent"),
    ("u_omar", "Omar Haddad", "omar.haddad@example.com", "t_sales", "agent"),
    ("u_hannah", "Hannah Kim", "hannah.kim@example.com", "t_sales", "agent"),
)

# channel_id, share of contacts
CHANNELS: tuple[tuple[str, float], ...] = (
    ("ch_whatsapp_01", 0.45),
    ("ch_messenger_01", 0.20),
    ("ch_instagram_01", 0.15),
    ("ch_webchat_01", 0.20),
)

# The configured closing-note categories (categories.csv): name, description.
CATEGORIES: tuple[tuple[str, str], ...] = (
    ("Billing", "Invoices, payments, refunds and plan changes"),
    ("Technical", "Bugs, errors, integrations and how-to questions"),
    ("Shipping", "Delivery status, delays, lost or damaged parcels"),
    ("Account", "Login, password, profile and personal-data requests"),
    ("Sales", "Pricing, quotes, demos and upgrades"),
    ("Other", "Anything that fits no other category"),
)
# A legacy category that some agents still pick; it is *not* in categories.csv, so the
# pipeline keeps those closes and flags them (spec §3).
UNLISTED_CATEGORY = "Returns"

# Topic of a conversation: the category it is about, the team that handles it, its share.
_TOPICS: tuple[tuple[str, str, float], ...] = (
    ("Billing", "t_support", 0.22),
    ("Technical", "t_tech", 0.22),
    ("Shipping", "t_support", 0.18),
    ("Account", "t_tech", 0.13),
    ("Sales", "t_sales", 0.15),
    ("Other", "t_support", 0.10),
)

# Closing-note summaries by category. "{n}" becomes a number. Some contain quotes, a
# backslash, commas, non-ASCII text and a newline on purpose (escaping in JSON and CSV).
_SUMMARIES: dict[str, tuple[str, ...]] = {
    "Billing": (
        "Refund issued for invoice #{n}",
        "Charged twice; duplicate charge of {n} cents reversed",
        'Explained proration of the "Pro" plan',
        "Updated card on file, payment retried",
        "Invoice resent to the billing contact (café account)",
    ),
    "Technical": (
        "Webhook reset; integration works again",
        'Error "401 Unauthorized" on the API key: key regenerated',
        "Export to C:\\Users\\shared fails: sent workaround",
        "App crash on Android 14, escalated to dev (ticket #{n})",
        "Walked the customer through setup\nand tested it together",
    ),
    "Shipping": (
        "Parcel #{n} held at customs, ETA shared",
        "Wrong address; courier rerouted",
        "Damaged item, replacement sent 📦",
        "Tracking link resent",
    ),
    "Account": (
        "Password reset link sent",
        "Account deletion request (GDPR) completed",
        "E-mail address changed after identity check",
        "2FA disabled, customer re-enrolled",
    ),
    "Sales": (
        "Sent quote #{n} for 25 seats",
        "Demo booked for next Tuesday",
        'Asked "do you offer NGO discounts?": yes, 20%',
        "Upgraded to the annual plan",
    ),
    "Other": (
        "Customer said thanks",
        "Spam, no action",
        "Wrong number",
        "Feedback forwarded to the product team, merci!",
    ),
    UNLISTED_CATEGORY: ("Return label sent for order #{n}",),
}

BAD_KINDS: tuple[str, ...] = (
    "not_json",
    "missing_contact_id",
    "naive_timestamp",
    "unknown_event_type",
    "exact_duplicate",
    "conflicting_duplicate",
    "orphan_close",
)
_UNKNOWN_EVENT_TYPES = ("conversation.snoozed", "message.deleted", "contact.tag.added", "conversation.transferred")

# --------------------------------------------------------------------------------------------
# Derived tables (module level, built once).
# --------------------------------------------------------------------------------------------

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


# --------------------------------------------------------------------------------------------
# Timestamps and event ids.
# --------------------------------------------------------------------------------------------

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


# --------------------------------------------------------------------------------------------
# Sinks: write records to one file.
# --------------------------------------------------------------------------------------------


class _JsonlSink:
    def __init__(self, path: Path, gzip: bool) -> None:
        self._raw = open(path, "wb")
        # mtime=0 and no file name in the header keep gzip output byte-identical across runs.
        self._f = (
            _gzip.GzipFile(filename="", mode="wb", fileobj=self._raw, mtime=0, compresslevel=6) if gzip else self._raw
        )
        self._buf: list[str] = []

    def write_many(self, records: list[str]) -> None:
        self._buf.extend(records)
        if len(self._buf) >= 4096:
            self.flush()

    def flush(self) -> None:
        if self._buf:
            self._f.write("".join(self._buf).encode("utf-8"))
            self._buf.clear()

    def close(self) -> None:
        self.flush()
        if self._f is not self._raw:
            self._f.close()
        self._raw.close()


class _CsvSink:
    def __init__(self, path: Path) -> None:
        self._f = open(path, "w", encoding="utf-8", newline="")
        self._w = csv.writer(self._f, lineterminator="\n")
        self._w.writerow(EVENT_FIELDS)

    def write_many(self, records: list[tuple]) -> None:
        self._w.writerows(records)

    def close(self) -> None:
        self._f.close()


class _ParquetSink:
    """Row groups of `row_group_size` rows. Rows are turned into Arrow batches every 10k
    rows, so at most 10k Python row tuples plus one row group of Arrow data are held."""

    def __init__(self, path: Path, row_group_size: int = 100_000) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        self._pa = pa
        self._schema = pa.schema([(f, pa.string()) for f in EVENT_FIELDS])
        self._w = pq.ParquetWriter(path, self._schema, compression="zstd")
        self._rows: list[tuple] = []
        self._batches: list = []
        self._buffered = 0
        self._size = row_group_size

    def write_many(self, records: list[tuple]) -> None:
        self._rows.extend(records)
        if len(self._rows) >= 10_000:
            self._to_batch()

    def _to_batch(self) -> None:
        if not self._rows:
            return
        pa = self._pa
        cols = list(zip(*self._rows))
        arrays = [pa.array(c, type=pa.string()) for c in cols]
        self._batches.append(pa.RecordBatch.from_arrays(arrays, schema=self._schema))
        self._buffered += len(self._rows)
        self._rows = []
        while self._buffered >= self._size:
            table = self._pa.Table.from_batches(self._batches, schema=self._schema)
            self._w.write_table(table.slice(0, self._size), row_group_size=self._size)
            rest = table.slice(self._size)
            self._batches, self._buffered = rest.to_batches(), rest.num_rows

    def close(self) -> None:
        self._to_batch()
        if self._buffered:
            table = self._pa.Table.from_batches(self._batches, schema=self._schema)
            self._w.write_table(table, row_group_size=self._size)
        self._batches = []
        self._w.close()


def output_paths(out_dir: Path, fmt: str, files: int, gzip: bool = False) -> list[Path]:
    """The files generate_sample() writes, in order."""
    ext = {"jsonl": ".jsonl.gz" if gzip else ".jsonl", "csv": ".csv", "parquet": ".parquet"}[fmt]
    return [Path(out_dir) / f"events-{i:04d}{ext}" for i in range(1, files + 1)]


# --------------------------------------------------------------------------------------------
# The simulation.
# --------------------------------------------------------------------------------------------

# How a conversation opens: kind, share.
_OPEN_KINDS: tuple[tuple[str, float], ...] = (
    ("contact", 0.80),
    ("ctc_ads", 0.06),
    ("user", 0.06),
    ("workflow", 0.03),
    ("api", 0.03),
    ("zapier", 0.01),
    ("make", 0.01),
)
_OPEN_CUM = list(accumulate(w for _, w in _OPEN_KINDS))
# How an answered conversation closes: source, share.
_HUMAN_CLOSE: tuple[tuple[str, float], ...] = (
    ("user", 0.885),
    ("auto_close", 0.03),
    ("api", 0.035),
    ("workflow", 0.03),
    ("zapier", 0.01),
    ("make", 0.01),
)
_HUMAN_CLOSE_CUM = list(accumulate(w for _, w in _HUMAN_CLOSE))

_AUTO_CLOSE_MS = 4 * HOUR_MS  # the workspace's auto-close timer (inactivity)
_P_GREETING = 0.6  # workflow auto-reply on a contact-opened conversation
_P_BOT = 0.13  # a bot answers first
_P_BOT_RESOLVES = 0.45  # ... and closes it with no human
_P_UNANSWERED = 0.07  # no human ever answers
_P_STALE = 0.025  # a human answers but nobody closes it
_P_ALREADY_ASSIGNED = 0.12  # still assigned from an earlier conversation: no assignment event
_P_REASSIGN = 0.05
_P_UNASSIGN = 0.02
_P_UNASSIGN_WORKFLOW_AFTER_CLOSE = 0.5  # a recorded workflow unassign right after a user close
_P_REOPEN = 0.12  # "ok thank you" after the close
_CONTACTS_PER_CONVERSATION = 0.8


_NORMAL_TABLE_SIZE = 8192
_NORMAL: list[float] = []


def _make_ln(rand):
    """Log-normal durations in ms: exp(N(mu, sigma)) from a quantile table of the standard
    normal (8192 points, |z| <= 3.8): 3-4x faster than random.gauss, plenty for sample data."""
    if not _NORMAL:
        from statistics import NormalDist

        inv = NormalDist().inv_cdf
        _NORMAL.extend(inv((i + 0.5) / _NORMAL_TABLE_SIZE) for i in range(_NORMAL_TABLE_SIZE))
    norm, exp, size = _NORMAL, math.exp, float(_NORMAL_TABLE_SIZE)

    def ln(mu: float, sigma: float) -> int:
        return int(exp(mu + sigma * norm[int(rand() * size)])) + 1

    return ln


_MU = {k: math.log(v * 1000) for k, v in {
    "burst": 15, "agent_gap": 20, "reply": 70, "contact_reply": 90, "close_user": 180,
    "close_api": 600, "close_workflow": 1800, "outreach_reply": 900, "outreach_msg": 25,
    "offhours_oncall": 1200, "morning_backlog": 900, "bot_turn": 40, "reopen": 240,
    "reopen_reply": 90, "reopen_close": 120, "unanswered_more": 300, "api_assign": 20,
}.items()}


@dataclass
class GenerateResult:
    files: list[Path]
    events_written: int  # every record written, valid and bad
    bad_records: dict[str, int]
    conversations: int  # conversations in the data (including the short reopened ones)
    seconds: float
    valid_events: int = 0
    reopened_conversations: int = 0
    open_conversations: int = 0  # still open at the end of the window
    contacts: int = 0  # contacts with at least one conversation
    broadcasts: int = 0  # broadcast message.sent events (no conversation)
    events_by_type: dict[str, int] = field(default_factory=dict)  # valid events


class _Simulator:
    """State that spans conversations: contacts and their busy-until times."""

    def __init__(self, seed: int, conversations: int, start_ms: int, end_ms: int) -> None:
        self.rng = random.Random(f"closeconv-generate-{seed}")
        self.ln = _make_ln(self.rng.random)
        self.start_ms, self.end_ms = start_ms, end_ms
        pool = max(1, int(conversations * _CONTACTS_PER_CONVERSATION))
        self.pool = pool
        r = self.rng.random
        cum, n = _CHANNEL_CUM, len(_CHANNEL_IDS) - 1
        self.contact_channel = bytearray(min(bisect_right(cum, r() * cum[-1]), n) for _ in range(pool))
        # Time of the contact's last event, -1 if none yet, _INF while a conversation stays open.
        self.busy = array.array("q", [-1]) * pool
        self.used = bytearray(pool)

    # -- helpers ---------------------------------------------------------------------------

    def contact_id(self, idx: int) -> str:
        return f"c_{idx + 1:06d}"

    def channel_of(self, idx: int) -> str:
        return _CHANNEL_IDS[self.contact_channel[idx]]

    def pick_contact(self, t: int) -> int:
        """A contact with no open conversation and no event after t - 1 s; frequent returners first."""
        r, busy, pool = self.rng.random, self.busy, self.pool
        limit = t - 1000
        for _ in range(12):
            i = int(pool * r() ** 1.4)
            if busy[i] < limit:
                return i
        # Everyone we tried is busy: a new contact.
        i = len(self.busy)
        self.busy.append(-1)
        self.used.append(0)
        self.contact_channel.append(min(bisect_right(_CHANNEL_CUM, r() * _CHANNEL_CUM[-1]), len(_CHANNEL_IDS) - 1))
        return i  # (later draws keep using the original pool)

    def pick_agent(self, team: str) -> int:
        cum, agents = _TEAM_AGENT_CUM[team], _TEAM_AGENTS[team]
        return agents[min(bisect_right(cum, self.rng.random() * cum[-1]), len(agents) - 1)]

    def note(self, topic: str, p_category: float, p_summary: float) -> tuple:
        """A closing note (category | None, summary index | -1, number for the summary)."""
        r = self.rng.random
        cat = None
        if r() < p_category:
            u = r()
            if u < 0.01:
                cat = UNLISTED_CATEGORY
            elif u < 0.93:
                cat = topic
            else:
                cat = _CATEGORY_NAMES[int(r() * len(_CATEGORY_NAMES))]
        si = -1
        if r() < p_summary:
            choices = _SUMMARY_BY_CATEGORY[cat or topic]
            si = choices[int(r() * len(choices))]
        if cat is None and si < 0:
            return (None, -1, 0)
        return (cat, si, 1000 + int(r() * 90000))

    # -- one conversation (and its reopen) -------------------------------------------------

    def conversation(self, o: int) -> tuple[list[tuple], list[tuple[int, int | None]]]:
        """Events of one conversation opened at o (plus a possible reopen), and its segments
        as (opened_at, closed_at | None). Not yet cut at the end of the window."""
        rng = self.rng
        r, ln = rng.random, self.ln
        mu = _MU
        evs: list[tuple] = []
        add = evs.append

        topic, team, _ = _TOPICS[min(bisect_right(_TOPIC_CUM, r() * _TOPIC_CUM[-1]), len(_TOPICS) - 1)]
        agent = self.pick_agent(team)
        assignee = -1  # current assignee as far as this conversation is concerned
        kind = _OPEN_KINDS[min(bisect_right(_OPEN_CUM, r() * _OPEN_CUM[-1]), len(_OPEN_KINDS) - 1)][0]
        t = o
        incoming_at: int | None = None  # first incoming message
        by_contact = kind in ("contact", "ctc_ads")

        if kind == "contact":
            add((t, RECEIVED, "contact", -1, -1, None))
            incoming_at = t
        elif kind == "ctc_ads":
            add((t, RECEIVED, "contact", -1, -1, None))
            # The ad's open event lands just before or within seconds after the message.
            to = t - 1 - int(r() * 500) if r() < 0.4 else t + int(r() * 2000)
            add((max(self.start_ms, to), OPENED, "ctc_ads", -1, -1, None))
            incoming_at = t
        elif kind == "user":
            add((t, OPENED, "user", agent, -1, None))
            add((t, ASSIGN, "user", agent, agent, None))
            assignee = agent
            t += ln(mu["outreach_msg"], 0.8)
            add((t, SENT, "user", agent, -1, None))
        else:  # workflow / api / zapier / make: a template message goes out
            add((t, OPENED, kind, -1, -1, None))
            t += 300 + int(r() * 3700)
            add((t, SENT, kind, -1, -1, None))

        if incoming_at is None:
            if r() < (0.75 if kind == "user" else 0.55):
                t += ln(mu["outreach_reply"], 1.3)
                add((t, RECEIVED, "contact", -1, -1, None))
                incoming_at = t
            else:
                # No reply: closed later by the user or the timer, or left open.
                u = r()
                closer = agent if kind == "user" else self.pick_agent(team)
                if u < 0.45:
                    t += ln(math.log(6 * HOUR_MS), 0.8)
                    add((t, CLOSED, "user", closer, -1, self.note(topic, 0.5, 0.3)))
                    return self._after_close(evs, o, t, topic, team, closer, "user")
                if u < 0.85:
                    t += _AUTO_CLOSE_MS + int(r() * 60_000)
                    add((t, CLOSED, "auto_close", -1, -1, None))
                    return self._after_close(evs, o, t, topic, team, closer, "auto_close")
                return evs, [(o, None)]

        # A contact message is in: maybe more of it, then a greeting.
        last = t
        for _ in range(int(r() * r() * 3)):
            last += ln(mu["burst"], 0.8)
            add((last, RECEIVED, "contact", -1, -1, None))
        if by_contact and r() < _P_GREETING:
            add((incoming_at + 800 + int(r() * 2700), SENT, "workflow", -1, -1, None))

        mode = r()
        if by_contact and mode < _P_BOT:
            # A bot answers first.
            bt = incoming_at + 1000 + int(r() * 3000)
            bt = max(bt, last + 500)
            add((bt, SENT, "bot", -1, -1, None))
            for _ in range(1 + int(r() * 3)):
                bt += ln(mu["bot_turn"], 0.9)
                add((bt, RECEIVED, "contact", -1, -1, None))
                bt += 1000 + int(r() * 3000)
                add((bt, SENT, "bot", -1, -1, None))
            last = bt
            if r() < _P_BOT_RESOLVES:
                t = last + 2000 + int(r() * 20_000)
                add((t, CLOSED, "bot", -1, -1, self.note(topic, 0.1, 0.0) if r() < 0.3 else None))
                return self._after_close(evs, o, t, topic, team, -1, "bot")
            # Handover to a human.
            last += 500 + int(r() * 2000)
            add((last, ASSIGN, "bot", -1, agent, None))
            assignee = agent
        elif mode < _P_BOT + _P_UNANSWERED:
            # Nobody answers: the contact may insist, then the timer or a workflow closes it.
            if r() < 0.4:
                last += ln(mu["unanswered_more"], 1.2)
                add((last, RECEIVED, "contact", -1, -1, None))
            u = r()
            if u < 0.6:
                t = last + _AUTO_CLOSE_MS + int(r() * 60_000)
                add((t, CLOSED, "auto_close", -1, -1, None))
            elif u < 0.8:
                t = last + ln(mu["close_workflow"], 0.8)
                add((t, CLOSED, "workflow", -1, -1, None))
            else:
                return evs, [(o, None)]
            return self._after_close(evs, o, t, topic, team, -1, "auto_close")

        # A human answers. First response time from the first incoming message.
        if _is_working(incoming_at) or r() < 0.35:
            frt = ln(_AGENT_FRT_MU[agent], 1.1)
            if not _is_working(incoming_at):
                frt = ln(mu["offhours_oncall"], 1.1)
        else:
            frt = _next_working_start(incoming_at) - incoming_at + ln(mu["morning_backlog"], 1.0)
        reply_at = max(incoming_at + frt, last + 1000)

        if assignee < 0 and r() >= _P_ALREADY_ASSIGNED:
            u = r()
            if u < 0.6:
                at, src, actor = incoming_at + 500 + int(r() * 4500), "workflow", -1
            elif u < 0.9:
                at, src = reply_at - 2000 - int(r() * 28_000), "user"
                actor = agent if r() < 0.7 else _TEAM_MANAGER[team]
            else:
                at, src, actor = incoming_at + ln(mu["api_assign"], 0.8), "api", -1
            at = min(max(at, incoming_at + 1), reply_at - 1)
            add((at, ASSIGN, src, actor, agent, None))
            assignee = agent

        t = reply_at
        rounds = 1
        while rounds < 12 and r() < 0.55:
            rounds += 1
        for k in range(rounds):
            if k:
                # The contact writes again; the agent replies.
                t += ln(mu["contact_reply"], 1.2)
                add((t, RECEIVED, "contact", -1, -1, None))
                for _ in range(int(r() * r() * 3)):
                    t += ln(mu["burst"], 0.8)
                    add((t, RECEIVED, "contact", -1, -1, None))
                if r() < _P_REASSIGN:
                    other = self.pick_agent(team)
                    if other != agent:
                        t += 1000 + int(r() * 30_000)
                        add((t, ASSIGN, "user", _TEAM_MANAGER[team], other, None))
                        agent = assignee = other
                t += ln(mu["reply"], 1.0)
            add((t, SENT, "user", agent, -1, None))
            u = r()
            for _ in range(1 if u < 0.7 else 2 if u < 0.95 else 3):
                t += ln(mu["agent_gap"], 0.7)
                if r() < 0.96:
                    add((t, SENT, "user", agent, -1, None))
                else:  # sent from the phone's own app: an echo, no user attached
                    add((t, SENT, "echo", -1, -1, None))
        if r() < 0.03:
            t += 1000 + int(r() * 60_000)
            add((t, SENT, "api", -1, -1, None))  # e.g. a CSAT survey sent by an integration
        if r() < _P_UNASSIGN:
            t += 1000 + int(r() * 60_000)
            src = "user" if r() < 0.6 else "api"
            add((t, ASSIGN, src, _TEAM_MANAGER[team] if src == "user" else -1, -1, None))
            assignee = -1

        if r() < _P_STALE:
            return evs, [(o, None)]
        src = _HUMAN_CLOSE[min(bisect_right(_HUMAN_CLOSE_CUM, r() * _HUMAN_CLOSE_CUM[-1]), len(_HUMAN_CLOSE) - 1)][0]
        if src == "user":
            t += ln(mu["close_user"], 1.0)
            closer = (assignee if assignee >= 0 else agent) if r() < 0.92 else self.pick_agent(team)
            add((t, CLOSED, "user", closer, -1, self.note(topic, 0.86, 0.76)))
            return self._after_close(evs, o, t, topic, team, closer, "user")
        if src == "auto_close":
            t += _AUTO_CLOSE_MS + int(r() * 60_000)
            note = None
        elif src == "workflow":
            t += ln(mu["close_workflow"], 0.8)
            note = None
        else:
            t += ln(mu["close_api"], 1.2)
            note = self.note(topic, 0.5, 0.25)
        add((t, CLOSED, src, -1, -1, note))
        return self._after_close(evs, o, t, topic, team, assignee if assignee >= 0 else agent, src)

    def _after_close(self, evs, o, tc, topic, team, user, close_src) -> tuple[list[tuple], list]:
        """The recorded workflow unassign after a user close, and the "ok thank you" reopen."""
        r, ln = self.rng.random, self.ln
        add = evs.append
        segments: list[tuple[int, int | None]] = [(o, tc)]
        if close_src == "user" and r() < _P_UNASSIGN_WORKFLOW_AFTER_CLOSE:
            add((tc + 200 + int(r() * 2800), ASSIGN, "workflow", -1, -1, None))
        if r() >= _P_REOPEN:
            return evs, segments
        t = tc + max(20_000, ln(_MU["reopen"], 0.9))
        ro = t
        add((t, RECEIVED, "contact", -1, -1, None))
        if r() < 0.5:
            add((t + 800 + int(r() * 2700), SENT, "workflow", -1, -1, None))
            t += 3600
        agent = user if user >= 0 else self.pick_agent(team)
        if r() < 0.35:
            t += ln(_MU["reopen_reply"], 1.0)
            add((t, SENT, "user", agent, -1, None))
        u = r()
        if u < 0.6:
            t += ln(_MU["reopen_close"], 1.0)
            note = (topic if r() < 0.3 else None, _THANKS_SUMMARY if r() < 0.3 else -1, 0)
            add((t, CLOSED, "user", agent, -1, note))
        elif u < 0.95:
            t += _AUTO_CLOSE_MS + int(r() * 60_000)
            add((t, CLOSED, "auto_close", -1, -1, None))
        else:
            t += 2000 + int(r() * 10_000)
            add((t, CLOSED, "bot", -1, -1, None))
        segments.append((ro, t))
        return evs, segments


# --------------------------------------------------------------------------------------------
# The driver.
# --------------------------------------------------------------------------------------------


def _check_args(conversations: int, fmt: str, days: int, bad_rate: float, files: int, gzip: bool, start: date) -> None:
    if conversations < 0:
        raise ValueError("conversations must be >= 0")
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; use one of {', '.join(FORMATS)}")
    if days < 1:
        raise ValueError("days must be >= 1")
    if not 0.0 <= bad_rate <= 0.5:
        raise ValueError("bad_rate must be between 0 and 0.5")
    if files < 1:
        raise ValueError("files must be >= 1")
    if gzip and fmt != "jsonl":
        raise ValueError("gzip applies to the jsonl format only")
    if start < date(1970, 1, 2):
        raise ValueError("start must be after 1970-01-01")


def generate_sample(
    out_dir: Path,
    conversations: int,
    seed: int = 42,
    fmt: str = "jsonl",
    start: date = date(2026, 3, 2),
    days: int = 14,
    bad_rate: float = 0.01,
    files: int = 1,
    gzip: bool = False,
) -> GenerateResult:
    """Write sample events for `conversations` conversations opened during `days` days from
    `start` (UTC) into `out_dir`, as `events-0001.<ext>` ... `events-<files>.<ext>`.

    `bad_rate` is the share of bad records among all records written (see BAD_KINDS).
    """
    _check_args(conversations, fmt, days, bad_rate, files, gzip, start)
    t_begin = time.perf_counter()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = output_paths(out_dir, fmt, files, gzip)

    start_ms = int(datetime(start.year, start.month, start.day, tzinfo=timezone.utc).timestamp() * 1000)
    end_ms = start_ms + days * DAY_MS
    sim = _Simulator(seed, conversations, start_ms, end_ms)
    rng = sim.rng
    fmt_rng = random.Random(f"closeconv-format-{seed}")  # timestamp styles; independent of the simulation
    bad_rng = random.Random(f"closeconv-bad-{seed}")  # bad records; the valid stream never sees it
    id_key = random.Random(f"closeconv-ids-{seed}").getrandbits(64)

    render, emit_records = _make_jsonl_renderer() if fmt == "jsonl" else _make_row_renderer()
    bad_kinds = BAD_KINDS if fmt == "jsonl" else tuple(k for k in BAD_KINDS if k != "not_json")
    bad_counts = {k: 0 for k in bad_kinds}
    type_counts: Counter[str] = Counter()

    def open_sink(path: Path):
        if fmt == "jsonl":
            return _JsonlSink(path, gzip)
        if fmt == "csv":
            return _CsvSink(path)
        return _ParquetSink(path)

    # Bad records: p per valid event, so that bad / all records ~= bad_rate. The gaps between
    # bad records are geometric (one draw per bad record, not per event).
    p_bad = bad_rate / (1.0 - bad_rate) if bad_rate > 0 else 0.0
    log_q = math.log(1.0 - p_bad) if 0 < p_bad < 1 else None

    def gap() -> int:
        if p_bad <= 0:
            return _INF
        if log_q is None:
            return 1
        return 1 + int(math.log(1.0 - bad_rng.random()) / log_q)

    next_bad = gap()
    kind_cycle: list[str] = []
    pending: list[tuple[int, int, object]] = []  # (due conversation number, seq, record): delayed duplicates
    pending_seq = 0

    valid = 0  # valid records written
    written = 0  # bad records and re-deliveries written
    batch_serial = 0
    bad_serial = 0
    convs_total = reopened = still_open = contacts_seen = broadcasts = 0
    file_idx = 0
    sink = open_sink(paths[0])
    fmt_random = fmt_rng.random

    def bad_id() -> str:
        nonlocal bad_serial
        bad_serial += 1
        return f"evt_{_mix64((_BAD_SERIAL_BASE + bad_serial + id_key) & _M64):016x}{_SUFFIX[0]}"

    def emit(events: list[tuple], contact: str, channel: str) -> tuple[str, list, list[float]]:
        """Write one batch of valid events; returns (id prefix, records, draws)."""
        nonlocal valid, batch_serial
        batch_serial += 1
        if len(events) > _MAX_BATCH:  # cannot happen with the simulation's limits
            raise RuntimeError("conversation too long")
        prefix = f"evt_{_mix64((batch_serial + id_key) & _M64):016x}"
        us = [fmt_random() for _ in events]
        records = emit_records(prefix, events, us, contact, channel)
        sink.write_many(records)
        valid += len(records)
        return prefix, records, us

    def inject_bad(prefix: str, records: list, us: list[float], events: list[tuple], contact: str, channel: str,
                   o: int, conv_no: int) -> None:
        """One bad record, built from the conversation just written."""
        nonlocal written, pending_seq, kind_cycle
        br = bad_rng.random
        for _attempt in range(len(bad_kinds)):
            if not kind_cycle:
                kind_cycle = list(bad_kinds)
                bad_rng.shuffle(kind_cycle)
            kind = kind_cycle.pop()
            i = int(br() * len(events))
            t, etype, src, actor, assignee, note = events[i]
            style = _style_of(us[i])
            if etype == RECEIVED and us[i] > _U_NO_SOURCE:
                src = None
            rec = None
            if kind == "not_json":
                if br() < 0.2:
                    rec = "<html><body><h1>502 Bad Gateway</h1></body></html>\n"
                else:
                    line = render(bad_id(), t, style, contact, channel, etype, src, actor, assignee, note)
                    rec = line[: 10 + int(br() * (len(line) - 14))] + "\n"  # cut before the closing brace
            elif kind == "missing_contact_id":
                rec = render(bad_id(), t, style, None, channel, etype, src, actor, assignee, note)
            elif kind == "naive_timestamp":
                rec = render(bad_id(), t, _NAIVE, contact, channel, etype, src, actor, assignee, note)
            elif kind == "unknown_event_type":
                et = _UNKNOWN_EVENT_TYPES[int(br() * len(_UNKNOWN_EVENT_TYPES))]
                rec = render(bad_id(), t + 1 + int(br() * 60_000), _Z, contact, channel, et, "user",
                             actor if actor >= 0 else 0, -1, None)
            elif kind == "exact_duplicate":
                pending_seq += 1
                heapq.heappush(pending, (conv_no + 1 + int(br() * 50), pending_seq, records[i]))
            elif kind == "conflicting_duplicate":
                eid = f"{prefix}{_SUFFIX[i]}"
                if etype == CLOSED and note is not None and note[1] >= 0:
                    cat, si, n = note
                    si2 = (si + 1 + int(br() * (len(_SUMMARY_TEMPLATES) - 1))) % len(_SUMMARY_TEMPLATES)
                    new = render(eid, t, style, contact, channel, etype, src, actor, assignee, (cat, si2, n + 1))
                else:
                    new = render(eid, t + 1000 + int(br() * 120_000), style, contact, channel, etype, src,
                                 actor, assignee, note)
                pending_seq += 1
                heapq.heappush(pending, (conv_no + 1 + int(br() * 50), pending_seq, new))
            elif kind == "orphan_close":
                # A contact with no conversation open at t_orphan < o; none can open before o, as
                # conversations are generated in open-time order.
                t_orphan = o - 1 - int(br() * 600_000)
                busy = sim.busy
                for _ in range(20):
                    ci = int(br() * len(busy))
                    if busy[ci] < t_orphan - 1000 and t_orphan > start_ms:
                        u = br()
                        if u < 0.7:
                            rec = render(bad_id(), t_orphan, _Z, sim.contact_id(ci), sim.channel_of(ci), CLOSED,
                                         "user", int(br() * len(AGENTS)), -1, (None, -1, 0))
                        else:
                            rec = render(bad_id(), t_orphan, _Z, sim.contact_id(ci), sim.channel_of(ci), CLOSED,
                                         "api" if u < 0.9 else "workflow", -1, -1, None)
                        break
                if rec is None:
                    kind_cycle.insert(0, kind)  # no free contact right now: try this kind later
                    continue
            if rec is not None:
                sink.write_many([rec])
                written += 1
            bad_counts[kind] += 1
            return

    def flush_pending(conv_no: int | None) -> None:
        nonlocal written
        out = []
        while pending and (conv_no is None or pending[0][0] <= conv_no):
            out.append(heapq.heappop(pending)[2])
        if out:
            sink.write_many(out)
            written += len(out)

    # Broadcast campaigns: Tuesdays and Thursdays 10:00 UTC, each to ~3% of the contacts
    # that have no conversation open.
    broadcast_size = max(1, int(sim.pool * 0.03)) if conversations else 0

    # Conversations per hour: the cumulative rounding gives exactly `conversations` in total.
    hours = days * 24
    weights = [_hour_weight(_weekday((start_ms + h * HOUR_MS) // DAY_MS), h % 24) for h in range(hours)]
    total_w = sum(weights)
    cum = 0.0
    allocated = 0
    conv_no = 0
    by_time = itemgetter(0)
    for h in range(hours):
        cum += weights[h]
        n_hour = round(conversations * cum / total_w) - allocated
        allocated += n_hour
        hour_ms = start_ms + h * HOUR_MS
        if broadcast_size and h % 24 == 10 and _weekday(hour_ms // DAY_MS) in (1, 3):
            bt = hour_ms
            busy = sim.busy
            targets = []
            for _ in range(broadcast_size):
                bt += 20 + int(rng.random() * 80)
                ci = int(rng.random() * sim.pool)
                if busy[ci] < bt:
                    targets.append((ci, bt))
                    busy[ci] = bt
            for ci, bt in targets:
                emit([(bt, SENT, "broadcast", -1, -1, None)], sim.contact_id(ci), sim.channel_of(ci))
            broadcasts += len(targets)
            type_counts[SENT] += len(targets)
        offsets = sorted(int(rng.random() * HOUR_MS) for _ in range(n_hour))
        for off in offsets:
            o = hour_ms + off
            target = conv_no * files // conversations
            while file_idx < target:  # (files in between stay empty when files > conversations)
                sink.close()
                file_idx += 1
                sink = open_sink(paths[file_idx])
            if pending:
                flush_pending(conv_no)
            ci = sim.pick_contact(o)
            evs, segments = sim.conversation(o)
            evs.sort(key=by_time)
            # Cut at the end of the window: what happens later has not happened yet.
            if evs[-1][0] >= end_ms:
                evs = [e for e in evs if e[0] < end_ms]
            last_open = False
            for so, sc in segments:
                if so < end_ms:
                    convs_total += 1
                    if sc is None or sc >= end_ms:
                        still_open += 1
                        last_open = True
            if len(segments) > 1 and segments[1][0] < end_ms:
                reopened += 1
            if not sim.used[ci]:
                sim.used[ci] = 1
                contacts_seen += 1
            sim.busy[ci] = _INF if last_open else evs[-1][0]
            type_counts.update(map(itemgetter(1), evs))
            contact, channel = sim.contact_id(ci), sim.channel_of(ci)
            prefix, records, us = emit(evs, contact, channel)
            while valid >= next_bad:
                inject_bad(prefix, records, us, evs, contact, channel, o, conv_no)
                next_bad += gap()
            conv_no += 1
    flush_pending(None)
    sink.close()
    # With more files than conversations, the remaining files still exist, empty.
    for p in paths[file_idx + 1:]:
        open_sink(p).close()

    written += valid
    return GenerateResult(
        files=paths,
        events_written=written,
        bad_records=bad_counts,
        conversations=convs_total,
        seconds=time.perf_counter() - t_begin,
        valid_events=valid,
        reopened_conversations=reopened,
        open_conversations=still_open,
        contacts=contacts_seen,
        broadcasts=broadcasts,
        events_by_type=dict(sorted(type_counts.items())),
    )


# --------------------------------------------------------------------------------------------
# Reference data.
# --------------------------------------------------------------------------------------------


def write_reference(ref_dir: Path, seed: int = 42) -> list[Path]:
    """Write users.csv, teams.csv and categories.csv consistent with the generator's ids.

    The workspace is fixed (module constants), so `seed` changes nothing today; it is kept so
    that a future randomised workspace stays reproducible.
    """
    del seed
    ref_dir = Path(ref_dir)
    ref_dir.mkdir(parents=True, exist_ok=True)
    tables = {
        "users.csv": (("user_id", "name", "email", "team_id", "role"), AGENTS),
        "teams.csv": (("team_id", "name"), TEAMS),
        "categories.csv": (("name", "description"), CATEGORIES),
    }
    written = []
    for name, (header, rows) in tables.items():
        path = ref_dir / name
        with open(path, "w", encoding="utf-8", newline="") as f:
            w = csv.writer(f, lineterminator="\n")
            w.writerow(header)
            w.writerows(rows)
        written.append(path)
    return written
