"""A sensor that starts the main job when the landing folder changes."""


import hashlib

import dagster as dg

from closeconv.ingest import discover_landing_files
from closeconv.warehouse import pipeline_busy
from pipelines.defs.jobs import CLOSECONV_JOB, closeconv_job
from pipelines.defs.resources import LandingResource, WarehouseResource

# Runs that still hold, or are about to hold, the pipeline.
IN_PROGRESS = [
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
    dg.DagsterRunStatus.CANCELING,
]


def landing_fingerprint(landing: LandingResource) -> tuple[str, int]:
    files, _ = discover_landing_files(landing.folder(), landing.archive_folder())
    digest = hashlib.sha256("\n".join(f"{f.name}|{f.fingerprint}" for f in files).encode()).hexdigest()[:20]
    return digest, len(files)


def run_in_progress(context: dg.SensorEvaluationContext, warehouse: WarehouseResource) -> str | None:
    """Why a new run must wait, or None: a closeconv run is queued or running."""
    runs = context.instance.get_runs(
        filters=dg.RunsFilter(job_name=CLOSECONV_JOB, statuses=IN_PROGRESS), limit=1
    )
    if runs:
        return f"closeconv run {runs[0].run_id} is {runs[0].status.value.lower()}"
    if pipeline_busy(warehouse.settings()):
        return f"another closeconv process holds {warehouse.settings().lock_path}"
    return None


@dg.sensor(
    name="landing_folder_sensor",
    job=closeconv_job,
    minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Requests a run when a file in the landing folder is added, changed or removed "
    "(never while a closeconv run is in progress).",
)
def landing_folder_sensor(context: dg.SensorEvaluationContext, landing: LandingResource, warehouse: WarehouseResource):
    busy = run_in_progress(context, warehouse)
    if busy:
        # The cursor stays: once the run ends, the next tick compares against the last
        # folder state a run was requested for, so a file that landed meanwhile is not missed.
        return dg.SkipReason(f"{busy}; looking at the landing folder again after it ends")
    digest, count = landing_fingerprint(landing)
    if digest == context.cursor:
        return dg.SkipReason(f"landing folder unchanged ({count} files)")
    context.update_cursor(digest)
    return dg.RunRequest(run_key=f"landing-{digest}", tags={"closeconv/landing_files": str(count)})
