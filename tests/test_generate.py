"""The sample data generator: determinism, formats, bad records, contract, realism, CLI."""

from __future__ import annotations

import csv
import gzip
import json
import re
from collections import Counter, defaultdict
from datetime import date, datetime, timezone
from pathlib import Path

import polars as pl
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from closeconv.cli import main as cli_main
from closeconv.commands.generate import command as generate_command
from closeconv.contract import (
    ALLOWED_SOURCES,
    DEFAULT_SOURCE,
    EVENT_FIELDS,
    EVENT_KIND_RANK,
    EVENT_TYPES,
    REQUIRED_FIELDS,
    USER_ID_REQUIRED_FOR_USER_SOURCE,
)
from closeconv.sample.workspace import _SUMMARIES
from closeconv.sample import (
    AGENTS,
    BAD_KINDS,
    CATEGORIES,
    CHANNELS,
    TEAMS,
    UNLISTED_CATEGORY,
    generate_sample,
    write_reference,
)

START = date(2026, 3, 2)
START_S = datetime(2026, 3, 2, tzinfo=timezone.utc).timestamp()
END_S = START_S + 14 * 86400


# ---------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------


def read_jsonl(path: Path) -> tuple[list[dict], int]:
    """(parsed records, number of lines that are not JSON objects)."""
    opener = gzip.open if path.name.endswith(".gz") else open
    records, broken = [], 0
    with opener(path, "rt", encoding="utf-8") as f:
        for line in f:
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                broken += 1
                continue
            assert isinstance(rec, dict)
            records.append(rec)
    return records, broken


def to_seconds(value) -> float | None:
    """Epoch seconds of a contract timestamp; None when it has no UTC offset (naive)."""
    if isinstance(value, int):
        return value / 1000
    d = datetime.fromisoformat(value)
    return None if d.tzinfo is None else d.timestamp()


def sessionize(records: list[dict]) -> tuple[int, int, int]:
    """A minimal reference of spec §4: (conversations, still open, orphan closes)."""
    by_contact: dict[str, list] = defaultdict(list)
    for r in records:
        by_contact[r["contact_id"]].append(
            (to_seconds(r["occurred_at"]), EVENT_KIND_RANK[r["event_type"]], r["event_id"], r["event_type"])
        )
    conversations = still_open = orphans = 0
    for events in by_contact.values():
        events.sort()
        is_open = False
        for _t, _rank, _eid, etype in events:
            if etype in ("conversation.opened", "message.received") and not is_open:
                is_open = True
                conversations += 1
            elif etype == "conversation.closed":
                if is_open:
                    is_open = False
                else:
                    orphans += 1
        still_open += is_open
    return conversations, still_open, orphans


def summary_pattern() -> re.Pattern:
    texts = [t for ts in _SUMMARIES.values() for t in ts]
    return re.compile("|".join("(?:" + re.escape(t).replace(re.escape("{n}"), r"\d+") + ")" for t in texts), re.S)


@pytest.fixture(scope="module")
def clean_jsonl(tmp_path_factory) -> tuple[object, list[dict]]:
    """1500 conversations, no bad records."""
    out = tmp_path_factory.mktemp("clean")
    result = generate_sample(out, 1500, seed=7, bad_rate=0.0)
    records, broken = read_jsonl(result.files[0])
    assert broken == 0
    return result, records


# ---------------------------------------------------------------------------------------------
# determinism
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "fmt,gz", [("jsonl", False), ("jsonl", True), ("csv", False), ("parquet", False)]
)
def test_same_seed_same_bytes_different_seed_different(tmp_path, fmt, gz):
    kwargs = dict(conversations=300, fmt=fmt, gzip=gz, bad_rate=0.05, files=2)
    a = generate_sample(tmp_path / "a", seed=11, **kwargs)
    b = generate_sample(tmp_path / "b", seed=11, **kwargs)
    c = generate_sample(tmp_path / "c", seed=12, **kwargs)
    assert [p.name for p in a.files] == [p.name for p in b.files] == [p.name for p in c.files]
    for pa_, pb_, pc_ in zip(a.files, b.files, c.files):
        assert pa_.read_bytes() == pb_.read_bytes()
        assert pa_.read_bytes() != pc_.read_bytes()
    assert (a.events_written, a.bad_records) == (b.events_written, b.bad_records)


