"""The events step recomputes only the affected contacts, and gives exactly the tables a build
over everything gives (closeconv/events_scope.py, docs/performance.md "Incremental runs").

Each test stages a landing folder and runs the events step (`stage_landing_files` +
`build_events`, real DuckDB files) run after run, then compares `events`, `rejected_events`
and `ingest_counts` with one build of a fresh staging database over the same files. The
cross-contact rules each have a case: an event_id redelivered under another contact, a
removed dedupe winner, a conversation id taken over by a new contact (and the two-hop chain),
auto-close timers that run out between runs with no new file.
"""

from __future__ import annotations

import json
import shutil
from datetime import datetime, timezone
from pathlib import Path

import duckdb
import pytest
from click.testing import CliRunner

from closeconv import changes
from closeconv.cli import main
from closeconv.ingest import stage_landing_files
from closeconv.pipeline import EventCounts, build_events
from closeconv.sample.generator import generate_sample
from conftest import at, closed, recv, sent

DOWNSTREAM = (changes.WORKFLOWS, changes.CONVERSATIONS, changes.PUBLISH)


class Staging:
    """A landing folder and its staging database, built by the events step alone."""

    def __init__(self, root: Path):
        self.landing = root / "landing"
        self.landing.mkdir(parents=True)
        self.con = duckdb.connect(str(root / "staging.duckdb"))
        self.con.sql("SET TimeZone = 'UTC'")

    def write(self, name: str, events: list[dict]) -> None:
        (self.landing / name).write_text("".join(json.dumps(e) + "\n" for e in events))

    def build(self, hours: float | None = None, as_of: datetime | None = None) -> EventCounts:
        stage_landing_files(self.con, self.landing)
        return build_events(self.con, auto_close_hours=hours, as_of=as_of)

    def tables(self) -> dict[str, list[tuple]]:
        return {
            "events": self.con.sql("SELECT * FROM events ORDER BY ALL").fetchall(),
            # ingested_at is when a file was staged: it differs between two staging databases
            "rejected_events": self.con.sql("SELECT * EXCLUDE (ingested_at) FROM rejected_events ORDER BY ALL").fetchall(),
            "ingest_counts": self.con.sql("SELECT * FROM ingest_counts").fetchall(),
        }

    def journaled(self, step: str) -> set[str] | str:
        """The contacts the events step left for `step`, or 'everything'."""
        if self.con.execute("SELECT 1 FROM changed_everything WHERE step = ?", [step]).fetchall():
            return "everything"
        return {c for (c,) in self.con.execute(
            "SELECT DISTINCT contact_id FROM changed_contacts WHERE step = ?", [step]).fetchall()}

    def consume_downstream_journal(self) -> None:
        """What the later steps do once they have run (they are not run here)."""
        for step in DOWNSTREAM:
            changes.clear(self.con, step)


def built_from_scratch(tmp_path: Path, staging: Staging, hours: float | None = None,
                       as_of: datetime | None = None) -> dict[str, list[tuple]]:
    fresh = Staging(tmp_path / f"fresh-{len(list(tmp_path.iterdir()))}")
    for f in staging.landing.iterdir():
        shutil.copy(f, fresh.landing / f.name)
    counts = fresh.build(hours, as_of)
    assert counts.contacts_recomputed is None  # a first build is a build of everything
    return fresh.tables()


@pytest.fixture
def staging(tmp_path) -> Staging:
    return Staging(tmp_path / "incremental")


def test_first_build_is_everything_and_says_so_to_the_later_steps(staging):
    staging.write("a.jsonl", [recv("09:00", "A"), sent("09:05", user="u1", contact="A")])
    counts = staging.build()
    assert counts.contacts_recomputed is None and counts.events_loaded == 2
    assert all(staging.journaled(step) == "everything" for step in DOWNSTREAM)
    assert staging.journaled(changes.EVENTS) == set()


