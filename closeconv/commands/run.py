"""`closeconv run`: materialize the whole asset graph in-process and summarize."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import click

from closeconv.backfill import backfill_days
from closeconv.config import ConfigError, Settings, resolve_settings
from closeconv.warehouse import PipelineBusyError


# The job runner imports Dagster: loaded on use, so `closeconv --help` stays quick.
def run_pipeline(settings: Settings, quiet: bool = False, full_refresh: bool = False, backfill=None):
    from pipelines.runner import run_pipeline as run

    return run(settings, quiet=quiet, full_refresh=full_refresh, backfill=backfill)


def failure_message(result) -> str:
    from pipelines.runner import failure_message as message

    return message(result)


_failure_message = failure_message  # the name tests and `demo` import


def settings_options(fn):
    for option in reversed(
        [
            click.option("--landing", "landing_dir", type=click.Path(path_type=Path), help="Landing folder of event files. [env CLOSECONV_LANDING; default data/landing]"),
            click.option("--warehouse", "warehouse_path", type=click.Path(path_type=Path), help="Published DuckDB file. [env CLOSECONV_WAREHOUSE; default data/warehouse.duckdb]"),
            click.option("--workflows", "workflows_dir", type=click.Path(path_type=Path), help="Folder of workflow YAML files. [env CLOSECONV_WORKFLOWS; default workflows]"),
            click.option("--reference", "reference_dir", type=click.Path(path_type=Path), help="Folder of users.csv, teams.csv, categories.csv. [env CLOSECONV_REFERENCE; default data/reference]"),
            click.option("--timezone", "timezone", help="Workspace timezone, IANA name (DST-correct days). [env CLOSECONV_TIMEZONE; default UTC]"),
            click.option("--archive", "archive_dir", type=click.Path(path_type=Path), help="Archive folder: after a run, processed landing files move here; runs read it too, so their events stay. [env CLOSECONV_ARCHIVE; default off]"),
            click.option("--auto-close-hours", "auto_close_hours", help="Derive respond.io's auto-close: close N hours after the last human message without a contact reply (for sources that send no closes; closes get source auto_close). [env CLOSECONV_AUTO_CLOSE_HOURS; default off]"),
            click.option("--memory-limit", "memory_limit", help="Cap DuckDB's memory while building, e.g. 3GB; larger inputs spill to the staging folder instead of failing. [env CLOSECONV_MEMORY_LIMIT; default a quarter of RAM, at most 2.5GB]"),
        ]
    ):
        fn = option(fn)
    return fn


def print_summary(settings: Settings, seconds: float) -> None:
    from closeconv.warehouse import open_warehouse_readonly

    con = open_warehouse_readonly(settings.warehouse_path)
    try:
        latest = con.sql("SELECT * FROM pipeline_runs ORDER BY published_at DESC LIMIT 1")
        run = dict(zip(latest.columns, latest.fetchall()[0]))
        reasons = con.sql(
            "SELECT reason_code, count(*) FROM rejected_events GROUP BY 1 ORDER BY 2 DESC, 1"
        ).fetchall()
        id_conflicts = con.sql("SELECT count(conversation_id_conflict) FROM events").fetchall()[0][0]
    finally:
        con.close()
    click.echo("")
    click.echo(click.style("closeconv run: done", bold=True) + f" in {seconds:.1f}s")
    click.echo(f"  records read        {run['records_read']:>12,}  from {run['landing_files']} files in {settings.landing_dir}")
    if run["files_unknown_type"]:
        click.echo(f"  files not read      {run['files_unknown_type']:>12,}  (unknown type; use .jsonl, .ndjson, .jsonl.gz, .csv, .csv.gz or .parquet)")
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
@click.option("--allow-shrink", "allow_shrink", is_flag=True, default=None,
              help="Publish even if the new warehouse has fewer events than the published one. [env CLOSECONV_ALLOW_SHRINK]")
@click.option("--full-refresh", "full_refresh", is_flag=True,
              help="Rebuild from scratch: parse and validate every landing file again instead of reusing staging's per-file cache.")
@click.option("--backfill-from", "backfill_from", metavar="YYYY-MM-DD",
              help="With --backfill-to: recompute every contact with an event on these days (inclusive, in the workspace timezone).")
@click.option("--backfill-to", "backfill_to", metavar="YYYY-MM-DD", help="Last day of the backfill (inclusive).")
@click.option("--quiet", is_flag=True, help="No progress lines, only the summary.")
def command(quiet: bool, full_refresh: bool, backfill_from: str | None, backfill_to: str | None, **flags) -> None:
    """Build the warehouse: ingest the landing folder, replay workflows, compute metrics, publish.

    Runs the Dagster asset graph in-process, recorded in the Dagster instance (DAGSTER_HOME, or
    .dagster/ beside the warehouse). One run at a time: a second one waits for the first.
    Bad records are quarantined in `rejected_events` and the run still exits 0; a
    configuration error exits 2 with a message saying what to fix; a run that would publish
    fewer events than the published warehouse exits 1 unless --allow-shrink.
    """
    started = time.perf_counter()
    try:
        settings = resolve_settings(flags)
        backfill = backfill_days(backfill_from, backfill_to)
        click.echo(f"closeconv run: {settings.landing_dir} → {settings.warehouse_path}", err=True)
        # run_pipeline checks the settings first (ConfigError), before anything runs or is recorded.
        result = run_pipeline(settings, quiet=quiet, full_refresh=full_refresh, backfill=backfill)
    except ConfigError as exc:
        raise ConfigurationFailed(str(exc)) from None
    except PipelineBusyError as exc:
        click.echo(f"closeconv run: {exc}", err=True)
        sys.exit(1)
    if not result.success:
        click.echo(click.style("closeconv run: FAILED", fg="red", bold=True), err=True)
        click.echo(failure_message(result), err=True)
        click.echo("The previously published warehouse was left as it was.", err=True)
        sys.exit(1)
    print_summary(settings, time.perf_counter() - started)
