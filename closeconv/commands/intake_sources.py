"""`closeconv intake backfill` and `closeconv intake map`: history from the respond.io API, and
other sources' exports by a declared mapping. Plain click commands; `closeconv intake` (in
commands/intake.py) adds them to its group."""

from __future__ import annotations

import sys
from datetime import datetime, timezone
from pathlib import Path

import click

from closeconv.commands.run import ConfigurationFailed
from closeconv.config import ConfigError


@click.command("map")
@click.option("--config", "config_path", required=True, type=click.Path(path_type=Path),
              help="The mapping YAML (see docs/intake-sources.md and docs/mappings/).")
@click.argument("inputs", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--out", "out_dir", required=True, type=click.Path(path_type=Path),
              help="Folder for the contract files (e.g. the landing folder); one IN.jsonl per input.")
@click.option("--rejects", "rejects_dir", type=click.Path(path_type=Path),
              help="Folder for IN.rejects.jsonl (rows not converted, with reasons). [default: OUT-rejects beside OUT]")
def map_command(config_path: Path, inputs: tuple[Path, ...], out_dir: Path, rejects_dir: Path | None) -> None:
    """Turn CSV or JSON-lines exports into contract event files by a declared mapping.

    \b
    The mapping names the column of each contract field, value maps (event types, sources),
    the timezone of timestamps without an offset (never guessed), rows to skip, and the key
    that makes each ticket its own conversation. Rows it cannot convert go to the rejects
    file with their line and reason: nothing is lost. Output files appear whole (written under
    a hidden name, then renamed), so a pipeline run never reads half of one.
    """
    from closeconv.intake.source_mapping import convert_file, load_mapping, plan_outputs

    rejects_dir = rejects_dir or out_dir.parent / f"{out_dir.name}-rejects"
    try:
        mapping = load_mapping(config_path)
        plans = plan_outputs(list(inputs), out_dir, rejects_dir)
        results = [convert_file(mapping, config_path, *plan) for plan in plans]
    except ConfigError as exc:
        raise ConfigurationFailed(str(exc)) from None
    for r in results:
        click.echo(f"{r.input}: {r.rows:,} rows → {r.converted:,} events in {r.output}")
        if r.skipped or r.rejected:
            click.echo(f"  skipped by the mapping {r.skipped:>8,}  rejected {r.rejected:,}  (both listed in {r.rejects})")
        for code, n in r.rejected_by_reason.items():
            click.echo(f"    {code:<24}{n:>8,}")


def _since(value: str) -> datetime:
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise click.BadParameter("give a date (2026-01-31) or an ISO-8601 time (2026-01-31T08:00:00Z)", param_hint="--since") from None
    if parsed.tzinfo is None:
        if "T" in value or " " in value:
            raise click.BadParameter(f"{value!r} has no UTC offset; add Z or +HH:MM (times are never guessed)", param_hint="--since")
        parsed = parsed.replace(tzinfo=timezone.utc)  # a bare date: midnight UTC
    return parsed


BACKFILL_LIMITS = """\b
What the API cannot give: respond.io's Developer API v2 has no endpoint for past
conversation opens, closes, closing notes or assignments. The backfill rebuilds the
message history and the reference data only; opens, closes and assignments come from
the webhooks (closeconv intake serve) from the day they are set up. Until then the
pipeline opens conversations implicitly at the contact's messages and, with
--auto-close-hours on `closeconv run`, can derive closes."""


@click.command("backfill", epilog=BACKFILL_LIMITS)
@click.option("--since", "since", required=True, help="Backfill messages from this date/time on (UTC unless an offset is given).")
@click.option("--reference", "reference_dir", type=click.Path(path_type=Path), default=Path("data/reference"), show_default=True,
              help="Folder for users.csv, teams.csv, categories.csv, channels.csv.")
@click.option("--landing", "landing_dir", type=click.Path(path_type=Path), default=Path("data/landing"), show_default=True,
              help="Landing folder the message events are written into (under respondio-backfill/).")
@click.option("--base-url", "base_url", default="https://api.respond.io/v2", show_default=True, envvar="CLOSECONV_RESPONDIO_API_URL",
              help="API base URL; a white-label (IS-Messenger, …) has its own. [env CLOSECONV_RESPONDIO_API_URL]")
@click.option("--state", "state_path", type=click.Path(path_type=Path),
              help="Checkpoint file; a second run continues where the first stopped. [default: LANDING/.respondio-backfill.state.json]")
@click.option("--events-per-file", default=5000, show_default=True, type=click.IntRange(1),
              help="Events per landing file; the checkpoint advances after each file.")
@click.option("--no-progress", is_flag=True, help="No progress bar on stderr.")
def backfill_command(since: str, reference_dir: Path, landing_dir: Path, base_url: str, state_path: Path | None,
                     events_per_file: int, no_progress: bool) -> None:
    """Backfill from respond.io's Developer API v2: users, teams, channels, closing-note
    categories, and every contact's message history as message.received / message.sent events.

    The token comes from the environment variable CLOSECONV_RESPONDIO_API_TOKEN (a Bearer
    token from respond.io's Settings → Integrations → Developer API). Pages are followed by
    cursor; HTTP 429 waits as long as Retry-After says; 5xx and network errors are retried
    with backoff. Interrupted, it resumes from its checkpoint and writes no duplicates
    (event ids are derived from respond.io's messageId).
    """
    import os

    from closeconv.intake.backfill import TOKEN_ENV, BackfillError, run_backfill

    since_at = _since(since)
    token = os.environ.get(TOKEN_ENV, "").strip()
    if not token:
        raise ConfigurationFailed(
            f"{TOKEN_ENV} is not set. Create an API token in respond.io (Settings → Integrations → "
            f"Developer API) and export {TOKEN_ENV}=<token>; it is never written anywhere."
        )
    state_path = state_path or landing_dir / ".respondio-backfill.state.json"
    try:
        summary = run_backfill(
            base_url=base_url, token=token, since=since_at, reference_dir=reference_dir,
            landing_dir=landing_dir, state_path=state_path, progress=not no_progress, batch_events=events_per_file,
        )
    except ConfigError as exc:
        raise ConfigurationFailed(str(exc)) from None
    except BackfillError as exc:
        click.echo(click.style("closeconv intake backfill: stopped", fg="red", bold=True) + f": {exc}", err=True)
        click.echo(f"Progress is saved in {state_path}; run the same command again to continue.", err=True)
        sys.exit(1)
    for line in summary.lines():
        click.echo(line)
    click.echo("")
    click.echo(BACKFILL_LIMITS.replace("\b\n", ""))
