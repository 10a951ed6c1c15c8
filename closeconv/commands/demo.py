"""`closeconv demo`: the quick start's main command — sample data → pipeline → what to look at."""

from __future__ import annotations

import sys
import time
from datetime import date, timedelta
from pathlib import Path

import click

from closeconv.commands.run import ConfigurationFailed, _failure_message, print_summary, run_pipeline
from closeconv.config import ConfigError, resolve_settings
from closeconv.ingest import discover_landing_files


SAMPLE_DAYS = 28


@click.command("demo")
@click.option("--conversations", default=2000, show_default=True, help="Sample conversations to generate when the landing folder is empty.")
@click.option("--seed", default=42, show_default=True, help="Seed of the sample data.")
@click.option("--timezone", default=None, help="Workspace timezone (IANA). [env CLOSECONV_TIMEZONE; default UTC]")
@click.option("--port", type=click.IntRange(1, 65535), default=8501, show_default=True, help="Port of the dashboard.")
@click.option("--start", type=click.DateTime(formats=["%Y-%m-%d"]), default=None,
              help="First day of the sample (UTC). [default: 28 days before today]")
@click.option("--no-serve", is_flag=True, help="Stop after building the warehouse (do not serve the dashboard).")
def command(conversations: int, seed: int, timezone: str | None, port: int, start, no_serve: bool) -> None:
    """Run the main job on the embedded default setup, then serve the dashboard on it.

    Generates deterministic sample events into the landing folder (only when it holds no event
    files) over the 28 days before today, so the date presets (Last 7 days, ...) show data;
    writes sample reference data, builds the warehouse with the shipped workflows, prints how to
    look at the result, and serves the dashboard on 127.0.0.1 until Ctrl-C (unless --no-serve).
    """
    from closeconv.sample import generate_sample, write_reference

    try:
        settings = resolve_settings({"timezone": timezone}).check(landing=False)
    except ConfigError as exc:
        raise ConfigurationFailed(str(exc)) from None
    settings.landing_dir.mkdir(parents=True, exist_ok=True)
    files, _ = discover_landing_files(settings.landing_dir)
    if files:
        click.echo(f"closeconv demo: {settings.landing_dir} already holds {len(files)} event files; using them.", err=True)
    else:
        click.echo(f"closeconv demo: generating {conversations:,} sample conversations (seed {seed}) into {settings.landing_dir}", err=True)
        result = generate_sample(settings.landing_dir, conversations=conversations, seed=seed,
                                 start=start.date() if start else date.today() - timedelta(days=SAMPLE_DAYS),
                                 days=SAMPLE_DAYS)
        click.echo(f"  wrote {result.events_written:,} events to {', '.join(p.name for p in result.files)}", err=True)
    if not any(settings.reference_dir.glob("*.csv")):
        write_reference(settings.reference_dir, seed=seed)
        click.echo(f"  wrote sample reference data to {settings.reference_dir}", err=True)
    started = time.perf_counter()
    try:
        result = run_pipeline(settings)
    except ConfigError as exc:
        raise ConfigurationFailed(str(exc)) from None
    if not result.success:
        click.echo(_failure_message(result), err=True)
        raise SystemExit(1)
    print_summary(settings, time.perf_counter() - started)
    click.echo("")
    # The tools sit beside this interpreter: the hints work with or without uv on PATH.
    bin_dir = Path(sys.executable).parent
    click.echo("Next:")
    click.echo(f"  {bin_dir / 'closeconv'} dashboard   # the dashboard on the warehouse (docs/dashboard.md)")
    click.echo(f"  {bin_dir / 'duckdb'} -readonly {settings.warehouse_path}   # SQL shell on the warehouse (docs/warehouse.md)")
    click.echo(f"  {bin_dir / 'dg'} dev   # Dagster UI: assets, checks, schedule, sensor, this run's history")
    click.echo(f"  {bin_dir / 'closeconv'} workflows validate   # check workflows/*.yaml (docs/workflows.md)")
    click.echo(f"  {bin_dir / 'closeconv'} --help   # everything else")
    if no_serve:
        return
    from closeconv.commands.dashboard import serve

    click.echo("")
    sys.exit(serve(settings.warehouse_path, "127.0.0.1", port, timezone=None))
