"""The Dagster definitions load, and hold the job, schedule, sensor, assets and blocking checks."""

from __future__ import annotations

import json
import os

import dagster as dg
import pytest

from closeconv import schemas
from pipelines.defs.resources import LandingResource, WarehouseResource

EXPECTED_ASSETS = {
    "landing_files",
    "events",
    "rejected_events",
    "workflow_runs",
    "workflow_actions",
    "assignments",
    "workflow_drift",
    "conversations",
    "daily_conversation_metrics",
    "conversation_assignees",
    "user_messages_15min",
    "user_closes",
    "warehouse_file",
}
EXPECTED_BLOCKING_CHECKS = {
    ("events", schemas.EVENTS_MATCH_CONTRACT),
    ("rejected_events", schemas.RECORDS_ACCOUNTED_FOR),
    ("conversations", schemas.CONVERSATIONS_VALID),
    ("conversations", schemas.CONVERSATIONS_COVER_EVENTS),
    ("conversations", schemas.CONVERSATIONS_WITHIN_ONE_SESSION),
    ("workflow_runs", schemas.WORKFLOW_RUNS_VALID),
    ("workflow_actions", schemas.WORKFLOW_ACTIONS_VALID),
    ("assignments", schemas.ASSIGNMENTS_ORDERED_WITHOUT_OVERLAP),
    ("daily_conversation_metrics", schemas.DAILY_METRICS_ADD_UP),
    ("conversation_assignees", schemas.CONVERSATION_ASSIGNEES_VALID),
    ("user_messages_15min", schemas.USER_MESSAGES_ADD_UP),
    ("user_closes", schemas.USER_CLOSES_VALID),
}


@pytest.fixture(scope="module")
def definitions() -> dg.Definitions:
    from pipelines.definitions import defs

    d = defs()
    assert isinstance(d, dg.Definitions)
    dg.Definitions.validate_loadable(d)
    return d


def test_every_expected_asset_exists(definitions):
    keys = {k.to_user_string() for k in definitions.resolve_all_asset_keys()}
    assert EXPECTED_ASSETS <= keys


def test_blocking_checks_exist(definitions):
    graph = definitions.resolve_asset_graph()
    found = {(k.asset_key.to_user_string(), k.name): graph.get_check_spec(k).blocking for k in graph.asset_check_keys}
    for key in EXPECTED_BLOCKING_CHECKS:
        assert key in found, f"missing check {key}"
        assert found[key] is True, f"check {key} is not blocking"


def test_job_materializes_the_whole_graph_with_its_checks(definitions):
    job = definitions.resolve_job_def("closeconv_job")
    assert job.name == "closeconv_job"
    selected = {k.to_user_string() for k in job.asset_layer.selected_asset_keys}
    assert EXPECTED_ASSETS <= selected
    checks = {(k.asset_key.to_user_string(), k.name) for k in job.asset_layer.asset_graph.asset_check_keys}
    assert EXPECTED_BLOCKING_CHECKS <= checks


def test_hourly_schedule_is_running(definitions):
    schedule = definitions.resolve_schedule_def("hourly_refresh")
    assert schedule.job_name == "closeconv_job"
    assert schedule.cron_schedule == "0 * * * *"
    assert schedule.default_status == dg.DefaultScheduleStatus.RUNNING


def test_landing_sensor_is_running(definitions):
    sensor = definitions.resolve_sensor_def("landing_folder_sensor")
    assert sensor.job_name == "closeconv_job"
    assert sensor.default_status == dg.DefaultSensorStatus.RUNNING


def test_resources_come_from_closeconv_environment_variables(tmp_path, monkeypatch):
    """`dg dev` loads the definitions: their resources hold the values the environment sets
    (the same resolver as `closeconv run`), and the defaults when nothing is set."""
    from pipelines.defs.resources import resources as resource_defs

    for name in list(os.environ):
        if name.startswith("CLOSECONV_") or name == "DAGSTER_HOME":
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)  # no .env here
    defaults = resource_defs().resources
    assert defaults["landing"].path == "data/landing"
    assert defaults["warehouse"].path == "data/warehouse.duckdb" and defaults["warehouse"].timezone == "UTC"
    assert defaults["warehouse"].allow_shrink is False

    monkeypatch.setenv("CLOSECONV_LANDING", str(tmp_path / "in"))
    monkeypatch.setenv("CLOSECONV_WAREHOUSE", str(tmp_path / "wh.duckdb"))
    monkeypatch.setenv("CLOSECONV_WORKFLOWS", str(tmp_path / "wf"))
    monkeypatch.setenv("CLOSECONV_REFERENCE", str(tmp_path / "ref"))
    monkeypatch.setenv("CLOSECONV_ALLOW_SHRINK", "true")
    (tmp_path / ".env").write_text("CLOSECONV_TIMEZONE=Europe/Berlin\n")  # .env counts too
    got = resource_defs().resources
    assert got["landing"].path == str(tmp_path / "in")
    assert got["warehouse"].path == str(tmp_path / "wh.duckdb")
    assert got["warehouse"].timezone == "Europe/Berlin" and got["warehouse"].allow_shrink is True
    assert got["workflows"].path == str(tmp_path / "wf")
    assert got["reference"].path == str(tmp_path / "ref")


