"""A sensor that starts the main job when the landing folder changes."""


import hashlib

import dagster as dg

from closeconv.ingest import discover_landing_files
from pipelines.defs.jobs import closeconv_job
from pipelines.defs.resources import LandingResource


def landing_fingerprint(landing: LandingResource) -> tuple[str, int]:
    files, _ = discover_landing_files(landing.folder())
    digest = hashlib.sha256("\n".join(f"{f.name}|{f.fingerprint}" for f in files).encode()).hexdigest()[:20]
    return digest, len(files)


@dg.sensor(
    name="landing_folder_sensor",
    job=closeconv_job,
    minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Requests a run when a file in the landing folder is added, changed or removed.",
)
def landing_folder_sensor(context: dg.SensorEvaluationContext, landing: LandingResource):
    digest, count = landing_fingerprint(landing)
    if digest == context.cursor:
        return dg.SkipReason(f"landing folder unchanged ({count} files)")
    context.update_cursor(digest)
    return dg.RunRequest(run_key=f"landing-{digest}", tags={"closeconv/landing_files": str(count)})
