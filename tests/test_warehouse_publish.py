"""The warehouse contract for analysts (spec §7) and the `closeconv run` command.

(a) an analyst holding the warehouse open in another process never blocks a run;
(b) a run that fails halfway leaves the previous warehouse intact;
(c) `closeconv run`: exit codes, summary, and CLOSECONV_* settings.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import dataclasses
import duckdb
import pytest
from click.testing import CliRunner

from closeconv import changes, schemas
from closeconv.cli import main
from closeconv.commands.run import _failure_message, run_pipeline
from closeconv.warehouse import PUBLIC_TABLES, publish, staging_connection
from conftest import TEMPLATE_UNASSIGN, ClosecovEnv, Warehouse, closed, recv, sent
from helpers.os_faults import RenameFails
from operations_helpers import content_hash

ANALYST = textwrap.dedent(
    """
    import sys, duckdb
    con = duckdb.connect(sys.argv[1], read_only=True)
    print("ready", con.sql("SELECT count(*) FROM conversations").fetchall()[0][0], flush=True)
    sys.stdin.readline()  # hold the connection open until the test says so
    print("after", con.sql("SELECT count(*) FROM conversations").fetchall()[0][0],
          con.sql("SELECT count(*) FROM events").fetchall()[0][0], flush=True)
    con.close()
    """
)


def conversation(contact: str, hour: int) -> list[dict]:
    return [
        recv(f"{hour:02d}:00", contact=contact),
        sent(f"{hour:02d}:02", user="u1", contact=contact),
        closed(f"{hour:02d}:10", user="u1", contact=contact),
    ]


def prepared(env: ClosecovEnv) -> ClosecovEnv:
    if TEMPLATE_UNASSIGN.exists():
        env.use_unassign_template()
    return env


def published_anew(env: ClosecovEnv, root: Path) -> ClosecovEnv:
    """A new project under `root` with a copy of `env`'s landing folder, run once from scratch."""
    fresh = prepared(ClosecovEnv(root))
    for path in env.landing.iterdir():
        shutil.copy(path, fresh.landing / path.name)
    fresh.run()
    return fresh


def counts(wh: Warehouse) -> dict[str, int]:
    return {t: wh.scalar(f"SELECT count(*) FROM {t}") for t in ("events", "conversations", "rejected_events")}


# --------------------------------------------------------------------------------------
# (a) readers never block a run