def _tick(sensor, landing: LandingResource, cursor: str | None):
    resources = {"landing": landing, "warehouse": WarehouseResource(path=str(landing.folder().parent / "wh.duckdb"))}
    with dg.DagsterInstance.ephemeral() as instance:
        with dg.build_sensor_context(cursor=cursor, resources=resources, instance=instance) as context:
            result = sensor(context)
            return result, context.cursor


def test_landing_sensor_requests_a_run_only_when_the_folder_changes(definitions, tmp_path):
    sensor = definitions.resolve_sensor_def("landing_folder_sensor")
    folder = tmp_path / "landing"
    folder.mkdir()
    landing = LandingResource(path=str(folder))
    event = {"event_id": "e1", "event_type": "message.received", "occurred_at": "2026-03-02T09:00:00Z",
             "contact_id": "c1"}

    # First look: a run (the cursor is empty), then nothing while the folder stays the same.
    (folder / "a.jsonl").write_text(json.dumps(event) + "\n")
    first, cursor = _tick(sensor, landing, None)
    assert isinstance(first, dg.RunRequest)
    assert first.tags["closeconv/landing_files"] == "1"
    same, same_cursor = _tick(sensor, landing, cursor)
    assert isinstance(same, dg.SkipReason)
    assert same_cursor == cursor

    # Files that are not event files (hidden, unknown format) do not count as a change.
    (folder / ".partial.jsonl.tmp").write_text("{")
    (folder / "notes.txt").write_text("hello")
    ignored, _ = _tick(sensor, landing, cursor)
    assert isinstance(ignored, dg.SkipReason)

    # A new file: a run, with a new run key.
    (folder / "b.csv").write_text("event_id,event_type,occurred_at,contact_id\n")
    added, cursor2 = _tick(sensor, landing, cursor)
    assert isinstance(added, dg.RunRequest)
    assert added.run_key != first.run_key and cursor2 != cursor
    assert added.tags["closeconv/landing_files"] == "2"

    # A changed file: a run.
    with open(folder / "a.jsonl", "a") as fh:
        fh.write(json.dumps({**event, "event_id": "e2"}) + "\n")
    changed, cursor3 = _tick(sensor, landing, cursor2)
    assert isinstance(changed, dg.RunRequest)
    assert cursor3 != cursor2
    unchanged, _ = _tick(sensor, landing, cursor3)
    assert isinstance(unchanged, dg.SkipReason)

    # A removed file: a run.
    os.remove(folder / "b.csv")
    removed, cursor4 = _tick(sensor, landing, cursor3)
    assert isinstance(removed, dg.RunRequest)
    assert cursor4 not in (cursor2, cursor3)


def test_job_really_materializes_every_asset_and_runs_every_check(definitions, tmp_path):
    from closeconv.config import Settings
    from pipelines.defs.resources import resources_for

    landing = tmp_path / "landing"
    landing.mkdir()
    events = [
        {"event_id": "e1", "event_type": "message.received", "occurred_at": "2026-03-02T09:00:00Z", "contact_id": "c1"},
        {"event_id": "e2", "event_type": "conversation.closed", "occurred_at": "2026-03-02T09:05:00Z",
         "contact_id": "c1", "source": "user", "user_id": "u1"},
    ]
    (landing / "a.jsonl").write_text("".join(json.dumps(e) + "\n" for e in events))
    settings = Settings(landing_dir=landing, warehouse_path=tmp_path / "wh" / "warehouse.duckdb",
                        workflows_dir=tmp_path / "workflows", reference_dir=tmp_path / "reference")
    with dg.DagsterInstance.ephemeral() as instance:
        result = definitions.resolve_job_def("closeconv_job").execute_in_process(
            instance=instance, resources=resources_for(settings), raise_on_error=False)
    assert result.success
    materialized = {e.asset_key.to_user_string() for e in result.get_asset_materialization_events()}
    assert materialized == EXPECTED_ASSETS
    evaluations = {(e.event_specific_data.asset_key.to_user_string(), e.event_specific_data.check_name):
                   e.event_specific_data.passed
                   for e in result.all_events if e.event_type_value == "ASSET_CHECK_EVALUATION"}
    assert EXPECTED_BLOCKING_CHECKS <= set(evaluations) and all(evaluations.values())
    assert settings.warehouse_path.is_file()


def test_the_runners_job_is_the_defs_folders(definitions):
    """`closeconv run` builds the job from the asset module alone (pipelines/runner.py): the same
    assets, checks and tags as the job `dg dev` loads from the defs folder."""
    from closeconv.config import Settings
    from pipelines.defs.resources import resources_for
    from pipelines.runner import closeconv_job_def

    folder, runner = definitions.resolve_job_def("closeconv_job"), closeconv_job_def(resources_for(Settings()))

    def shape(job):
        graph = job.asset_layer.asset_graph
        return ({k.to_user_string() for k in job.asset_layer.selected_asset_keys},
                {(k.asset_key.to_user_string(), k.name, graph.get_check_spec(k).blocking) for k in graph.asset_check_keys},
                {k.to_user_string(): sorted(d.to_user_string() for d in graph.get(k).parent_keys)
                 for k in graph.get_all_asset_keys()},
                job.tags, job.executor_def.name)

    assert shape(runner) == shape(folder)
    assert EXPECTED_ASSETS <= shape(runner)[0]