def test_valid_events_do_not_depend_on_format_files_or_bad_rate(tmp_path):
    """The bad-record and formatting streams never perturb the simulated events."""
    clean = generate_sample(tmp_path / "clean", 400, seed=5, bad_rate=0.0)
    noisy = generate_sample(tmp_path / "noisy", 400, seed=5, bad_rate=0.3, files=3)
    clean_recs, _ = read_jsonl(clean.files[0])
    noisy_recs = [r for p in noisy.files for r in read_jsonl(p)[0]]
    clean_ids = {r["event_id"]: r for r in clean_recs}
    noisy_first = {}
    for r in noisy_recs:
        noisy_first.setdefault(r["event_id"], r)
    assert clean.valid_events == noisy.valid_events == len(clean_ids)
    for eid, rec in clean_ids.items():
        assert noisy_first[eid] == rec


# ---------------------------------------------------------------------------------------------
# formats
# ---------------------------------------------------------------------------------------------


def test_jsonl_gzip_readable(tmp_path):
    result = generate_sample(tmp_path, 300, seed=3, gzip=True, bad_rate=0.05)
    assert result.files[0].name.endswith(".jsonl.gz")
    records, broken = read_jsonl(result.files[0])
    assert broken == result.bad_records["not_json"] > 0
    assert len(records) + broken == result.events_written


def test_csv_readable_with_all_contract_fields(tmp_path):
    result = generate_sample(tmp_path, 400, seed=3, fmt="csv", bad_rate=0.05)
    path = result.files[0]
    with open(path, encoding="utf-8", newline="") as f:
        header = next(csv.reader(f))
    assert tuple(header) == EVENT_FIELDS
    df = pl.read_csv(path, infer_schema=False)
    assert df.columns == list(EVENT_FIELDS)
    assert df.height == result.events_written
    assert df["conversation_id"].null_count() == df.height  # never included; the pipeline derives it
    assert "not_json" not in result.bad_records
    # occurred_at is always an ISO string in CSV (no epoch integers)
    iso = df["occurred_at"].str.contains(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}(Z|\+07:00)?$")
    assert iso.all()


def test_parquet_readable_in_row_groups(tmp_path):
    result = generate_sample(tmp_path, 300, seed=3, fmt="parquet", bad_rate=0.05)
    pf = pq.ParquetFile(result.files[0])
    assert pf.schema_arrow.names == list(EVENT_FIELDS)
    assert all(str(t) == "string" for t in pf.schema_arrow.types)
    table = pf.read()
    assert table.num_rows == result.events_written
    assert "not_json" not in result.bad_records


def test_formats_carry_the_same_valid_events(tmp_path):
    """With no bad records, JSONL, CSV and Parquet hold the same events (the summaries with
    quotes, backslashes, newlines and non-ASCII text survive every format)."""
    out = {
        fmt: generate_sample(tmp_path / fmt, 500, seed=9, fmt=fmt, bad_rate=0.0) for fmt in ("jsonl", "csv", "parquet")
    }
    jsonl, _ = read_jsonl(out["jsonl"].files[0])
    frames = {
        "csv": pl.read_csv(out["csv"].files[0], infer_schema=False),
        "parquet": pl.read_parquet(out["parquet"].files[0]),
    }
    expected = {}
    for r in jsonl:
        expected[r["event_id"]] = (
            r["event_type"], to_seconds(r["occurred_at"]), r["contact_id"], r.get("source"), r.get("user_id"),
            r.get("team_id"), r.get("assignee_id"), r.get("category"), r.get("summary"),
        )
    summaries = {v[-1] for v in expected.values() if v[-1]}
    assert any('"' in s for s in summaries) and any("\\" in s for s in summaries)
    assert any("\n" in s for s in summaries) and any(not s.isascii() for s in summaries)
    for name, df in frames.items():
        got = {}
        for row in df.iter_rows(named=True):
            got[row["event_id"]] = (
                row["event_type"], to_seconds(row["occurred_at"]), row["contact_id"], row["source"], row["user_id"],
                row["team_id"], row["assignee_id"], row["category"], row["summary"],
            )
        assert got == expected, name


