import dagster as dg

from pipelines.defs.jobs import closeconv_job

hourly_refresh = dg.ScheduleDefinition(
    name="hourly_refresh",
    job=closeconv_job,
    cron_schedule="0 * * * *",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Rebuild the warehouse every hour, even when the landing sensor saw nothing new.",
)
