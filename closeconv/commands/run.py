"""`closeconv run`: materialize the whole asset graph in-process and summarize."""

from __future__ import annotations

import logging
import os
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import click

from closeconv.config import ConfigError, Settings, resolve_settings


def settings_options(fn):
    for option in reversed(
        [
            click.option("--landing", "landing_dir", type=click.Path(path_type=Path), help="Landing folder of event files. [env CLOSECONV_LANDING; default data/landing]"),
            click.option("--warehouse", "warehouse_path", type=click.Path(path_type=Path), help="Published DuckDB file. [env CLOSECONV_WAREHOUSE; default data/warehouse.duckdb]"),
            click.option("--workflows", "workflows_dir", type=click.Path(path_type=Path), help="Folder of workflow YAML files. [env CLOSECONV_WORKFLOWS; default workflows]"),
            click.option("--reference", "reference_dir", type=click.Path(path_type=Path), help="Folder of users.csv, teams.csv, categories.csv. [env CLOSECONV_REFERENCE; default data/reference]"),
            click.option("--timezone", "timezone", help="Workspace timezone, IANA name (DST-correct days). [env CLOSECONV_TIMEZONE; default UTC]"),
            click.option("--auto-close-hours", "auto_close_hours", help="Derive respond.io's auto-close: close N hours after the last human message without a contact reply (for sources that send no closes; closes get source auto_close). [env CLOSECONV_AUTO_CLOSE_HOURS; default off]"),
        ]
    ):
        fn = option(fn)
    return fn


@contextmanager
def _environment(values: dict[str, str]):
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@contextmanager
def _progress_to(stream):
    logger = logging.getLogger("closeconv.progress")
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("  %(message)s"))
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    try:
        yield
    finally:
        logger.removeHandler(handler)


def run_pipeline(settings: Settings, quiet: bool = False):
    """Run the main job in-process on these settings. Returns the Dagster result.

    Raises ConfigError for bad settings (before anything runs)."""
    import dagster as dg

    from pipelines.defs.jobs import CLOSECONV_JOB
    from pipelines.definitions import defs as load_defs

    settings.validate()
    if settings.workflows_dir.is_dir():
        from closeconv.workflows import load_workflows

        load_workflows(settings.workflows_dir)  # refuse an invalid folder before any work
    stream = open(os.devnull, "w") if quiet else sys.stderr
    instance = dg.DagsterInstance.get() if os.environ.get("DAGSTER_HOME") else dg.DagsterInstance.ephemeral()
    with _environment(settings.to_env()), _progress_to(stream):
        job = load_defs().resolve_job_def(CLOSECONV_JOB)
        result = job.execute_in_process(
            instance=instance,
            raise_on_error=False,
            run_config={"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}},
        )
    return result


def _failure_message(result) -> str:
    lines = []
    for event in result.all_events:
        if event.is_step_failure:
            err = event.step_failure_data.error
            # Dagster wraps the exception ("Error occurred while executing op ..."): name the cause.
            while err is not None and err.cause is not None:
                err = err.cause
            lines.append(f"step {event.step_key} failed: {err.message.strip() if err else 'unknown error'}")
        if event.event_type_value == "ASSET_CHECK_EVALUATION":
            data = event.event_specific_data  # an AssetCheckEvaluation
            if not data.passed:
                lines.append(f"check {data.check_name} on {data.asset_key.to_user_string()} failed: {data.description or ''}")
    return "\n".join(lines) or "the run failed"


def print_summary(settings: Settings, seconds: float) -> None:
    from closeconv.warehouse import open_warehouse_readonly

    con = open_warehouse_readonly(settings.warehouse_path)
    try:
        run = con.sql("SELECT * FROM pipeline_runs ORDER BY published_at DESC LIMIT 1").pl().to_dicts()[0]
        reasons = con.sql(
            "SELECT reason_code, count(*) FROM rejected_events GROUP BY 1 ORDER BY 2 DESC, 1"
        ).fetchall()
        id_conflicts = con.sql("SELECT count(conversation_id_conflict) FROM events").fetchall()[0][0]
    finally:
        con.close()
    click.echo("")
    click.echo(click.style("closeconv run: done", bold=True) + f" in {seconds:.1f}s")
    click.echo(f"  records read        {run['records_read']:>12,}  from {run['landing_files']} files in {settings.landing_dir}")
    click.echo(f"  events loaded       {run['events_loaded']:>12,}")
    click.echo(f"  duplicates dropped  {run['duplicates_dropped']:>12,}")
    click.echo(f"  rejected            {run['records_rejected']:>12,}" + ("  (see table rejected_events)" if run["records_rejected"] else ""))
    for code, n in reasons:
        click.echo(f"    {code:<26}{n:>8,}")
    if id_conflicts:
        click.echo(f"  conversation ids    {id_conflicts:>12,}  events whose given conversation_id is not their conversation's "
                   "(see events.conversation_id_conflict)")
    click.echo(f"  conversations       {run['conversations_closed']:>12,} closed, {run['conversations_open']:,} open")
    click.echo(f"  workflow runs       {run['workflow_runs']:>12,}  ({run['workflow_actions']:,} actions, {run['workflow_drift']:,} drifted contacts)")
    click.echo(f"  warehouse           {settings.warehouse_path}  (timezone {settings.timezone})")
    # duckdb-cli is a dependency: the shell sits beside this `closeconv` in the same environment.
    click.echo(f"  query it:           duckdb -readonly {settings.warehouse_path} \"SELECT * FROM conversations LIMIT 10\"")


class ConfigurationFailed(click.ClickException):
    exit_code = 2

    def format_message(self) -> str:
        return f"configuration error: {self.message}"


@click.command("run")
@settings_options
@click.option("--quiet", is_flag=True, help="No progress lines, only the summary.")
def command(quiet: bool, **flags) -> None:
    """Build the warehouse: ingest the landing folder, replay workflows, compute metrics, publish.

    Runs the Dagster asset graph in-process. Bad records are quarantined in `rejected_events`
    and the run still exits 0; a configuration error exits 2 with a message saying what to fix.
    """
    settings = resolve_settings(flags)
    started = time.perf_counter()
    try:
        settings.validate()
        click.echo(f"closeconv run: {settings.landing_dir} → {settings.warehouse_path}", err=True)
        result = run_pipeline(settings, quiet=quiet)
    except ConfigError as exc:
        raise ConfigurationFailed(str(exc)) from None
    if not result.success:
        click.echo(click.style("closeconv run: FAILED", fg="red", bold=True), err=True)
        click.echo(_failure_message(result), err=True)
        click.echo("The previously published warehouse was left as it was.", err=True)
        sys.exit(1)
    print_summary(settings, time.perf_counter() - started)