def test_event_id_redelivered_under_another_contact_in_a_later_file(tmp_path, staging):
    staging.write("a.jsonl", [recv("09:00", "A", event_id="x1"), sent("09:05", user="u1", contact="A"),
                              recv("09:00", "B"), recv("09:00", "U")])
    staging.build()
    staging.consume_downstream_journal()
    # x1 again, under B: a conflict; A's loaded x1 leaves `events` although A's file did not change
    staging.write("b.jsonl", [recv("10:00", "B", event_id="x1")])
    counts = staging.build()
    assert counts.contacts_recomputed == 2  # B (journaled) and A (shares x1); not U
    assert staging.tables() == built_from_scratch(tmp_path, staging)
    assert counts.rejected_by_reason == {"conflicting_duplicate": 2}
    assert staging.con.sql("SELECT count(*) FROM events WHERE event_id = 'x1'").fetchall()[0][0] == 0
    # B's records came (journaled: counted as changed); A's loaded x1 left
    assert staging.journaled(changes.WORKFLOWS) == {"A", "B"}


def test_journaled_event_id_alone_recomputes_the_contacts_holding_it(tmp_path, staging):
    # The closure's first round reads the journaled event ids even with no journaled contact.
    staging.write("a.jsonl", [recv("09:00", "A", event_id="x9"), recv("09:00", "U")])
    staging.build()
    staging.consume_downstream_journal()
    changes.mark_contacts(staging.con, [changes.EVENTS], "SELECT NULL::VARCHAR AS contact_id, 'x9' AS event_id")
    counts = staging.build()
    assert counts.contacts_recomputed == 1  # A, which holds x9; not U
    assert staging.tables() == built_from_scratch(tmp_path, staging)


def test_closure_past_its_round_limit_recomputes_everything_and_frees_its_copy(tmp_path, staging, monkeypatch):
    # The closure copies the affected contacts' records as it reads them (one scan instead of
    # two); when it gives up and the step recomputes everything, that copy is not kept.
    from closeconv import events_scope

    staging.write("a.jsonl", [recv("09:00", "A", event_id="x7"), recv("09:00", "U")])
    staging.build()
    staging.consume_downstream_journal()
    staging.write("b.jsonl", [recv("10:00", "B", event_id="x7")])  # B reaches A by x7: a second round
    monkeypatch.setattr(events_scope, "MAX_ROUNDS", 1)
    stage_landing_files(staging.con, staging.landing)
    scope = events_scope.affected_contacts(staging.con, None, datetime.now(timezone.utc))
    assert scope.everything
    assert not staging.con.sql(
        f"SELECT 1 FROM duckdb_tables() WHERE table_name = '{events_scope.SCOPE_RECORDS}'").fetchall()
    counts = build_events(staging.con)
    assert counts.contacts_recomputed is None
    assert staging.tables() == built_from_scratch(tmp_path, staging)


def test_removed_file_whose_record_won_the_dedupe(tmp_path, staging):
    redelivered = recv("09:00", "A", event_id="x2")
    staging.write("a.jsonl", [redelivered, sent("09:05", user="u1", contact="A")])
    staging.write("b.jsonl", [redelivered, recv("09:30", "B"), recv("09:00", "U")])
    first = staging.build()
    assert first.duplicates_dropped == 1
    staging.consume_downstream_journal()
    (staging.landing / "a.jsonl").unlink()  # the winner (first delivery) goes; b's copy is loaded
    counts = staging.build()
    assert counts.contacts_recomputed == 1 and counts.duplicates_dropped == 0
    assert staging.tables() == built_from_scratch(tmp_path, staging)
    assert staging.con.sql("SELECT source_file FROM events WHERE event_id = 'x2'").fetchall() == [("b.jsonl",)]


def test_removed_file_with_a_conflicting_version_brings_the_other_back(tmp_path, staging):
    staging.write("a.jsonl", [recv("09:00", "A", event_id="x3"), sent("09:05", user="u1", contact="A")])
    staging.write("b.jsonl", [recv("10:00", "B", event_id="x3")])
    staging.build()
    (staging.landing / "b.jsonl").unlink()
    counts = staging.build()
    assert counts.contacts_recomputed == 2 and counts.rejected == 0
    assert staging.tables() == built_from_scratch(tmp_path, staging)


