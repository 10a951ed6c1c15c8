"""Blocking asset checks: a failure stops the run before the warehouse is published, so
analysts keep the previous, trusted version.

The rules are SQL in closeconv.schemas (one per published table or more); this module only
turns them into Dagster check specs and results. Each asset step that builds checked tables
declares their checks (`check_specs=specs_for(...)`) and runs them at its end on its own staging
connection: no separate check steps, whose start, events and staging opening cost time on every
run. A failed blocking check fails that step, so nothing downstream runs and nothing is published.
"""

from collections.abc import Iterable

import dagster as dg
import duckdb

from closeconv import schemas
from closeconv.published_tables import unpublished_changes


def _checks_on(tables: Iterable[str]) -> list[schemas.TableCheck]:
    tables = set(tables)
    return [c for c in schemas.TABLE_CHECKS if c.table in tables]


def specs_for(tables: Iterable[str]) -> list[dg.AssetCheckSpec]:
    """The blocking check specs of these tables, for the asset step that builds them."""
    return [dg.AssetCheckSpec(c.name, asset=c.table, blocking=True, description=c.description) for c in _checks_on(tables)]


def run_checks(con: duckdb.DuckDBPyConnection, tables: Iterable[str]) -> list[dg.AssetCheckResult]:
    """Run the checks of these tables in the staging DuckDB; the step yields the results.

    Only the rows of the contacts changed since the last publish (and rows sharing an id with
    them) are read where a rule allows it: the others passed when they were published."""
    scope = unpublished_changes(con)
    changed = None if scope.everything else scope.table
    results = []
    for check in _checks_on(tables):
        # Looked up at run time, so the rule that runs is the one in closeconv.schemas.
        outcome = schemas.run_table_check(con, schemas.CHECKS_BY_NAME[check.name], changed)
        results.append(dg.AssetCheckResult(
            asset_key=check.table,
            check_name=check.name,
            passed=outcome.passed,
            description=None if outcome.passed else f"{outcome.violations} violation(s): " + "; ".join(outcome.examples),
            metadata={"violations": outcome.violations, "examples": dg.MetadataValue.json(outcome.examples)},
        ))
    return results


def require_every_check_declared(steps: Iterable[dg.AssetsDefinition]) -> None:
    """Fail at load time if a rule in closeconv.schemas is declared by no asset step."""
    declared = {key.name for step in steps for key in step.check_keys}
    missing = {c.name for c in schemas.TABLE_CHECKS} - declared
    if missing:
        raise RuntimeError(f"table checks {sorted(missing)} in closeconv.schemas belong to no asset step: "
                           "declare them with check_specs=specs_for(...) on the step that builds the table")
