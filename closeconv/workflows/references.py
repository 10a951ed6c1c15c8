"""Warnings about user and team ids in workflows that the reference files do not know.

A typo in a team id is valid YAML and a valid workflow, but a round robin over an unknown team
assigns no one: `closeconv workflows validate` says so before a replay does. Without
reference files nothing is known, so nothing is reported.
"""

from __future__ import annotations

import difflib
from pathlib import Path

from closeconv.reference import load_reference
from closeconv.workflows.loader import Problem, line_in_file
from closeconv.workflows.models import Workflow

ID_FIELDS = ("user_id", "team_id", "assignee_id")


def known_ids(reference_dir: Path | None) -> tuple[set[str] | None, set[str] | None]:
    """(user ids, team ids) named by users.csv / teams.csv; None for a kind no file gives."""
    if reference_dir is None:
        return None, None
    users = load_reference(Path(reference_dir), "users.csv")
    teams = load_reference(Path(reference_dir), "teams.csv")
    user_ids = set(users.get_column("user_id").to_list()) if users is not None else None
    team_ids: set[str] | None = None
    if teams is not None:
        team_ids = set(teams.get_column("team_id").to_list())
    if users is not None and users.get_column("team_id").drop_nulls().len():
        team_ids = (team_ids or set()) | set(users.get_column("team_id").drop_nulls().to_list())
    return user_ids, team_ids


def _warning(wf: Workflow, loc: tuple, kind: str, value: str, known: set[str], files: str) -> Problem:
    close = difflib.get_close_matches(value, sorted(known), n=1, cutoff=0.6)
    hint = f" (did you mean '{close[0]}'?)" if close else ""
    listed = ", ".join(sorted(known)[:10]) + (", …" if len(known) > 10 else "")
    return Problem(
        wf.source_file or "<text>", line_in_file(Path(wf.source_file), loc) if wf.source_file else 1,
        f"warning: {kind} '{value}' is not in the reference data ({files}){hint}",
        f"use one of {listed}, or add it to {files}",
    )


def unknown_reference_ids(workflows: list[Workflow], reference_dir: Path | None) -> list[Problem]:
    """A warning for each user or team id in a step or a condition that reference data lacks."""
    user_ids, team_ids = known_ids(reference_dir)
    out: list[Problem] = []
    for wf in workflows:
        refs: list[tuple[tuple, str, str]] = []
        for i, step in enumerate(wf.steps):
            if step.user_id is not None:
                refs.append((("steps", i, "user_id"), "user", step.user_id))
            if step.team_id is not None:
                refs.append((("steps", i, "team_id"), "team", step.team_id))
        for i, rule in enumerate(wf.trigger.conditions.rules):
            if rule.field in ID_FIELDS and rule.value is not None:
                kind = "team" if rule.field == "team_id" else "user"
                for v in (rule.value,) if isinstance(rule.value, str) else rule.value:
                    refs.append((("trigger", "conditions", "rules", i, "value"), kind, v))
        for loc, kind, value in refs:
            known = user_ids if kind == "user" else team_ids
            files = "users.csv" if kind == "user" else "teams.csv, users.csv"
            # a hint, not a rule: trimmed and case-insensitive, as conditions and teams compare
            if known is not None and value.strip().lower() not in {k.lower() for k in known}:
                out.append(_warning(wf, loc, kind, value, known, files))
    return sorted(out)
