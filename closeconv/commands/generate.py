"""`closeconv generate`: write deterministic sample events (and reference data)."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import click

from closeconv.reference import REFERENCE_FILES
from closeconv.sample import BAD_KINDS, FORMATS, generate_sample, output_paths, write_reference


def _human_bytes(n: int) -> str:
    size = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"


@click.command("generate")
@click.option("--conversations", "-n", type=click.IntRange(min=0), default=2000, show_default=True,
              help="Conversations to simulate (short 'ok thank you' reopens come on top).")
@click.option("--seed", type=int, default=42, show_default=True, help="Same seed and options, same bytes.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), default=Path("data/landing"),
              show_default=True, help="Folder to write the event files into.")
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="jsonl", show_default=True)
@click.option("--gzip", is_flag=True, help="Gzip the JSON Lines output (.jsonl.gz).")
@click.option("--start", type=click.DateTime(formats=["%Y-%m-%d"]), default="2026-03-02", show_default=True,
              help="First day of the generated history (UTC).")
@click.option("--days", type=click.IntRange(min=1), default=14, show_default=True, help="Days of history.")
@click.option("--bad-rate", type=click.FloatRange(0.0, 0.5), default=0.01, show_default=True,
              help="Share of bad records (broken lines, missing fields, duplicates, orphan closes...).")
@click.option("--files", type=click.IntRange(min=1), default=1, show_default=True,
              help="Split the output over this many files.")
@click.option("--reference", "reference_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Also write users.csv, teams.csv and categories.csv into this folder.")
@click.option("--force", is_flag=True, help="Overwrite event and reference files that already exist.")
def command(conversations: int, seed: int, out_dir: Path, fmt: str, gzip: bool, start, days: int,
            bad_rate: float, files: int, reference_dir: Path | None, force: bool) -> None:
    """Write deterministic sample conversation events into the landing folder.

    \b
    Examples:
      closeconv generate                                   # 2000 conversations, JSONL
      closeconv generate -n 100000 --format parquet --files 4
      closeconv generate --gzip --reference data/reference
    """
    if gzip and fmt != "jsonl":
        raise click.UsageError("--gzip applies to --format jsonl only.")
    start_date: date = start.date()

    ours = set(output_paths(out_dir, fmt, files, gzip))
    targets = sorted(ours) + ([reference_dir / n for n in REFERENCE_FILES] if reference_dir is not None else [])
    existing = [p for p in targets if p.exists()]
    if existing and not force:
        names = ", ".join(str(p) for p in existing[:3]) + (" …" if len(existing) > 3 else "")
        raise click.UsageError(f"{names} already exist(s); not overwriting. "
                               "Fix: pass --force to overwrite, or --out / --reference another folder.")
    stale = sorted(p for p in out_dir.glob("events-*") if p not in ours) if out_dir.is_dir() else []

    result = generate_sample(out_dir, conversations, seed=seed, fmt=fmt, start=start_date, days=days,
                             bad_rate=bad_rate, files=files, gzip=gzip)

    size = sum(p.stat().st_size for p in result.files)
    if len(result.files) == 1:
        where = f"{result.files[0]}"
    else:
        where = f"{result.files[0].parent}/{result.files[0].name} … {result.files[-1].name}"
    bad_total = sum(result.bad_records.values())
    bad_text = ", ".join(f"{k} {v}" for k, v in result.bad_records.items() if v) or "none"
    rate = result.events_written / result.seconds if result.seconds > 0 else 0.0
    end_date = start_date.fromordinal(start_date.toordinal() + days - 1)
    click.echo(
        f"Wrote {len(result.files)} {fmt}{'.gz' if gzip else ''} file{'s' if len(result.files) != 1 else ''} "
        f"({where}, {_human_bytes(size)}): {result.events_written:,} records for {result.conversations:,} "
        f"conversations ({result.reopened_conversations:,} of them 'ok thank you' reopens, "
        f"{result.open_conversations:,} still open) of {result.contacts:,} contacts from {start_date} to "
        f"{end_date} UTC, seed {seed}; {result.valid_events:,} valid events "
        f"(incl. {result.broadcasts:,} broadcasts) and {bad_total:,} bad records ({bad_text}); "
        f"took {result.seconds:.2f} s ({rate:,.0f} records/s)."
    )
    missing = [k for k in BAD_KINDS if k in result.bad_records and not result.bad_records[k]]
    if bad_rate > 0 and missing:
        click.echo(f"Note: too few records for every bad-record kind; none of: {', '.join(missing)}.")
    if reference_dir is not None:
        paths = write_reference(reference_dir, seed=seed)
        click.echo(f"Reference data: {', '.join(str(p) for p in paths)}.")
    if stale:
        names = ", ".join(p.name for p in stale[:5]) + (" …" if len(stale) > 5 else "")
        click.echo(f"Warning: {out_dir} also holds other event files from an earlier run ({names}); "
                   "the pipeline will read them too.", err=True)
