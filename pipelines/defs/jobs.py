"""The main job: the whole asset graph, checks included."""

import dagster as dg

CLOSECONV_JOB = "closeconv_job"
# Every closeconv run carries this tag; the instance's dagster.yaml allows one such run at a time.
PIPELINE_TAG = "closeconv/pipeline"

closeconv_job = dg.define_asset_job(
    CLOSECONV_JOB,
    selection=dg.AssetSelection.all(),
    description="Landing folder → events → workflow replay → conversations → daily metrics → published warehouse.",
    # Steps share one staging DuckDB file; running them in one process avoids a process
    # start per step, keeps them strictly sequential, and lets the run hold the pipeline
    # lock (taken by the warehouse resource) from its first step to its last.
    executor_def=dg.in_process_executor,
    tags={PIPELINE_TAG: "main"},
)