def test_new_contact_giving_a_conversation_id_an_untouched_contact_used_first(tmp_path, staging):
    staging.write("a.jsonl", [recv("09:00", "A", conversation_id="K1"), closed("09:30", user="u1", contact="A"),
                              recv("09:00", "U", conversation_id="KU")])
    staging.build()
    staging.consume_downstream_journal()
    staging.write("b.jsonl", [recv("10:00", "N", conversation_id="K1")])  # later: N gets a derived id
    counts = staging.build()
    assert counts.contacts_recomputed == 2  # N and A; not U
    assert staging.tables() == built_from_scratch(tmp_path, staging)
    assert staging.journaled(changes.WORKFLOWS) == {"N"}  # A kept K1: its rows did not change
    conversation = staging.con.sql("SELECT conversation_id FROM events WHERE contact_id = 'N'").fetchall()[0][0]
    assert conversation.startswith("cv_")


def test_conversation_id_chain_of_two_hops(tmp_path, staging):
    """N takes K1 from A's first session; A's second session names K2, which C used first.
    Recomputing N and A alone would give A's second session K2 (C out of sight): C is in scope."""
    staging.write("a.jsonl", [
        recv("09:00", "A", conversation_id="K1"), closed("09:30", user="u1", contact="A"),
        recv("11:00", "A", conversation_id="K2"), closed("11:30", user="u1", contact="A"),
        recv("10:00", "C", conversation_id="K2"), closed("10:30", user="u1", contact="C"),
        recv("09:00", "U", conversation_id="KU"),
    ])
    staging.build()
    staging.write("b.jsonl", [recv("08:00", "N", conversation_id="K1")])  # earlier: N takes K1
    counts = staging.build()
    assert counts.contacts_recomputed == 3  # N, A (K1), C (K2 through A); not U
    assert staging.tables() == built_from_scratch(tmp_path, staging)
    names = dict(staging.con.sql("SELECT contact_id || '@' || strftime(occurred_at, '%H:%M'), conversation_id "
                                 "FROM events WHERE event_type = 'message.received'").fetchall())
    assert names["N@08:00"] == "K1" and names["C@10:00"] == "K2"
    assert names["A@09:00"].startswith("cv_") and names["A@11:00"].startswith("cv_")


def test_auto_close_timer_runs_out_between_two_runs_without_a_new_file(tmp_path, staging):
    day = datetime(2026, 3, 2, tzinfo=timezone.utc)
    staging.write("a.jsonl", [
        recv("09:00", "T"), sent("09:10", user="u1", contact="T"),  # runs out at 10:10
        recv("01:00", "O"), sent("01:10", user="u1", contact="O"),  # ran out at 02:10, before the first run
    ])
    first = staging.build(hours=1, as_of=day.replace(hour=9, minute=30))
    assert first.auto_closes == 1
    staging.consume_downstream_journal()
    later = day.replace(hour=10, minute=30)
    counts = staging.build(hours=1, as_of=later)
    assert counts.contacts_recomputed == 1 and counts.auto_closes == 2  # T only
    assert staging.tables() == built_from_scratch(tmp_path, staging, hours=1, as_of=later)
    assert staging.journaled(changes.WORKFLOWS) == {"T"}
    assert staging.con.sql("SELECT occurred_at FROM events WHERE contact_id = 'T' AND source = 'auto_close'"
                           ).fetchall() == [(datetime(2026, 3, 2, 10, 10, tzinfo=timezone.utc),)]


def test_changed_auto_close_setting_recomputes_everything(staging):
    staging.write("a.jsonl", [recv("09:00", "T"), sent("09:10", user="u1", contact="T")])
    staging.build()
    counts = staging.build(hours=1, as_of=datetime(2026, 3, 3, tzinfo=timezone.utc))
    assert counts.contacts_recomputed is None and counts.auto_closes == 1
    assert staging.journaled(changes.WORKFLOWS) == "everything"


