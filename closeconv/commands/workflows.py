"""`closeconv workflows ...`: list, validate, create from a template, and what-if replay."""

from __future__ import annotations

import json
from pathlib import Path

import click

from closeconv.config import ConfigError, resolve_settings


def _default_dir() -> Path:
    return resolve_settings().workflows_dir


def _warehouse_timezone(warehouse: Path) -> str | None:
    """The timezone the published warehouse was built in (its days are in it), if readable."""
    import duckdb

    from closeconv.warehouse import open_warehouse_readonly

    if not warehouse.is_file():
        return None
    try:
        con = open_warehouse_readonly(warehouse)
    except duckdb.Error:
        return None
    try:
        return con.sql("SELECT timezone FROM closeconv_meta").fetchall()[0][0]
    except (duckdb.Error, IndexError):
        return None
    finally:
        con.close()


@click.group(name="workflows")
def command() -> None:
    """Workflow definitions in workflows/*.yaml: list, validate, create, what-if replay.

    \b
      closeconv workflows list
      closeconv workflows validate [DIR|FILE]
      closeconv workflows new --template unassign-after-close
      closeconv workflows replay workflows/my-draft.yaml --from 2026-03-01 --to 2026-03-31
    """


@command.command(name="validate")
@click.argument("path", required=False, type=click.Path(path_type=Path))
@click.option("--reference", "reference", type=click.Path(path_type=Path, file_okay=False), default=None,
              help="Reference data folder (default: data/reference or CLOSECONV_REFERENCE) for the id warnings.")
def validate_cmd(path: Path | None, reference: Path | None) -> None:
    """Check every workflow file in DIR (default: workflows/, or CLOSECONV_WORKFLOWS), or one FILE.

    Prints each problem as FILE:LINE: problem. Fix: ... and exits 1 if there is any. User and
    team ids that the reference files (users.csv, teams.csv) do not know are warnings (exit 0).
    """
    from closeconv.config import resolve_settings
    from closeconv.workflows.loader import check_files, parse_workflow_file, validate_folder, workflow_files
    from closeconv.workflows.references import unknown_reference_ids

    target = path or _default_dir()
    if target.is_file():
        wf, problems = parse_workflow_file(target)
        workflows = [wf] if wf else []
    elif target.is_dir():
        problems = validate_folder(target)
        workflows, _ = check_files(workflow_files(target))
    else:
        raise click.ClickException(f"{target} does not exist. Fix: give a workflows folder or a workflow file.")
    for p in problems:
        click.echo(str(p), err=True)
    if problems:
        files = len({p.file for p in problems})
        click.echo(f"{len(problems)} problem(s) in {files} file(s).", err=True)
        raise SystemExit(1)
    try:
        warnings = unknown_reference_ids(workflows, resolve_settings({"reference_dir": reference}).reference_dir)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    for w in warnings:
        click.echo(str(w), err=True)
    enabled = sum(1 for w in workflows if w.enabled)
    click.echo(f"OK: {len(workflows)} workflow(s) in {target} ({enabled} enabled)"
               + (f", {len(warnings)} warning(s)." if warnings else "."))


@command.command(name="list")
@click.option("--dir", "folder", type=click.Path(path_type=Path), default=None, help="Workflows folder (default: workflows/).")
def list_cmd(folder: Path | None) -> None:
    """Show the workflows (workflows/*.yaml) and the templates (workflows/templates/)."""
    from closeconv.workflows.loader import list_templates, parse_workflow_file, workflow_files

    folder = folder or _default_dir()
    files = workflow_files(folder)
    click.echo(f"Workflows in {folder}/ (replayed by the pipeline when enabled):")
    if not files:
        click.echo("  (none) - create one with: closeconv workflows new --template unassign-after-close")
    for path in files:
        wf, problems = parse_workflow_file(path)
        if wf is None:
            click.echo(f"  {path.name}: INVALID ({len(problems)} problem(s)) - run: closeconv workflows validate")
            continue
        state = "enabled " if wf.enabled else "disabled"
        once = ", once per contact" if wf.settings.trigger_once_per_contact else ""
        click.echo(f"  [{state}] {wf.id}  \"{wf.name}\"  ({path.name})")
        click.echo(f"             on {wf.trigger.type} when {wf.describe_conditions()}{once}")
        click.echo(f"             then {wf.describe_steps()}")
    click.echo("")
    click.echo("Templates (copy one with: closeconv workflows new --template NAME):")
    for path, wf, problems in list_templates(folder):
        if wf is None:
            click.echo(f"  {path.stem}: INVALID template ({len(problems)} problem(s))")
        else:
            click.echo(f"  {path.stem:<24} \"{wf.name}\" - {wf.trigger.type}: {wf.describe_steps()}")