def test_open_analyst_connection_does_not_block_a_run(closeconv_env):
    env = prepared(closeconv_env)
    env.write_jsonl("day1.jsonl", conversation("c1", 9))
    env.run()

    analyst = subprocess.Popen(
        [sys.executable, "-c", ANALYST, str(env.warehouse_path)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        assert analyst.stdout.readline().split() == ["ready", "1"]

        env.write_jsonl("day2.jsonl", conversation("c2", 10) + conversation("c3", 11))
        wh = env.run()  # asserts success

        # The analyst's session is alive and still reads (the version it opened).
        out, err = analyst.communicate("go\n", timeout=60)
        assert analyst.returncode == 0, err
        assert out.split() == ["after", "1", "3"]
    finally:
        if analyst.poll() is None:
            analyst.kill()
            analyst.wait()

    # A new connection sees the new data.
    assert counts(wh) == {"events": 9, "conversations": 3, "rejected_events": 0}
    assert wh.scalar("SELECT count(*) FROM pipeline_runs") == 2


def test_reader_in_the_same_process_does_not_block_a_run(closeconv_env):
    env = prepared(closeconv_env)
    env.write_jsonl("day1.jsonl", conversation("c1", 9))
    wh = env.run()
    reader = wh.connect()
    try:
        env.write_jsonl("day2.jsonl", conversation("c2", 10))
        env.run()
        assert reader.sql("SELECT count(*) FROM conversations").fetchall() == [(1,)]
    finally:
        reader.close()
    assert wh.scalar("SELECT count(*) FROM conversations") == 2


def test_duckdb_shell_for_analysts_opens_the_published_warehouse(closeconv_env):
    """The published file is in a storage format the `duckdb` shell on PyPI (1.5) can read.

    duckdb-cli is a dependency: it is run as a module, which needs no `duckdb` script on PATH
    or in the venv's bin/, and fails loudly if the package is missing."""
    env = prepared(closeconv_env)
    env.write_jsonl("day1.jsonl", conversation("c1", 9) + conversation("c2", 10))
    env.run()
    proc = subprocess.run(
        [sys.executable, "-m", "duckdb_cli", "-readonly", "-csv", str(env.warehouse_path),
         "SELECT count(*) AS n FROM conversations WHERE status = 'closed'"],
        capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["n", "2"]


# --------------------------------------------------------------------------------------
# (b) a failed run leaves the previous warehouse intact


@pytest.fixture
def published(closeconv_env) -> tuple[ClosecovEnv, dict[str, int]]:
    env = prepared(closeconv_env)
    env.write_jsonl("day1.jsonl", conversation("c1", 9) + ['{"broken'])
    before = counts(env.run())
    assert before == {"events": 3, "conversations": 1, "rejected_events": 1}
    env.write_jsonl("day2.jsonl", conversation("c2", 10) + conversation("c3", 11))
    return env, before


def _assert_previous_warehouse_intact(env: ClosecovEnv, before: dict[str, int]) -> None:
    wh = Warehouse(env.warehouse_path)
    assert counts(wh) == before
    assert wh.scalar("SELECT count(*) FROM pipeline_runs") == 1
    assert wh.scalar("SELECT count(*) FROM daily_conversation_metrics") == 1
    leftovers = [p.name for p in env.warehouse_path.parent.iterdir() if p.name.startswith(".warehouse.duckdb.publish-")]
    assert leftovers == []


def test_step_failing_halfway_leaves_previous_warehouse(published, monkeypatch):
    env, before = published

    def explode(*args, **kwargs):
        raise RuntimeError("disk full while building conversations")

    monkeypatch.setattr("closeconv.conversation_tables.build_conversations", explode)
    result = run_pipeline(env.settings(), quiet=True)
    assert result.success is False
    _assert_previous_warehouse_intact(env, before)

    # Once the fault is gone the next run publishes everything.
    monkeypatch.undo()
    assert counts(env.run()) == {"events": 9, "conversations": 3, "rejected_events": 1}


def test_failing_blocking_check_leaves_previous_warehouse(published, monkeypatch):
    env, before = published

    # A rule no conversation can meet: the check that runs is the one in closeconv.schemas.
    rule = schemas.CHECKS_BY_NAME[schemas.CONVERSATIONS_VALID]
    monkeypatch.setitem(schemas.CHECKS_BY_NAME, schemas.CONVERSATIONS_VALID, dataclasses.replace(
        rule, sql="SELECT 'conversation ' || conversation_id || ': not allowed' AS problem FROM conversations"))
    result = run_pipeline(env.settings(), quiet=True)
    assert result.success is False
    evaluations = [e.event_specific_data for e in result.all_events if e.event_type_value == "ASSET_CHECK_EVALUATION"]
    assert any(ev.check_name == "conversations_valid" and not ev.passed for ev in evaluations)
    _assert_previous_warehouse_intact(env, before)
    # What `closeconv run` prints for it names the check.
    assert "check conversations_valid on conversations failed" in _failure_message(result)


def test_cli_reports_a_failed_run_and_keeps_the_warehouse(published, monkeypatch):
    env, before = published

    def explode(*args, **kwargs):
        raise RuntimeError("simulated crash in sessionize")

    monkeypatch.setattr("closeconv.pipeline.sessionize", explode)
    result = CliRunner().invoke(main, ["run", "--quiet", *_flags(env)])
    assert result.exit_code == 1, result.output
    assert "FAILED" in result.output
    assert "simulated crash in sessionize" in result.output
    assert "left as it was" in result.output
    _assert_previous_warehouse_intact(env, before)


# --------------------------------------------------------------------------------------
# (c) closeconv run


def _flags(env: ClosecovEnv) -> list[str]:
    return ["--landing", str(env.landing), "--warehouse", str(env.warehouse_path),
            "--workflows", str(env.workflows), "--reference", str(env.reference)]


def test_cli_run_exits_0_with_bad_records_and_prints_the_summary(closeconv_env):
    env = prepared(closeconv_env)
    dup = recv("08:00", contact="c9", event_id="dup")
    env.write_jsonl("events.jsonl", conversation("c1", 9) + [dup, dup, "not json", '{"event_id": "x"}'])
    result = CliRunner().invoke(main, ["run", "--quiet", *_flags(env)])
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "closeconv run: done" in out
    lines = {line.strip().split("  ")[0]: line for line in out.splitlines() if line.startswith("  ")}
    assert lines["records read"].split()[2] == "7"
    assert lines["events loaded"].split()[2] == "4"
    assert lines["duplicates dropped"].split()[2] == "1"
    assert lines["rejected"].split()[1] == "2"
    assert "invalid_json" in out and "missing_field" in out
    assert "1 closed, 1 open" in out
    assert str(env.warehouse_path) in out
    assert Warehouse(env.warehouse_path).scalar("SELECT count(*) FROM rejected_events") == 2


def test_cli_missing_landing_folder_exits_2(closeconv_env):
    env = closeconv_env
    missing = env.root / "no-such-landing"
    result = CliRunner().invoke(main, ["run", *_flags(env)[2:], "--landing", str(missing)])
    assert result.exit_code == 2, result.output
    assert "landing folder" in result.output and str(missing) in result.output
    assert "does not exist" in result.output
    assert not env.warehouse_path.exists()


def test_cli_unknown_timezone_exits_2(closeconv_env):
    result = CliRunner().invoke(main, ["run", *_flags(closeconv_env), "--timezone", "Mars/Olympus_Mons"])
    assert result.exit_code == 2, result.output
    assert "unknown timezone 'Mars/Olympus_Mons'" in result.output
    assert "--timezone" in result.output  # where the bad value came from
    assert "IANA" in result.output


def test_cli_entry_point_exits_2_for_a_missing_landing_folder(tmp_path):
    closeconv = Path(sys.executable).parent / "closeconv"
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLOSECONV_")}
    env["CLOSECONV_LANDING"] = str(tmp_path / "absent")
    env["CLOSECONV_WAREHOUSE"] = str(tmp_path / "wh" / "warehouse.duckdb")
    proc = subprocess.run([str(closeconv), "run"], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "CLOSECONV_LANDING" in proc.stderr and str(tmp_path / "absent") in proc.stderr


def test_cli_honors_closeconv_environment_variables(closeconv_env):
    env = prepared(closeconv_env)
    env.write_jsonl("events.jsonl", [recv("2026-03-08T04:00:00Z"), closed("2026-03-08T04:30:00Z", user="u1")])
    variables = {
        "CLOSECONV_LANDING": str(env.landing),
        "CLOSECONV_WAREHOUSE": str(env.warehouse_path),
        "CLOSECONV_WORKFLOWS": str(env.workflows),
        "CLOSECONV_REFERENCE": str(env.reference),
        "CLOSECONV_TIMEZONE": "America/New_York",
    }
    result = CliRunner(env=variables).invoke(main, ["run", "--quiet"])
    assert result.exit_code == 0, result.output
    wh = Warehouse(env.warehouse_path)
    assert wh.scalar("SELECT timezone FROM pipeline_runs") == "America/New_York"
    assert str(wh.scalar("SELECT day FROM daily_conversation_metrics")) == "2026-03-07"
    assert "timezone America/New_York" in result.stdout

    # A flag wins over the environment; a bad environment value is named in the error.
    bad = CliRunner(env={**variables, "CLOSECONV_TIMEZONE": "Not/AZone"}).invoke(main, ["run", "--quiet"])
    assert bad.exit_code == 2 and "CLOSECONV_TIMEZONE" in bad.output
    ok = CliRunner(env={**variables, "CLOSECONV_TIMEZONE": "Not/AZone"}).invoke(
        main, ["run", "--quiet", "--timezone", "UTC"])
    assert ok.exit_code == 0, ok.output
    assert str(wh.scalar("SELECT day FROM daily_conversation_metrics")) == "2026-03-08"


def test_failed_publish_leaves_no_trace_in_pipeline_runs(published, monkeypatch):
    """A publish that fails at the swap must not leave its run in the staged `pipeline_runs`,
    or the next successful run would publish a run that never was."""
    env, before = published
    import closeconv.warehouse as warehouse_module

    monkeypatch.setattr(warehouse_module, "os", RenameFails())
    result = run_pipeline(env.settings(), quiet=True)
    assert result.success is False
    _assert_previous_warehouse_intact(env, before)

    monkeypatch.undo()
    wh = env.run()
    assert wh.scalar("SELECT count(*) FROM pipeline_runs") == 2  # the first run and this one
    assert wh.scalar("SELECT events_loaded FROM pipeline_runs ORDER BY published_at DESC LIMIT 1") == 9


# --------------------------------------------------------------------------------------
# (d) publishing scales with the change: a copy of the published file, only changed tables written


def _written(env: ClosecovEnv) -> dict[str, str]:
    """How the last publish wrote each table (kept / delta / rewritten), as recorded in staging."""
    con = duckdb.connect(str(env.settings().staging_path), read_only=True)
    try:
        return dict(con.sql("SELECT table_name, written FROM published_tables").fetchall())
    finally:
        con.close()


def _publish_directly(env: ClosecovEnv, run_id: str, change: str | None = None) -> dict[str, str]:
    """publish() on the staging database as a run leaves it, after `change` (SQL) to staging."""
    settings = env.settings()
    with staging_connection(settings) as con:
        if change:
            con.sql(change)
            # A change by hand, journaled as a step journals what it wrote.
            changes.mark_everything(con, [changes.PUBLISH])
        publish(con, settings, run_id)
    return _written(env)


def _many_conversations(first: int, count: int, hour: int) -> list[dict]:
    return [e for i in range(first, first + count) for e in conversation(f"c{i}", hour)]


def test_a_run_with_nothing_new_keeps_every_table_and_only_adds_its_run(closeconv_env):
    env = prepared(closeconv_env)
    env.write_jsonl("day1.jsonl", conversation("c1", 9) + conversation("c2", 10))
    env.run()
    assert set(_written(env).values()) == {"rewritten"}  # first publish: a new file
    before = content_hash(env.warehouse_path)

    wh = env.run()
    assert set(_written(env).values()) == {"kept"}
    assert content_hash(env.warehouse_path) == before
    assert wh.scalar("SELECT count(*) FROM pipeline_runs") == 2
    assert wh.scalar("SELECT run_id FROM closeconv_meta") == wh.scalar(
        "SELECT run_id FROM pipeline_runs ORDER BY published_at DESC LIMIT 1")


def test_changed_tables_are_written_unchanged_ones_kept_and_the_result_equals_a_full_publish(closeconv_env, tmp_path):
    env = prepared(closeconv_env)
    env.write_jsonl("day1.jsonl", _many_conversations(0, 40, 9))
    env.run()
    env.write_jsonl("day2.jsonl", conversation("c1000", 11))  # one new conversation, later than all
    wh = env.run()
    written = _written(env)
    assert written["users"] == written["teams"] == written["categories"] == "kept"
    # 3 of 123 events are new: the steps journal their contact, so its rows are patched by contact
    assert written["events"] == written["conversations"] == "by contact"
    assert wh.scalar("SELECT count(*) FROM conversations") == 41

    # The same landing folder published from scratch gives the same tables.
    fresh = published_anew(env, tmp_path / "fresh")
    assert content_hash(fresh.warehouse_path) == content_hash(env.warehouse_path)


def test_a_full_publish_copies_the_staging_file_with_only_the_public_tables_left(closeconv_env, tmp_path, monkeypatch):
    env = prepared(closeconv_env)
    env.write_jsonl("day1.jsonl", _many_conversations(0, 40, 9) + [{"broken": True}])
    env.run()
    published = Warehouse(env.warehouse_path)
    tables = {r["table_name"] for r in published.rows("SELECT table_name FROM duckdb_tables()")}
    assert tables == {*PUBLIC_TABLES, "closeconv_meta"}  # no staging table (validated_records, staging_meta, ...)
    assert published.scalar("SELECT count(*) FROM duckdb_constraints()") == 0

    # The same tables as copying them one by one, the way for a staging file in another storage format.
    import closeconv.warehouse as warehouse_module

    monkeypatch.setattr(warehouse_module, "_start_from_staging_copy", lambda *args: False)
    copied = published_anew(env, tmp_path / "copied")
    assert content_hash(copied.warehouse_path) == content_hash(env.warehouse_path)
    columns = "SELECT table_name, column_name, data_type, is_nullable FROM duckdb_columns() ORDER BY ALL"
    assert Warehouse(copied.warehouse_path).rows(columns) == published.rows(columns)


def test_a_warehouse_file_not_written_by_the_last_run_is_written_anew_not_patched(closeconv_env):
    env = prepared(closeconv_env)
    env.write_jsonl("day1.jsonl", conversation("c1", 9))
    env.run()
    # Replaced by hand (here: by a copy of itself, so only its mtime tells).
    copy = env.warehouse_path.with_name("copy.duckdb")
    shutil.copyfile(env.warehouse_path, copy)
    os.replace(copy, env.warehouse_path)
    wh = env.run()
    assert set(_written(env).values()) == {"rewritten"}
    assert wh.scalar("SELECT count(*) FROM pipeline_runs") == 2


def test_a_table_whose_columns_change_is_rewritten(closeconv_env):
    env = prepared(closeconv_env)
    env.write_jsonl("day1.jsonl", conversation("c1", 9))
    env.run()
    written = _publish_directly(env, "new-column", "ALTER TABLE conversations ADD COLUMN label VARCHAR DEFAULT 'n'")
    assert written["conversations"] == "rewritten"
    assert written["events"] == "kept"
    assert Warehouse(env.warehouse_path).rows("SELECT conversation_id, label FROM conversations") == [
        {"conversation_id": Warehouse(env.warehouse_path).scalar("SELECT min(conversation_id) FROM events"), "label": "n"}]


def test_a_reader_keeps_the_version_it_opened_while_a_patched_copy_is_published(closeconv_env):
    env = prepared(closeconv_env)
    env.write_jsonl("day1.jsonl", _many_conversations(0, 20, 9))
    wh = env.run()
    reader = wh.connect()
    try:
        env.write_jsonl("day2.jsonl", conversation("c999", 12))
        env.run()
        assert _written(env)["conversations"] == "by contact"
        assert reader.sql("SELECT count(*) FROM conversations").fetchall() == [(20,)]
    finally:
        reader.close()
    assert wh.scalar("SELECT count(*) FROM conversations") == 21


KILLED_PUBLISH = textwrap.dedent(
    """
    import os, signal, sys
    from pathlib import Path
    from closeconv import changes, warehouse
    from closeconv.config import Settings

    def killed(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGKILL)

    settings = Settings(warehouse_path=Path(sys.argv[1]))
    if sys.argv[2] == "while-writing":  # the copy attached and being written
        real = warehouse.bring_up_to_date
        def bring_up_to_date(con, *args):
            real(con, *args)
            con.sql("CREATE TABLE publish_target.half_done AS SELECT * FROM range(100000)")
            killed()
        warehouse.bring_up_to_date = bring_up_to_date
    else:  # the new file written, fsynced, recorded; not yet renamed
        class KilledAtRename:
            def __getattr__(self, name):
                return getattr(os, name)
            replace = staticmethod(killed)
        warehouse.os = KilledAtRename()
    with warehouse.staging_connection(settings) as con:
        con.sql("DELETE FROM conversations WHERE conversation_id = (SELECT min(conversation_id) FROM conversations)")
        # a change no step made is journaled by hand (closeconv/changes.py): the next run redoes it
        changes.mark_everything(con, [changes.CONVERSATIONS, changes.PUBLISH])
        warehouse.publish(con, settings, "killed-run")
    """
)


@pytest.mark.parametrize("moment", ["while-writing", "at-rename"])
def test_a_publish_killed_midway_leaves_the_old_warehouse_and_the_next_run_cleans_up(closeconv_env, moment):
    env = prepared(closeconv_env)
    env.write_jsonl("day1.jsonl", conversation("c1", 9) + conversation("c2", 10))
    env.run()
    before = content_hash(env.warehouse_path)

    proc = subprocess.run([sys.executable, "-c", KILLED_PUBLISH, str(env.warehouse_path), moment],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    strays = [p.name for p in env.warehouse_path.parent.iterdir() if p.name.startswith(".warehouse.duckdb.publish-")]
    assert strays  # the half-written copy is still there …
    assert content_hash(env.warehouse_path) == before  # … but the warehouse is the old one
    assert Warehouse(env.warehouse_path).scalar("SELECT count(*) FROM pipeline_runs") == 1

    wh = env.run()  # the record of the killed publish matches no published file: a full publish
    assert [p.name for p in env.warehouse_path.parent.iterdir() if p.name.startswith(".warehouse.duckdb.publish-")] == []
    assert content_hash(env.warehouse_path) == before
    assert wh.scalar("SELECT count(*) FROM pipeline_runs") == 2


def test_the_file_does_not_grow_run_after_run(closeconv_env):
    env = prepared(closeconv_env)
    env.write_jsonl("day1.jsonl", _many_conversations(0, 3000, 9))
    env.run()
    sizes, ways = [], []
    for i in range(8):
        # Every event row changes (a rewrite); a twentieth of the conversations (a delta).
        written = _publish_directly(
            env, f"pass-{i}",
            f"UPDATE events SET summary = 'pass {i}'; "
            f"UPDATE conversations SET summary = 'pass {i}' WHERE hash(conversation_id) % 20 = {i}",
        )
        ways.append((written["events"], written["conversations"]))
        sizes.append(env.warehouse_path.stat().st_size)
    assert ("rewritten", "delta") in ways
    # Freed blocks are reused, and past VACUUM_FREE_SHARE of free space the file is written anew:
    # the file stays within a bound of its size after the first patched publish.
    assert max(sizes) <= 2 * sizes[0], sizes
    wh = Warehouse(env.warehouse_path)
    assert wh.scalar("SELECT count(*) FROM events WHERE summary = 'pass 7'") == 9000
    assert wh.scalar("SELECT count(*) FROM pipeline_runs") == 9