def test_changed_validation_rules_read_every_file_again(staging):
    staging.write("a.jsonl", [recv("09:00", "A"), sent("09:05", user="u1", contact="A")])
    staging.build()
    assert stage_landing_files(staging.con, staging.landing).files_parsed == 0  # cached, rules unchanged
    staging.con.sql("UPDATE staging_meta SET value = 'older rules' WHERE key = 'validation_rules'")
    assert stage_landing_files(staging.con, staging.landing).files_parsed == 1
    assert staging.build().contacts_recomputed is None
    staging.con.sql("DROP TABLE validated_records")  # a cache table gone: made again, its files read again
    assert stage_landing_files(staging.con, staging.landing).files_parsed == 1


def test_validation_rejects_come_and_go_with_their_file(tmp_path, staging):
    staging.write("a.jsonl", [recv("09:00", "A")])
    staging.build()
    (staging.landing / "bad.jsonl").write_text('{"event_id": "b1"}\nnot json\n')
    counts = staging.build()
    assert counts.contacts_recomputed == 0 and counts.rejected == 2 and counts.records_read == 3
    assert staging.tables() == built_from_scratch(tmp_path, staging)
    (staging.landing / "bad.jsonl").unlink()
    counts = staging.build()
    assert counts.rejected == 0 and counts.records_read == 1
    assert staging.tables() == built_from_scratch(tmp_path, staging)