@command.command(name="new")
@click.option("--template", "template", required=True, help="Template name (file name or id), see `workflows list`.")
@click.option("--dir", "folder", type=click.Path(path_type=Path), default=None, help="Workflows folder (default: workflows/).")
@click.option("--id", "new_id", default=None, help="Id (and file name) for the copy; default: the template's id.")
def new_cmd(template: str, folder: Path | None, new_id: str | None) -> None:
    """Copy a template into the workflows folder for editing (never overwrites)."""
    from ruamel.yaml import YAML

    from closeconv.workflows.loader import (
        check_files,
        find_template,
        list_templates,
        parse_workflow_text,
        workflow_files,
    )

    folder = folder or _default_dir()
    src = find_template(template, folder)
    if src is None:
        names = ", ".join(p.stem for p, _, _ in list_templates(folder)) or "(none found)"
        raise click.ClickException(f"no template named {template!r}. Fix: use one of: {names}.")
    text = src.read_text(encoding="utf-8")
    wf, problems = parse_workflow_text(text, str(src))
    if wf is None:
        raise click.ClickException("the template itself is invalid:\n" + "\n".join(str(p) for p in problems))
    wid = new_id or wf.id
    if new_id and new_id != wf.id:
        import io

        yaml = YAML(typ="rt")
        data = yaml.load(text)
        data["id"] = new_id
        buf = io.StringIO()
        yaml.dump(data, buf)
        text = buf.getvalue()
        wf, problems = parse_workflow_text(text, f"{new_id}.yaml")
        if wf is None:
            raise click.ClickException("\n".join(str(p) for p in problems))
    dest = folder / f"{wid}.yaml"
    if dest.exists() or (folder / f"{wid}.yml").exists():
        raise click.ClickException(
            f"{dest} already exists; not overwriting it. Fix: edit that file, or pass --id NEW_ID for a second copy."
        )
    existing, _ = check_files(workflow_files(folder))
    clash = next((w for w in existing if w.id == wid), None)
    if clash is not None:
        raise click.ClickException(
            f"the workflow id {wid!r} is already used by {clash.source_file}. Fix: pass --id NEW_ID."
        )
    folder.mkdir(parents=True, exist_ok=True)
    with open(dest, "x", encoding="utf-8") as fh:
        fh.write(text)
    click.echo(f"Created {dest} from template {src.stem!r}.")
    if wf.enabled:
        click.echo("It is enabled: the next pipeline run replays it. Set 'enabled: false' while you edit it.")
    else:
        click.echo("It is disabled (a draft): set 'enabled: true' when it is ready.")
    click.echo(f"Next: edit it, then `closeconv workflows validate` and `closeconv workflows replay {dest} --from ... --to ...`.")


@command.command(name="replay")
@click.argument("file", type=click.Path(path_type=Path, exists=True, dir_okay=False))
@click.option("--from", "date_from", default=None, help="First day (workspace timezone) or ISO timestamp with offset.")
@click.option("--to", "date_to", default=None, help="Last day, inclusive (workspace timezone) or ISO timestamp (exclusive).")
@click.option("--warehouse", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="Published warehouse (default: data/warehouse.duckdb or CLOSECONV_WAREHOUSE). Opened read-only.")
@click.option("--timezone", "tz", default=None, help="Timezone for DATEs (default: the warehouse's own timezone, as its daily metrics use).")
@click.option("--with-production", is_flag=True, help="Also replay the enabled workflows of the workflows folder.")
@click.option("--dir", "folder", type=click.Path(path_type=Path), default=None, help="Workflows folder for --with-production.")
@click.option("--sample", "sample_size", default=10, show_default=True, help="How many example actions to print.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def replay_cmd(file: Path, date_from, date_to, warehouse, tz, with_production, folder, sample_size, as_json) -> None:
    """What-if: replay the draft workflow FILE over history and print what it would have done.

    Reads the published warehouse read-only and writes nothing. The draft runs alone against
    the recorded assignment history (add --with-production to include the enabled workflows).
    """
    from closeconv.workflows.whatif import format_report, run_whatif

    try:
        settings = resolve_settings({"warehouse_path": warehouse, "timezone": tz, "workflows_dir": folder})
        # Dates mean days of the warehouse being replayed: its timezone, unless --timezone says otherwise.
        built_in = _warehouse_timezone(settings.warehouse_path)
        if tz is None and built_in is not None:
            settings = settings.with_(timezone=built_in)
        settings.check(landing=False, inputs=False)
        report = run_whatif(
            file,
            settings.warehouse_path,
            date_from,
            date_to,
            timezone=settings.timezone,
            workflows_dir=settings.workflows_dir,
            with_production=with_production,
            reference_dir=settings.reference_dir,
            sample_size=sample_size,
        )
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    if as_json:
        click.echo(json.dumps(report.as_dict(), indent=2, default=str))
    else:
        click.echo(format_report(report))
