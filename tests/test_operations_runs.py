"""One run at a time (issue 7, points 1 and 13), no accidental empty publish (point 12) and
files never skipped silently (point 14), with real `closeconv run` processes and a real,
persistent Dagster instance."""

from __future__ import annotations

import gzip
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import pytest
import yaml
from click.testing import CliRunner

from closeconv.cli import main
from closeconv.config import Settings
from closeconv.warehouse import pipeline_busy, pipeline_lock
from operations_helpers import CLOSECONV, hermetic_env, project, run_flags, scalar, write_events
from pipelines.defs.jobs import CLOSECONV_JOB, PIPELINE_TAG
from pipelines.defs.resources import LandingResource, WarehouseResource, resources_for
from pipelines.runner import closeconv_instance

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def _no_developer_settings(monkeypatch):
    for name in list(__import__("os").environ):
        if name.startswith("CLOSECONV_") or name == "DAGSTER_HOME":
            monkeypatch.delenv(name)


def _settings(root: Path) -> Settings:
    return Settings(landing_dir=root / "landing", warehouse_path=root / "wh" / "warehouse.duckdb",
                    workflows_dir=root / "workflows", reference_dir=root / "reference")


def test_two_runs_started_together_queue_and_publish_consistent_tables(tmp_path):
    root = project(tmp_path)
    write_events(root / "landing" / "a.jsonl", range(5_000))
    settings = _settings(root)
    first = subprocess.Popen([str(CLOSECONV), "run", "--quiet", *run_flags(root)], cwd=root, env=hermetic_env(),
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while not pipeline_busy(settings):  # the first run holds the pipeline …
            assert first.poll() is None and time.monotonic() < deadline, first.communicate()
            time.sleep(0.05)
        write_events(root / "landing" / "b.jsonl", range(5_000, 5_500))  # … a file lands …
        second = subprocess.Popen([str(CLOSECONV), "run", "--quiet", *run_flags(root)], cwd=root, env=hermetic_env(),
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        out1, err1 = first.communicate(timeout=300)
        out2, err2 = second.communicate(timeout=300)
    finally:
        for p in (first, locals().get("second")):
            if p is not None and p.poll() is None:
                p.kill()
    assert first.returncode == 0, err1
    assert second.returncode == 0, err2
    assert "waiting for the closeconv run" in err2  # it queued behind the first

    # Both runs are in the persistent instance, one after the other, never side by side.
    with closeconv_instance(settings) as instance:
        records = sorted(instance.get_run_records(dg.RunsFilter(job_name=CLOSECONV_JOB)), key=lambda r: r.start_time)
    assert [r.dagster_run.status for r in records] == [dg.DagsterRunStatus.SUCCESS] * 2
    assert records[1].start_time >= records[0].end_time

    # The published warehouse is one run's output over one snapshot, every table agreeing.
    wh = settings.warehouse_path
    runs = scalar(wh, "SELECT count(*) FROM pipeline_runs")
    assert runs == 2
    last = dict(zip(
        ["landing_files", "events_loaded", "conversations_closed", "records_read", "run_id"],
        __import__("duckdb").connect(str(wh), read_only=True).sql(
            "SELECT landing_files, events_loaded, conversations_closed, records_read, run_id "
            "FROM pipeline_runs ORDER BY published_at DESC LIMIT 1").fetchall()[0]))
    assert last["run_id"] == records[1].dagster_run.run_id == scalar(wh, "SELECT run_id FROM closeconv_meta")
    assert last["landing_files"] == 2 and last["records_read"] == 16_500
    assert scalar(wh, "SELECT count(*) FROM events") == last["events_loaded"] == 16_500
    assert scalar(wh, "SELECT count(*) FROM conversations WHERE status = 'closed'") == last["conversations_closed"] == 5_500
    assert scalar(wh, "SELECT count(*) FROM events e ANTI JOIN conversations c USING (conversation_id)") == 0
    assert scalar(wh, "SELECT sum(conversations_closed) FROM daily_conversation_metrics") == 5_500


def test_sensor_skips_with_a_reason_while_a_run_holds_the_pipeline(tmp_path):
    from pipelines.definitions import defs

    root = project(tmp_path)
    write_events(root / "landing" / "a.jsonl", range(3))
    settings = _settings(root)
    sensor = defs().resolve_sensor_def("landing_folder_sensor")
    resources = {"landing": LandingResource(path=str(root / "landing")),
                 "warehouse": WarehouseResource(path=str(settings.warehouse_path))}
    with dg.DagsterInstance.ephemeral() as instance:
        with pipeline_lock(settings):  # as a `closeconv run` in another process would
            with dg.build_sensor_context(cursor=None, resources=resources, instance=instance) as context:
                busy = sensor(context)
        assert isinstance(busy, dg.SkipReason)
        assert "holds" in busy.skip_message and context.cursor is None  # the change is not swallowed

        # A queued or running closeconv run in the instance (e.g. started from the UI).
        job = defs().resolve_job_def(CLOSECONV_JOB)
        run = instance.create_run_for_job(job_def=job, status=dg.DagsterRunStatus.STARTED)
        with dg.build_sensor_context(cursor=None, resources=resources, instance=instance) as context:
            skipped = sensor(context)
        assert isinstance(skipped, dg.SkipReason) and run.run_id in skipped.skip_message
        instance.report_run_failed(run)
        with dg.build_sensor_context(cursor=None, resources=resources, instance=instance) as context:
            assert isinstance(sensor(context), dg.RunRequest)


def test_instances_queue_closeconv_runs_one_at_a_time(tmp_path, monkeypatch):
    """`closeconv run`'s instance and the project's dagster.yaml (what `dg dev` uses without
    DAGSTER_HOME) both allow one closeconv run at a time, and keep state under data/.dagster."""
    from dagster._core.instance.ref import InstanceRef

    from pipelines.definitions import defs

    assert defs().resolve_job_def(CLOSECONV_JOB).tags[PIPELINE_TAG] == "main"
    with closeconv_instance(_settings(project(tmp_path))) as instance:
        queue = instance.get_concurrency_config().run_queue_config
        assert queue.max_concurrent_runs == 1
        assert {"key": PIPELINE_TAG, "limit": 1} in queue.tag_concurrency_limits
    assert (tmp_path / "wh" / ".dagster" / "dagster.yaml").is_file()

    monkeypatch.chdir(tmp_path)  # as `dg dev` does: cwd is the project root
    config = yaml.safe_load((REPO / "dagster.yaml").read_text())
    assert config["storage"]["sqlite"]["base_dir"] == "data/.dagster"
    temp = tmp_path / ".tmp_dagster_home_test"
    temp.mkdir()
    with dg.DagsterInstance.from_ref(InstanceRef.from_dir(str(temp), config_dir=str(REPO))) as dev:
        assert dev.get_concurrency_config().run_queue_config.max_concurrent_runs == 1
        dev.get_runs()  # creates its storage
    assert (tmp_path / "data" / ".dagster" / "history" / "runs.db").is_file()


def test_configuration_failure_in_a_dagster_run_reads_as_its_message(tmp_path):
    from pipelines.definitions import defs

    root = project(tmp_path)
    bad = _settings(root).with_(timezone="localtime")
    with dg.DagsterInstance.ephemeral() as instance:
        result = defs().resolve_job_def(CLOSECONV_JOB).execute_in_process(
            instance=instance, resources=resources_for(bad), raise_on_error=False)
    assert not result.success
    failure = next(e for e in result.all_events if e.is_step_failure)
    description = failure.step_failure_data.user_failure_data.description
    assert description.startswith("configuration error: unknown timezone 'localtime'")
    assert not (root / "wh" / "warehouse.duckdb").exists()


def test_cli_runs_are_recorded_in_the_persistent_instance(tmp_path):
    root = project(tmp_path)
    write_events(root / "landing" / "a.jsonl", range(3))
    for _ in range(2):
        result = CliRunner().invoke(main, ["run", "--quiet", *run_flags(root)])
        assert result.exit_code == 0, result.output
    with closeconv_instance(_settings(root)) as instance:
        runs = instance.get_runs(dg.RunsFilter(job_name=CLOSECONV_JOB))
        # closeconv writes through its pooled SQLite storage (pipelines/dagster_storage.py) …
        assert type(instance.event_log_storage).__name__ == "PooledSqliteEventLogStorage"
    assert len(runs) == 2 and all(r.status == dg.DagsterRunStatus.SUCCESS for r in runs)
    published = scalar(root / "wh" / "warehouse.duckdb", "SELECT run_id FROM closeconv_meta")
    assert published == runs[0].run_id  # newest first

    # … and Dagster's stock storage (what `dg dev` opens) reads the same history: both runs, each
    # run's materializations, the latest materialization of every asset, the check results.
    with dg.DagsterInstance.from_config(str(_settings(root).instance_dir)) as stock:
        assert type(stock.event_log_storage).__name__ == "SqliteEventLogStorage"
        assert [r.run_id for r in stock.get_runs(dg.RunsFilter(job_name=CLOSECONV_JOB))] == [r.run_id for r in runs]
        materialized = stock.get_records_for_run(runs[0].run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION).records
        assert {r.asset_key.path[-1] for r in materialized} >= {"landing_files", "events", "conversations", "warehouse_file"}
        latest = stock.get_latest_materialization_event(dg.AssetKey("events"))
        assert latest is not None and latest.run_id == runs[0].run_id
        checks = stock.get_records_for_run(runs[0].run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION).records
        assert checks and all(r.event_log_entry.dagster_event.event_specific_data.passed for r in checks)


def test_a_run_reads_dagsters_migration_scripts_once_and_stamps_the_same_head():
    from alembic.script import ScriptDirectory
    from dagster._core.storage.sql import check_alembic_revision, get_alembic_config
    import dagster._core.storage.event_log.sqlite.sqlite_event_log as event_log
    from pipelines.dagster_migrations import one_script_scan

    config = get_alembic_config(event_log.__file__)
    head = ScriptDirectory.from_config(config).as_revision_number("head")
    with one_script_scan():
        first, second = ScriptDirectory.from_config(config), ScriptDirectory.from_config(get_alembic_config(event_log.__file__))
        assert first is second and first.as_revision_number("head") == head
    assert ScriptDirectory.from_config(config) is not ScriptDirectory.from_config(config)  # alembic's own again
    import sqlalchemy
    with one_script_scan(), sqlalchemy.create_engine("sqlite://").connect() as conn:
        assert check_alembic_revision(config, conn) == (None, head)


def test_the_run_console_collects_garbage_again_once_the_job_is_built():
    # closeconv.cli:console turns cyclic GC off for a run's imports; end_of_imports turns it back
    # on with those objects frozen, and leaves a process that never turned it off alone.
    probe = ("import gc, sys; {off}from pipelines.runner import end_of_imports; end_of_imports(); "
             "print(gc.isenabled(), gc.get_freeze_count() > 0)")
    for off, expected in (("gc.disable(); ", "True True"), ("", "True False")):
        out = subprocess.run([sys.executable, "-c", probe.format(off=off)], cwd=REPO, capture_output=True, text=True, check=True)
        assert out.stdout.split() == expected.split(), out.stderr


# --------------------------------------------------------------------------------------
# No accidental empty publish; no file skipped silently


def test_a_run_that_would_shrink_the_warehouse_refuses_unless_allowed(tmp_path):
    root = project(tmp_path)
    write_events(root / "landing" / "a.jsonl", range(5))
    write_events(root / "landing" / "b.jsonl", range(5, 10))
    wh = root / "wh" / "warehouse.duckdb"
    assert CliRunner().invoke(main, ["run", "--quiet", *run_flags(root)]).exit_code == 0
    assert scalar(wh, "SELECT count(*) FROM events") == 30

    (root / "landing" / "b.jsonl").unlink()
    refused = CliRunner().invoke(main, ["run", "--quiet", *run_flags(root)])
    assert refused.exit_code == 1, refused.output
    assert "refusing to publish" in refused.output and "b.jsonl" in refused.output
    assert "--allow-shrink" in refused.output
    assert scalar(wh, "SELECT count(*) FROM events") == 30 and scalar(wh, "SELECT count(*) FROM pipeline_runs") == 1

    # Everything rejected: said so.
    (root / "landing" / "a.jsonl").write_text("not json\n" * 15)
    refused = CliRunner().invoke(main, ["run", "--quiet", *run_flags(root)])
    assert refused.exit_code == 1 and "all 15 records read were rejected" in refused.output

    allowed = CliRunner().invoke(main, ["run", "--quiet", "--allow-shrink", *run_flags(root)])
    assert allowed.exit_code == 0, allowed.output
    assert scalar(wh, "SELECT count(*) FROM events") == 0
    assert scalar(wh, "SELECT count(*) FROM pipeline_runs") == 2  # the refused runs never published

    # The environment variable (and so the Dagster resource setting) does the same.
    write_events(root / "landing" / "a.jsonl", range(3))
    assert CliRunner().invoke(main, ["run", "--quiet", *run_flags(root)]).exit_code == 0
    (root / "landing" / "a.jsonl").unlink()
    via_env = CliRunner(env={"CLOSECONV_ALLOW_SHRINK": "1"}).invoke(main, ["run", "--quiet", *run_flags(root)])
    assert via_env.exit_code == 0, via_env.output


def test_unknown_file_types_are_counted_and_a_truncated_gz_is_quarantined_whole(tmp_path):
    root = project(tmp_path)
    write_events(root / "landing" / "a.jsonl", range(4))
    (root / "landing" / "notes.txt").write_text("hello")
    (root / "landing" / "export.json").write_text("{}")
    (root / "landing" / ".partial.jsonl.tmp").write_text("{")  # hidden: an upload in progress
    full = gzip.compress((root / "landing" / "a.jsonl").read_bytes() * 50)
    (root / "landing" / "late.jsonl.gz").write_bytes(full[: len(full) // 2])
    result = CliRunner().invoke(main, ["run", "--quiet", *run_flags(root)])
    assert result.exit_code == 0, result.output
    line = next(ln for ln in result.stdout.splitlines() if "files not read" in ln)
    assert line.split()[3] == "2" and "unknown type" in line
    wh = root / "wh" / "warehouse.duckdb"
    assert scalar(wh, "SELECT files_unknown_type FROM pipeline_runs") == 2
    rows = __import__("duckdb").connect(str(wh), read_only=True).sql(
        "SELECT line, reason_code, reason FROM rejected_events WHERE file = 'late.jsonl.gz'").fetchall()
    assert len(rows) == 1 and rows[0][0] == 0 and rows[0][1] == "unreadable_file"
    assert "runcated" in rows[0][2]
