"""The landing folder as an inbox (issue 8): processed files move to the archive folder, their
events stay, and a rebuild from an empty staging database reads landing and archive together."""

import shutil

import pytest

from closeconv.commands.run import _failure_message, run_pipeline
from closeconv.config import ConfigError
from tests.conftest import Warehouse, closed, recv, sent
from tests.operations_helpers import closeconv


def _run(env, archive):
    result = run_pipeline(env.settings().with_(archive_dir=archive), quiet=True)
    assert result.success, _failure_message(result)
    return Warehouse(env.warehouse_path)


def _events(wh):
    return wh.rows("SELECT event_id, conversation_id, source_file FROM events ORDER BY event_id")


def test_processed_files_move_to_the_archive_and_their_events_stay(closeconv_env):
    env, archive = closeconv_env, closeconv_env.root / "archive"
    (env.landing / "day1").mkdir()
    env.write_jsonl("day1/a.jsonl", [recv("09:00:00", event_id="e1"), sent("09:01:00", user="u1", event_id="e2")])
    wh = _run(env, archive)
    assert not (env.landing / "day1" / "a.jsonl").exists()
    assert (archive / "day1" / "a.jsonl").is_file()
    assert [r["event_id"] for r in _events(wh)] == ["e1", "e2"]

    # A second file lands: both files' events are in the warehouse, the archived one not parsed again.
    env.write_jsonl("b.jsonl", [closed("09:30:00", user="u1", category="Billing", event_id="e3")])
    wh = _run(env, archive)
    rows = _events(wh)
    assert [r["event_id"] for r in rows] == ["e1", "e2", "e3"]
    assert {r["source_file"] for r in rows} == {"day1/a.jsonl", "b.jsonl"}
    assert wh.scalar("SELECT count(*) FROM conversations WHERE status = 'closed'") == 1
    assert sorted(p.name for p in archive.rglob("*.jsonl")) == ["a.jsonl", "b.jsonl"]
    assert not list(env.landing.rglob("*.jsonl"))

    # A rebuild from nothing (staging removed) reads the archive: the same events.
    before = _events(wh)
    shutil.rmtree(env.warehouse_path.parent / ".closeconv")
    assert _events(_run(env, archive)) == before


def test_a_redelivered_file_in_landing_wins_over_its_archived_version(closeconv_env):
    env, archive = closeconv_env, closeconv_env.root / "archive"
    env.write_jsonl("a.jsonl", [recv("09:00:00", event_id="e1")])
    _run(env, archive)
    env.write_jsonl("a.jsonl", [recv("09:00:00", event_id="e1"), sent("09:05:00", user="u1", event_id="e2")])
    wh = _run(env, archive)
    assert [r["event_id"] for r in _events(wh)] == ["e1", "e2"]
    assert (archive / "a.jsonl").read_text().count("\n") == 2  # the new version replaced the old one


def test_without_an_archive_files_stay(closeconv_env):
    env = closeconv_env
    env.write_jsonl("a.jsonl", [recv("09:00:00", event_id="e1")])
    env.run()
    assert (env.landing / "a.jsonl").is_file()


@pytest.mark.parametrize("where", ["inside", "same", "file"])
def test_an_archive_that_overlaps_the_landing_folder_is_a_config_error(closeconv_env, where):
    env = closeconv_env
    archive = {"inside": env.landing / "archive", "same": env.landing, "file": env.root / "archive.txt"}[where]
    if where == "file":
        archive.write_text("not a folder")
    with pytest.raises(ConfigError, match="archive"):
        env.settings().with_(archive_dir=archive).check()


def test_cli_archive_flag_and_bad_value_exit_2(closeconv_env):
    env = closeconv_env
    env.write_jsonl("a.jsonl", [recv("09:00:00", event_id="e1")])
    args = ["run", "--landing", str(env.landing), "--warehouse", str(env.warehouse_path),
            "--reference", str(env.reference), "--quiet"]
    bad = closeconv([*args, "--archive", str(env.landing / "old")], cwd=env.root)
    assert bad.returncode == 2, bad.stdout + bad.stderr
    assert "overlap" in bad.stderr and "--archive" in bad.stderr
    assert (env.landing / "a.jsonl").is_file()
    ok = closeconv(args, cwd=env.root, CLOSECONV_ARCHIVE=str(env.root / "archive"))
    assert ok.returncode == 0, ok.stderr
    assert (env.root / "archive" / "a.jsonl").is_file() and not (env.landing / "a.jsonl").exists()
