"""Run the main job in-process on resolved settings, recorded in a persistent Dagster instance.

`closeconv run` and `closeconv demo` call `run_pipeline`. The run holds the pipeline lock from
before its first step until after its last, so two runs never interleave; a second one waits.
"""

from __future__ import annotations

import gc
import logging
import sys
import uuid
from contextlib import contextmanager
from datetime import date
from pathlib import Path

from pipelines.dagster_migrations import one_script_scan  # noqa: I001 (before Dagster: see the module)
import dagster as dg
from dagster._core.instance.ref import InstanceRef

from closeconv.config import Settings
from closeconv.warehouse import pipeline_lock
from pipelines.dagster_fsync import fewer_fsyncs
from pipelines.defs.jobs import CLOSECONV_JOB, PIPELINE_TAG, closeconv_job
from pipelines.dagster_storage import pooled_storage_overrides

# The instance closeconv records runs in (and `dg dev` reads, see the project's dagster.yaml):
# one closeconv run at a time; more are queued, never run side by side. No usage statistics:
# Dagster's telemetry writes a log line per run event, and nothing here needs it.
WRITTEN_BY = "# Written by closeconv."
INSTANCE_YAML = f"""\
{WRITTEN_BY} Dagster instance for closeconv runs (docs/operations.md).
concurrency:
  runs:
    max_concurrent_runs: 1
    tag_concurrency_limits:
      - key: "{PIPELINE_TAG}"
        limit: 1
telemetry:
  enabled: false
"""


def closeconv_instance(settings: Settings) -> dg.DagsterInstance:
    """The persistent instance in `settings.instance_dir`, with INSTANCE_YAML as its dagster.yaml
    when new or written by an earlier closeconv (a dagster.yaml of someone else's is kept, and
    used as it is). Ours is opened through pooled SQLite storage (pipelines/dagster_storage.py):
    the same files, a fraction of the cost per stored event."""
    home = settings.instance_dir
    home.mkdir(parents=True, exist_ok=True)
    config = home / "dagster.yaml"
    text = config.read_text() if config.exists() else None
    if text is None or (text.startswith(WRITTEN_BY) and text != INSTANCE_YAML):
        config.write_text(INSTANCE_YAML)
        text = INSTANCE_YAML
    if not text.startswith(WRITTEN_BY):
        return dg.DagsterInstance.from_config(str(home))
    return dg.DagsterInstance.from_ref(InstanceRef.from_dir(str(home), overrides=pooled_storage_overrides(str(home))))


@contextmanager
def _progress_to(stream, level: int):
    logger = logging.getLogger("closeconv.progress")
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("  %(message)s"))
    handler.setLevel(level)
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    try:
        yield
    finally:
        logger.removeHandler(handler)


def closeconv_job_def(resources: dict) -> dg.JobDefinition:
    """The main job, from the asset module alone (the job selects every asset, checks included).

    `dg dev` loads the whole defs folder (pipelines/definitions.py): schedule, sensor and the
    component metadata Dagster gathers for its UI, 0.3-0.4 s a run that `closeconv run` does not
    need. tests/test_definitions.py checks this job is the defs folder's."""
    from pipelines.defs import assets

    return dg.Definitions(assets=dg.load_assets_from_modules([assets]), jobs=[closeconv_job],
                          resources=resources).resolve_job_def(CLOSECONV_JOB)


def end_of_imports() -> None:
    """The job is built: every module a run needs is imported. The `closeconv run` console script
    turned cyclic garbage collection off for the imports (closeconv.cli:console); it comes back
    on here, with the ~340,000 objects alive now frozen (`gc.freeze`: collections no longer walk
    them; they live as long as the process anyway). Callers that never turned it off (tests,
    `closeconv demo`) are left as they are."""
    if not gc.isenabled():
        gc.freeze()
        gc.enable()


def run_pipeline(settings: Settings, quiet: bool = False, full_refresh: bool = False,
                 backfill: tuple[date, date] | None = None) -> dg.ExecuteInProcessResult:
    """Check the settings, then run the main job in-process on them. Returns the Dagster result.

    `full_refresh` rebuilds staging from the landing files instead of reusing the cached parse
    and validation of unchanged files; `backfill` (first and last local day) recomputes every
    contact with an event on those days. Raises ConfigError for bad settings (before anything
    runs or is recorded)."""
    from pipelines.defs.resources import resources_for

    settings.check()
    run_id = str(uuid.uuid4())
    # --quiet drops the step lines, never a warning (a rebuilt cache, waiting for another run).
    with (_progress_to(sys.stderr, logging.WARNING if quiet else logging.INFO), pipeline_lock(settings),
          one_script_scan(), closeconv_instance(settings) as instance, fewer_fsyncs(run_id)):
        job = closeconv_job_def(resources_for(settings))
        end_of_imports()
        return job.execute_in_process(
            run_id=run_id,
            instance=instance,
            raise_on_error=False,
            resources=resources_for(settings),
            run_config={"loggers": {"console": {"config": {"log_level": "CRITICAL"}}},
                        "ops": {"landing_files": {"config": {
                            "full_refresh": full_refresh,
                            **({} if backfill is None else {"backfill_from": backfill[0].isoformat(),
                                                            "backfill_to": backfill[1].isoformat()})}}}},
            tags={"closeconv/launched_by": "closeconv run", "closeconv/landing": str(Path(settings.landing_dir))},
        )


def failure_message(result: dg.ExecuteInProcessResult) -> str:
    """What went wrong, for a person: the failing steps' causes and the failed checks."""
    lines = []
    for event in result.all_events:
        if event.is_step_failure:
            data = event.step_failure_data
            if data.user_failure_data is not None and data.user_failure_data.description:
                lines.append(f"step {event.step_key} failed: {data.user_failure_data.description}")
                continue
            err = data.error
            # Dagster wraps the exception ("Error occurred while executing op ..."): name the cause.
            while err is not None and err.cause is not None:
                err = err.cause
            lines.append(f"step {event.step_key} failed: {err.message.strip() if err else 'unknown error'}")
        if event.event_type_value == "ASSET_CHECK_EVALUATION":
            data = event.event_specific_data  # an AssetCheckEvaluation
            if not data.passed:
                lines.append(f"check {data.check_name} on {data.asset_key.to_user_string()} failed: {data.description or ''}")
    return "\n".join(lines) or "the run failed"
