"""Throughput of the JSONL generator against a naive json.dumps-per-event baseline.

Both runs simulate exactly the same conversations (same seed); only the way an event
becomes a line differs. The baseline builds a dict per event, formats the timestamp with
datetime and calls json.dumps. The script also checks that both produce the same records.

    uv run python benchmarks/bench_generate.py                  # 50,000 conversations
    uv run python benchmarks/bench_generate.py -n 200000 --out /tmp/bench
"""

from __future__ import annotations

import argparse
import json
import tempfile
from datetime import datetime, timedelta, timezone
from pathlib import Path

from closeconv.sample import derived, generator, records, simulation, workspace

_FAST_RENDERER = records._make_jsonl_renderer


def _naive_jsonl_renderer():
    """What a straightforward implementation would do: dict + datetime + json.dumps per event."""
    render, _fast_emit = _FAST_RENDERER()  # the general path stays (bad records; none here)
    utc, plus7 = timezone.utc, timezone(timedelta(hours=7))
    agents = workspace.AGENTS

    def emit(prefix, events, us, contact, channel):
        out = []
        for j, (t, etype, src, actor, assignee, note) in enumerate(events):
            u = us[j]
            if u < records._U_EPOCH:
                ts = t
            elif u < records._U_PLUS7:
                ts = datetime.fromtimestamp(t / 1000, plus7).isoformat(timespec="milliseconds")
            else:
                ts = datetime.fromtimestamp(t / 1000, utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")
            rec = {"event_id": f"{prefix}{j:03x}", "event_type": etype, "occurred_at": ts,
                   "contact_id": contact, "channel_id": channel}
            if src is not None and not (etype == derived.RECEIVED and u > records._U_NO_SOURCE):
                rec["source"] = src
            if actor >= 0:
                rec["user_id"], rec["team_id"] = agents[actor][0], agents[actor][3]
            if etype == derived.ASSIGN:
                rec["assignee_id"] = agents[assignee][0] if assignee >= 0 else None
            elif note is not None:
                cat, si, n = note
                rec["category"] = cat
                rec["summary"] = derived._summary_text(si, n) if si >= 0 else None
            out.append(json.dumps(rec) + "\n")
        return out

    return render, emit


def _run(out: Path, conversations: int, seed: int) -> simulation.GenerateResult:
    return generator.generate_sample(out, conversations, seed=seed, bad_rate=0.0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-n", "--conversations", type=int, default=50_000)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--out", type=Path, default=None, help="scratch folder (default: a temporary folder)")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        base = args.out or Path(tmp)
        records._time_tables()  # one-off tables, outside both timings
        fast = _run(base / "fast", args.conversations, args.seed)
        records._make_jsonl_renderer = _naive_jsonl_renderer
        try:
            naive = _run(base / "naive", args.conversations, args.seed)
        finally:
            records._make_jsonl_renderer = _FAST_RENDERER

        # Same records, line by line (text may differ only in escaping).
        with open(fast.files[0], encoding="utf-8") as a, open(naive.files[0], encoding="utf-8") as b:
            for i, (la, lb) in enumerate(zip(a, b)):
                if json.loads(la) != json.loads(lb):
                    raise SystemExit(f"outputs differ at line {i + 1}:\n{la}{lb}")
        assert fast.events_written == naive.events_written

        fast_rate = fast.events_written / fast.seconds
        naive_rate = naive.events_written / naive.seconds
        size = fast.files[0].stat().st_size
        print(f"conversations: {args.conversations:,}  events: {fast.events_written:,}  "
              f"({fast.events_written / fast.conversations:.1f} per conversation, {size / 1e6:.0f} MB)")
        print(f"fast  JSONL : {fast.seconds:6.2f} s  {fast_rate:10,.0f} events/s")
        print(f"naive JSONL : {naive.seconds:6.2f} s  {naive_rate:10,.0f} events/s  (json.dumps per event)")
        print(f"ratio       : {fast_rate / naive_rate:.2f}x")


if __name__ == "__main__":
    main()