# ---------------------------------------------------------------------------------------------
# bad records
# ---------------------------------------------------------------------------------------------


def test_every_bad_kind_is_present_and_counted_exactly(tmp_path):
    result = generate_sample(tmp_path, 400, seed=21, bad_rate=0.15)
    assert set(result.bad_records) == set(BAD_KINDS)
    assert all(n > 0 for n in result.bad_records.values()), result.bad_records
    records, broken = read_jsonl(result.files[0])
    total_bad = sum(result.bad_records.values())
    assert len(records) + broken == result.events_written == result.valid_events + total_bad
    assert total_bad / result.events_written == pytest.approx(0.15, abs=0.03)

    found = Counter(not_json=broken)
    first: dict[str, dict] = {}
    clean = []
    for r in records:
        if "contact_id" not in r:
            found["missing_contact_id"] += 1
        elif to_seconds(r["occurred_at"]) is None:
            found["naive_timestamp"] += 1
        elif r["event_type"] not in EVENT_TYPES:
            found["unknown_event_type"] += 1
        elif r["event_id"] in first:
            found["exact_duplicate" if r == first[r["event_id"]] else "conflicting_duplicate"] += 1
        else:
            first[r["event_id"]] = r
            clean.append(r)
    conversations, still_open, orphans = sessionize(clean)
    found["orphan_close"] = orphans
    assert dict(found) == result.bad_records
    # Orphan closes are extra records: the conversations are untouched.
    assert (conversations, still_open) == (result.conversations, result.open_conversations)


def test_conflicting_duplicates_differ_only_in_summary_or_time(tmp_path):
    result = generate_sample(tmp_path, 400, seed=4, bad_rate=0.2)
    records, _ = read_jsonl(result.files[0])
    seen: dict[str, dict] = {}
    conflicts = 0
    for r in records:
        prev = seen.setdefault(r["event_id"], r)
        if prev is not r and prev != r:
            conflicts += 1
            diff = {k for k in set(prev) | set(r) if prev.get(k) != r.get(k)}
            assert diff in ({"summary"}, {"occurred_at"}), diff
    assert conflicts == result.bad_records["conflicting_duplicate"] > 0


def test_no_bad_records_when_rate_is_zero(clean_jsonl):
    result, records = clean_jsonl
    assert sum(result.bad_records.values()) == 0
    assert len(records) == result.events_written == result.valid_events
    assert len({r["event_id"] for r in records}) == len(records)


# ---------------------------------------------------------------------------------------------
# contract and consistency
# ---------------------------------------------------------------------------------------------


def test_valid_records_obey_the_contract(clean_jsonl):
    _result, records = clean_jsonl
    agent_team = {a[0]: a[3] for a in AGENTS}
    categories = {c for c, _ in CATEGORIES} | {UNLISTED_CATEGORY}
    channels = {c for c, _ in CHANNELS}
    pattern = summary_pattern()
    for r in records:
        for f in REQUIRED_FIELDS:
            assert r.get(f) not in (None, ""), (f, r)
        assert set(r) <= set(EVENT_FIELDS), r
        assert "conversation_id" not in r
        et = r["event_type"]
        assert et in EVENT_TYPES
        source = r.get("source", DEFAULT_SOURCE.get(et))
        assert source in ALLOWED_SOURCES[et], r
        assert r["event_id"].startswith("evt_")
        assert r["contact_id"].startswith("c_") and r["channel_id"] in channels
        t = to_seconds(r["occurred_at"])
        assert t is not None and START_S <= t < END_S, r
        if source == "user" and et in USER_ID_REQUIRED_FOR_USER_SOURCE:
            assert r["user_id"] in agent_team and r["team_id"] == agent_team[r["user_id"]], r
        if "user_id" in r:
            assert source == "user" and r["team_id"] == agent_team[r["user_id"]]
        if et == "contact.assignee.updated":
            assert "assignee_id" in r and (r["assignee_id"] is None or r["assignee_id"] in agent_team)
        else:
            assert "assignee_id" not in r
        if et == "conversation.closed":
            if r.get("category") is not None:
                assert r["category"] in categories
            if r.get("summary") is not None:
                assert pattern.fullmatch(r["summary"]), r["summary"]
        else:
            assert "category" not in r and "summary" not in r