def test_generated_files_added_changed_and_removed_one_by_one(tmp_path, staging):
    """Generated data (duplicates, conflicts, orphan closes, bad records) in files that come, are
    rewritten and go, run after run: every run's tables are those of a build from scratch."""
    generate_sample(tmp_path / "gen", 80, seed=11, days=3, files=4, bad_rate=0.05)
    generate_sample(tmp_path / "gen2", 20, seed=12, days=3, files=1, bad_rate=0.05)
    files = sorted((tmp_path / "gen").glob("events-*.jsonl"))
    recomputed = []
    for f in files:
        shutil.copy(f, staging.landing / f.name)
        recomputed.append(staging.build().contacts_recomputed)
        assert staging.tables() == built_from_scratch(tmp_path, staging)
    # a file rewritten in place: its first half, plus another seed's records
    second = staging.landing / files[1].name
    lines = second.read_text().splitlines()
    extra = (tmp_path / "gen2" / "events-0001.jsonl").read_text().splitlines()
    second.write_text("\n".join(lines[: len(lines) // 2] + extra) + "\n")
    recomputed.append(staging.build().contacts_recomputed)
    assert staging.tables() == built_from_scratch(tmp_path, staging)
    (staging.landing / files[0].name).unlink()
    recomputed.append(staging.build().contacts_recomputed)
    assert staging.tables() == built_from_scratch(tmp_path, staging)
    assert recomputed[0] is None and all(n is not None and n > 0 for n in recomputed[1:])


def _out_of_contact_order(con: duckdb.DuckDBPyConnection, where: str = "true") -> int:
    """Rows (in storage order) whose (contact_id, event_order) sorts before the previous row's."""
    return con.sql(
        "SELECT count(*) FROM (SELECT contact_id, event_order, lag(contact_id) OVER w AS prev_contact, "
        f"lag(event_order) OVER w AS prev_order FROM events WHERE {where} WINDOW w AS (ORDER BY rowid)) "
        "WHERE prev_contact IS NOT NULL AND (contact_id, event_order) < (prev_contact, prev_order)"
    ).fetchall()[0][0]


def test_events_are_stored_clustered_by_contact(tmp_path, staging):
    """The build writes `events` in (contact_id, event_order) order, and a scoped run appends its
    contacts' rows in that order: a read of some contacts' rows skips the other row groups."""
    generate_sample(tmp_path / "gen", 80, seed=11, days=3, files=2, bad_rate=0.05)
    first, second = sorted((tmp_path / "gen").glob("events-*.jsonl"))
    shutil.copy(first, staging.landing / first.name)
    staging.build()
    assert staging.con.sql("SELECT count(*) FROM events").fetchall()[0][0] > 100
    assert _out_of_contact_order(staging.con) == 0
    before = staging.con.sql("SELECT max(rowid) FROM events").fetchall()[0][0]
    shutil.copy(second, staging.landing / second.name)
    assert staging.build().contacts_recomputed > 0
    assert staging.con.sql(f"SELECT count(*) FROM events WHERE rowid > {before}").fetchall()[0][0] > 0
    assert _out_of_contact_order(staging.con, f"rowid > {before}") == 0


# --------------------------------------------------------------------------------------
# closeconv run --backfill-from/--backfill-to


def _flags(env) -> list[str]:
    env.use_unassign_template()
    return ["--landing", str(env.landing), "--warehouse", str(env.warehouse_path),
            "--workflows", str(env.workflows), "--reference", str(env.reference)]


def _published(env) -> dict[str, list[tuple]]:
    con = duckdb.connect(str(env.warehouse_path), read_only=True)
    try:
        con.sql("SET TimeZone = 'UTC'")
        return {t: con.sql(f"SELECT * FROM {t} ORDER BY ALL").fetchall() for t in ("events", "conversations")}
    finally:
        con.close()


def _tamper(env, contact: str) -> None:
    con = duckdb.connect(str(env.settings().staging_path))
    try:
        con.execute("UPDATE events SET summary = 'tampered' WHERE contact_id = ?", [contact])
    finally:
        con.close()


def _tampered(env) -> list[str]:
    con = duckdb.connect(str(env.settings().staging_path), read_only=True)
    try:
        return [c for (c,) in con.sql("SELECT DISTINCT contact_id FROM events WHERE summary = 'tampered'").fetchall()]
    finally:
        con.close()


def test_backfill_recomputes_the_contacts_of_the_range_and_changes_nothing_else(closeconv_env):
    env = closeconv_env
    env.write_jsonl("events.jsonl", [
        recv(at("09:00", "2026-03-02"), "early"), closed(at("09:30", "2026-03-02"), user="u1", contact="early"),
        recv(at("09:00", "2026-03-05"), "late"), closed(at("09:30", "2026-03-05"), user="u1", contact="late"),
    ])
    run = CliRunner().invoke(main, ["run", *_flags(env)])
    assert run.exit_code == 0, run.output
    before = _published(env)
    # nothing changed: a backfill publishes the same tables
    same = CliRunner().invoke(main, ["run", *_flags(env), "--backfill-from", "2026-03-01", "--backfill-to", "2026-03-31"])
    assert same.exit_code == 0, same.output
    assert "backfill 2026-03-01 to 2026-03-31: 2 contacts" in same.output
    assert _published(env) == before
    # staging tampered for both contacts: a backfill of 03-05 (inclusive) recomputes `late` only
    _tamper(env, "early")
    _tamper(env, "late")
    one_day = CliRunner().invoke(main, ["run", *_flags(env), "--backfill-from", "2026-03-05", "--backfill-to", "2026-03-05"])
    assert one_day.exit_code == 0, one_day.output
    assert "1 contacts recomputed" in one_day.output
    assert _tampered(env) == ["early"]


@pytest.mark.parametrize(("args", "message"), [
    (["--backfill-from", "2026-03-05", "--backfill-to", "2026-03-01"], "--backfill-to 2026-03-01 is before --backfill-from 2026-03-05"),
    (["--backfill-from", "2026-02-30", "--backfill-to", "2026-03-01"], "--backfill-from '2026-02-30' is not a date"),
    (["--backfill-from", "2026-03-01"], "--backfill-from and --backfill-to go together"),
])
def test_backfill_with_bad_dates_is_a_configuration_error(closeconv_env, args, message):
    result = CliRunner().invoke(main, ["run", *_flags(closeconv_env), *args])
    assert result.exit_code == 2 and message in result.output, result.output


def test_full_refresh_makes_the_events_step_recompute_everything(staging):
    from closeconv.ingest import forget_staging_caches

    staging.write("a.jsonl", [recv("09:00", "A"), sent("09:05", user="u1", contact="A")])
    staging.build()
    staging.consume_downstream_journal()
    forget_staging_caches(staging.con)
    counts = staging.build()
    assert counts.contacts_recomputed is None and counts.events_loaded == 2
    assert all(staging.journaled(step) == "everything" for step in DOWNSTREAM)
