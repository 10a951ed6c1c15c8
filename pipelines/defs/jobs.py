"""The main job: the whole asset graph, checks included."""

import dagster as dg

CLOSECONV_JOB = "closeconv_job"

closeconv_job = dg.define_asset_job(
    CLOSECONV_JOB,
    selection=dg.AssetSelection.all(),
    description="Landing folder → events → workflow replay → conversations → daily metrics → published warehouse.",
    # Steps share one staging DuckDB file; running them in one process avoids a process
    # start per step and keeps them strictly sequential.
    executor_def=dg.in_process_executor,
)
