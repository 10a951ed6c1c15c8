"""`closeconv intake`: take events from the platforms (respond.io, Chatwoot).

The group is `command`; each subcommand is added with `@command.command(...)`, so further
intake commands (backfill, map) join it by the same decorator.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import click

from closeconv.commands.run import ConfigurationFailed
from closeconv.config import ConfigError, resolve_settings

SAMPLES_DIR = Path(__file__).resolve().parent.parent / "intake" / "samples" / "respondio"


@click.group("intake")
def command() -> None:
    """Take events from the messaging platforms: a signed webhook receiver, and tools around it.

    \b
      closeconv intake serve                       # receive respond.io / Chatwoot webhooks
      closeconv intake replay-samples --url URL    # send the shipped sample payloads to it
      closeconv intake remap data/intake-archive   # re-run the mapping over the raw archive
      closeconv intake backfill --since 2026-01-01 # respond.io Developer API: reference data, message history
      closeconv intake map --config M.yaml IN --out DIR  # other sources' exports, by a declared mapping
    """


@command.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind (keep 127.0.0.1 behind a TLS proxy).")
@click.option("--port", default=8600, show_default=True, type=click.IntRange(1, 65535))
@click.option("--landing", "landing_dir", type=click.Path(path_type=Path),
              help="Landing folder the events go to. [env CLOSECONV_LANDING; default data/landing]")
@click.option("--archive", "archive_dir", type=click.Path(path_type=Path),
              help="Folder of the raw-body archive. [default: intake-archive beside the landing folder]")
@click.option("--secrets", "secrets_file", type=click.Path(path_type=Path),
              help="KEY=value file with CLOSECONV_RESPONDIO_SIGNING_KEYS / CLOSECONV_CHATWOOT_WEBHOOK_SECRET. "
                   "[env CLOSECONV_INTAKE_SECRETS_FILE]")
@click.option("--rotate-seconds", default=60.0, show_default=True, type=click.FloatRange(0.01),
              help="Close a landing file after this long, so the pipeline sees its events.")
@click.option("--rotate-mb", default=64.0, show_default=True, type=click.FloatRange(0.000001),
              help="Close a landing file when it reaches this size.")
@click.option("--log-level", default="info", show_default=True, type=click.Choice(["debug", "info", "warning", "error"]))
def serve(host, port, landing_dir, archive_dir, secrets_file, rotate_seconds, rotate_mb, log_level) -> None:
    """Receive signed webhooks: POST /webhooks/respondio and /webhooks/chatwoot.

    A delivery is answered 200 only once it is on disk (fsync), 401 when its signature fails,
    503 when it cannot be stored (the platform retries). GET /healthz, GET /metrics.
    Stop with Ctrl-C / SIGTERM: the files being written are closed and renamed into place.
    """
    from closeconv.intake.settings import resolve_intake_settings

    landing = resolve_settings({"landing_dir": landing_dir}).landing_dir
    try:
        settings = resolve_intake_settings(landing, archive_dir, secrets_file,
                                           rotate_seconds=rotate_seconds, rotate_bytes=int(rotate_mb * (1 << 20)))
    except ConfigError as exc:
        raise ConfigurationFailed(str(exc)) from None
    from receiver.server import serve as run_server

    click.echo(f"closeconv intake: http://{host}:{port}/webhooks/respondio → {settings.landing_dir} "
               f"({settings.describe()})", err=True)
    run_server(settings, host=host, port=port, log_level=log_level)


@command.command("remap")
@click.argument("archive", type=click.Path(exists=True, path_type=Path))
@click.option("--out", "out_dir", type=click.Path(path_type=Path), default=Path("data/remapped"), show_default=True,
              help="Folder for the new landing files (not the live landing folder).")
def remap(archive: Path, out_dir: Path) -> None:
    """Re-run the mapping over the raw-body ARCHIVE (a file or the archive folder).

    Use it after a mapping fix: the new files replace the receiver's `intake-*.jsonl` in the
    landing folder (move those out first, or the pipeline sees both versions as conflicts).
    """
    from closeconv.intake.archive import remap as run_remap

    counts = run_remap(archive, out_dir)
    for part in counts.unfinished:
        click.echo(f"warning: {part} is still being written (or its receiver was killed): start and stop "
                   "the receiver once to finish it, then remap again", err=True)
    click.echo(f"remapped {counts.deliveries:,} deliveries → {counts.events:,} events "
               f"({counts.duplicates:,} redeliveries skipped, {counts.ignored:,} unused event types)")
    for reason, n in sorted(counts.malformed.items()):
        click.echo(f"  malformed {n:>6,}  {reason}")
    for path in counts.files:
        click.echo(f"  wrote {path}")


@command.command("replay-samples")
@click.argument("folder", type=click.Path(exists=True, file_okay=False, path_type=Path), default=SAMPLES_DIR)
@click.option("--url", default="http://127.0.0.1:8600/webhooks/respondio", show_default=True,
              help="The receiver's respond.io endpoint.")
@click.option("--key", envvar="CLOSECONV_SAMPLE_SIGNING_KEY",
              help="Signing key to sign with. [default: the first of CLOSECONV_RESPONDIO_SIGNING_KEYS]")
@click.option("--as-recorded", is_flag=True,
              help="Send the times as recorded in the files (default: shift them so the latest is a minute ago).")
def replay_samples(folder: Path, url: str, key: str | None, as_recorded: bool) -> None:
    """Sign and POST each respond.io payload (*.json, in name order) of FOLDER to the receiver.

    FOLDER defaults to the samples shipped with closeconv (closeconv/intake/samples/respondio).
    By default all times move by the same amount so that the latest one is a minute ago (the
    dashboard shows recent days); equal files stay equal, so a redelivery stays one.
    """
    import time

    import httpx

    from closeconv.intake.replay import latest_time_s, shift_times
    from closeconv.intake.signatures import respondio_signature

    key = key or next((k.strip() for k in os.environ.get("CLOSECONV_RESPONDIO_SIGNING_KEYS", "").split(",") if k.strip()), None)
    if not key:
        raise ConfigurationFailed("no signing key: pass --key or set CLOSECONV_RESPONDIO_SIGNING_KEYS "
                                  "to the key the receiver was started with")
    files = sorted(folder.glob("*.json"))
    if not files:
        raise click.ClickException(f"no *.json payloads in {folder}")
    payloads = [json.loads(p.read_bytes()) for p in files]
    latest = max((t for t in map(latest_time_s, payloads) if t is not None), default=None)
    delta = 0 if as_recorded or latest is None else int(time.time() - 60 - latest)
    failed = 0
    with httpx.Client(timeout=10) as client:
        for path, payload in zip(files, payloads):
            body = json.dumps(shift_times(payload, delta)).encode() if delta else path.read_bytes()
            try:
                response = client.post(url, content=body, headers={
                    "content-type": "application/json", "x-webhook-signature": respondio_signature(key, body)})
            except httpx.HTTPError as exc:
                raise click.ClickException(f"cannot reach {url}: {exc}. Is `closeconv intake serve` running?") from None
            try:
                answer = json.dumps(response.json())
            except ValueError:
                answer = response.text[:200]
            click.echo(f"{response.status_code}  {path.name:<40} {answer}")
            failed += response.status_code >= 300
    click.echo(f"sent {len(files)} payloads, {failed} not accepted")
    sys.exit(1 if failed else 0)


# Backfill over the Developer API and declared mappings of other exports (closeconv.commands.intake_sources).
from closeconv.commands.intake_sources import backfill_command, map_command  # noqa: E402

command.add_command(backfill_command)
command.add_command(map_command)
