"""The driver: `generate_sample` streams the simulation into the output files."""

from __future__ import annotations

import heapq
import math
import random
import time
from collections import Counter
from datetime import date, datetime, timezone
from operator import itemgetter
from pathlib import Path

from closeconv.sample.derived import (
    CLOSED,
    DAY_MS,
    HOUR_MS,
    RECEIVED,
    SENT,
    _INF,
    _M64,
    _SUMMARY_TEMPLATES,
    _hour_weight,
    _weekday,
)
from closeconv.sample.records import (
    _BAD_SERIAL_BASE,
    _MAX_BATCH,
    _NAIVE,
    _SUFFIX,
    _U_NO_SOURCE,
    _Z,
    _make_jsonl_renderer,
    _make_row_renderer,
    _mix64,
    _style_of,
)
from closeconv.sample.simulation import GenerateResult, _Simulator
from closeconv.sample.sinks import _CsvSink, _JsonlSink, _ParquetSink, output_paths
from closeconv.sample.workspace import AGENTS, BAD_KINDS, FORMATS, _UNKNOWN_EVENT_TYPES

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