def test_sessionization_matches_the_reported_conversations(clean_jsonl):
    """No orphan, no overlap: a reference sessionizer finds exactly the simulated conversations."""
    result, records = clean_jsonl
    assert sessionize(records) == (result.conversations, result.open_conversations, 0)
    assert result.conversations > 1500  # the reopens come on top
    assert result.reopened_conversations > 0 and result.open_conversations > 0


def test_data_is_realistic(clean_jsonl):
    result, records = clean_jsonl
    by_type = Counter(r["event_type"] for r in records)
    assert dict(by_type) == result.events_by_type
    assert 6 < result.valid_events / result.conversations < 15
    assert {r["channel_id"] for r in records} == {c for c, _ in CHANNELS}
    assert {r["team_id"] for r in records if "team_id" in r} == {t for t, _ in TEAMS}
    assert {r["user_id"] for r in records if "user_id" in r} == {a[0] for a in AGENTS}
    assert result.contacts < result.conversations  # contacts come back

    def sources(et):
        return Counter(r.get("source", "contact") for r in records if r["event_type"] == et)

    closes = sources("conversation.closed")
    assert {"user", "workflow", "api", "bot", "auto_close"} <= set(closes)
    assert 0.65 < closes["user"] / sum(closes.values()) < 0.85
    assert {"user", "workflow", "api", "ctc_ads"} <= set(sources("conversation.opened"))
    assert {"user", "workflow", "bot", "broadcast"} <= set(sources("message.sent"))
    assert sources("message.sent")["broadcast"] == result.broadcasts > 0
    assert {"user", "workflow", "api"} <= set(sources("contact.assignee.updated"))
    assignments = [r for r in records if r["event_type"] == "contact.assignee.updated"]
    assert any(r["assignee_id"] is None for r in assignments)
    user_closes = [r for r in records if r["event_type"] == "conversation.closed" and r["source"] == "user"]
    assert any(r["category"] is None for r in user_closes) and any(r["summary"] is None for r in user_closes)
    assert sum(r["category"] is not None for r in user_closes) > len(user_closes) / 2

    # All three timestamp representations, mostly Z with milliseconds.
    ts = [r["occurred_at"] for r in records]
    n_epoch = sum(isinstance(v, int) for v in ts)
    n_plus7 = sum(isinstance(v, str) and v.endswith("+07:00") for v in ts)
    n_z = sum(isinstance(v, str) and re.fullmatch(r".*T\d\d:\d\d:\d\d\.\d{3}Z", v) is not None for v in ts)
    assert n_epoch > 0 and n_plus7 > 0 and n_z / len(ts) > 0.9
    assert n_z + n_plus7 + n_epoch == len(ts)
    # message.received sometimes omits its default source
    assert any("source" not in r for r in records if r["event_type"] == "message.received")

    # Working-hours load: opens on weekdays 08-18 UTC outnumber the rest of the week.
    per_contact = defaultdict(list)
    for r in records:
        per_contact[r["contact_id"]].append(to_seconds(r["occurred_at"]))
    first = [min(v) for v in per_contact.values()]
    busy = sum(1 for t in first if datetime.fromtimestamp(t, timezone.utc).weekday() < 5
               and 8 <= datetime.fromtimestamp(t, timezone.utc).hour < 18)
    assert busy / len(first) > 0.6  # 50 of the 168 hours of a week

    # Long-tailed first responses: the slowest first replies are hours, the typical ones minutes.
    gaps = []
    for events in _conversations_of(records):
        t_in = next((t for t, r in events if r["event_type"] == "message.received"), None)
        t_out = next((t for t, r in events if r["event_type"] == "message.sent" and r.get("source") == "user"), None)
        if t_in is not None and t_out is not None and t_out > t_in:
            gaps.append(t_out - t_in)
    gaps.sort()
    assert gaps[len(gaps) // 2] < 15 * 60 < 3600 < gaps[int(len(gaps) * 0.95)]


def _conversations_of(records: list[dict]):
    by_contact = defaultdict(list)
    for r in records:
        by_contact[r["contact_id"]].append((to_seconds(r["occurred_at"]), EVENT_KIND_RANK[r["event_type"]], r))
    for events in by_contact.values():
        events.sort(key=lambda e: (e[0], e[1], e[2]["event_id"]))
        current = None
        for t, _rank, r in events:
            et = r["event_type"]
            if current is None and et in ("conversation.opened", "message.received"):
                current = []
            if current is not None:
                current.append((t, r))
                if et == "conversation.closed":
                    yield current
                    current = None


def test_reopen_noise_follows_a_close_within_minutes(clean_jsonl):
    """Some contacts write again minutes after a close (the 'ok thank you' reopen)."""
    _result, records = clean_jsonl
    by_contact = defaultdict(list)
    for r in records:
        by_contact[r["contact_id"]].append((to_seconds(r["occurred_at"]), EVENT_KIND_RANK[r["event_type"]], r))
    quick = 0
    for events in by_contact.values():
        events.sort(key=lambda e: (e[0], e[1]))
        closes = [t for t, _, r in events if r["event_type"] == "conversation.closed"]
        for tc in closes:
            nxt = [t for t, _, r in events if r["event_type"] == "message.received" and tc < t]
            if nxt and nxt[0] - tc < 3600:
                quick += 1
    assert quick >= _result.reopened_conversations * 0.8


# ---------------------------------------------------------------------------------------------
# files, reference, CLI
# ---------------------------------------------------------------------------------------------


def test_files_split_the_output(tmp_path):
    one = generate_sample(tmp_path / "one", 600, seed=8, bad_rate=0.02)
    three = generate_sample(tmp_path / "three", 600, seed=8, bad_rate=0.02, files=3)
    assert [p.name for p in three.files] == ["events-0001.jsonl", "events-0002.jsonl", "events-0003.jsonl"]
    lines = [len(p.read_text(encoding="utf-8").splitlines()) for p in three.files]
    assert all(n > 0.2 * sum(lines) for n in lines), lines
    assert sum(lines) == three.events_written
    assert three.valid_events == one.valid_events
    ids = [set(r["event_id"] for r in read_jsonl(p)[0]) for p in three.files]
    assert ids[0] | ids[1] | ids[2] >= {r["event_id"] for r in read_jsonl(one.files[0])[0]}


def test_more_files_than_conversations(tmp_path):
    result = generate_sample(tmp_path, 2, files=4, bad_rate=0.0, fmt="parquet")
    assert all(p.exists() for p in result.files)
    assert sum(pq.ParquetFile(p).metadata.num_rows for p in result.files) == result.events_written


def test_zero_conversations(tmp_path):
    result = generate_sample(tmp_path, 0)
    assert result.events_written == 0 and result.files[0].read_bytes() == b""


def test_write_reference_matches_the_generated_ids(tmp_path, clean_jsonl):
    _result, records = clean_jsonl
    paths = write_reference(tmp_path / "ref")
    assert sorted(p.name for p in paths) == ["categories.csv", "teams.csv", "users.csv"]
    users = pl.read_csv(tmp_path / "ref" / "users.csv", infer_schema=False)
    teams = pl.read_csv(tmp_path / "ref" / "teams.csv", infer_schema=False)
    cats = pl.read_csv(tmp_path / "ref" / "categories.csv", infer_schema=False)
    assert users.columns == ["user_id", "name", "email", "team_id", "role"]
    assert teams.columns == ["team_id", "name"] and cats.columns == ["name", "description"]
    assert set(users["team_id"]) == set(teams["team_id"])
    seen_users = {r["user_id"] for r in records if "user_id" in r} | {
        r["assignee_id"] for r in records if r.get("assignee_id")
    }
    assert seen_users <= set(users["user_id"])
    seen_cats = {r["category"] for r in records if r.get("category")}
    assert seen_cats - set(cats["name"]) == {UNLISTED_CATEGORY}  # flagged by the pipeline, on purpose


@pytest.mark.parametrize(
    "kwargs",
    [dict(fmt="csv", gzip=True), dict(fmt="xml"), dict(bad_rate=0.9), dict(files=0), dict(days=0)],
)
def test_bad_arguments_are_rejected(tmp_path, kwargs):
    with pytest.raises(ValueError):
        generate_sample(tmp_path, 10, **kwargs)


def test_cli_generate(tmp_path):
    out, ref = tmp_path / "landing", tmp_path / "reference"
    args = ["generate", "--conversations", "200", "--seed", "3", "--out", str(out), "--format", "jsonl", "--gzip",
            "--start", "2026-01-05", "--days", "7", "--bad-rate", "0.1", "--files", "2", "--reference", str(ref)]
    res = CliRunner().invoke(cli_main, args)
    assert res.exit_code == 0, res.output
    assert "Wrote 2 jsonl.gz files" in res.output and "bad records" in res.output and "orphan_close" in res.output
    files = sorted(out.iterdir())
    assert [p.name for p in files] == ["events-0001.jsonl.gz", "events-0002.jsonl.gz"]
    assert (ref / "users.csv").exists()
    recs = [r for p in files for r in read_jsonl(p)[0]]
    times = [to_seconds(r["occurred_at"]) for r in recs]
    lo = datetime(2026, 1, 5, tzinfo=timezone.utc).timestamp()
    assert min(t for t in times if t is not None) >= lo - 1
    assert max(t for t in times if t is not None) < lo + 7 * 86400 + 600  # conflicting duplicates may shift
    # Existing files are never overwritten without --force, and nothing is written then.
    first = [p.read_bytes() for p in files]
    again = CliRunner().invoke(cli_main, args)
    assert again.exit_code == 2, again.output
    assert "already exist" in again.output and "--force" in again.output
    # The same command with --force gives the same bytes.
    assert CliRunner().invoke(cli_main, [*args, "--force"]).exit_code == 0
    assert [p.read_bytes() for p in files] == first


def test_cli_generate_refuses_to_overwrite_reference_files(tmp_path):
    ref = tmp_path / "reference"
    ref.mkdir()
    (ref / "users.csv").write_text("user_id\nmine\n")
    res = CliRunner().invoke(cli_main, ["generate", "-n", "5", "--out", str(tmp_path / "landing"), "--reference", str(ref)])
    assert res.exit_code == 2 and "users.csv" in res.output
    assert (ref / "users.csv").read_text() == "user_id\nmine\n"
    assert not (tmp_path / "landing").exists()


def test_cli_rejects_gzip_for_csv_and_warns_about_other_files(tmp_path):
    runner = CliRunner()
    res = runner.invoke(generate_command, ["--out", str(tmp_path), "--format", "csv", "--gzip"])
    assert res.exit_code != 0 and "--gzip" in res.output
    (tmp_path / "events-0009.jsonl").write_text("{}\n")
    res = runner.invoke(generate_command, ["--out", str(tmp_path), "-n", "20", "--format", "csv"])
    assert res.exit_code == 0
    assert "events-0009.jsonl" in res.output  # warned (stderr is mixed into output by default)
