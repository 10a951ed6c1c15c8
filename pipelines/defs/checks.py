"""Blocking asset checks: a failure stops the run before the warehouse is published, so
analysts keep the previous, trusted version.

The rules are SQL in closeconv.schemas (one per published table or more); this module only
turns them into Dagster checks that run inside the staging DuckDB. The checks of the tables one
asset step builds run as one check step with one staging connection (3 steps instead of 12:
each step and each staging opening costs Dagster events and DuckDB start-up on every run).
Grouping by the producing step keeps the graph acyclic: a check step waits only for its step.
"""

import dagster as dg

from closeconv import schemas
from pipelines.defs import assets as asset_steps
from pipelines.defs.resources import WarehouseResource

CHECKED_STEPS = (asset_steps.events_and_rejections, asset_steps.replay_workflows, asset_steps.conversation_metrics)


def _checks_of(step: dg.AssetsDefinition) -> dg.AssetChecksDefinition:
    tables = {key.to_user_string() for key in step.keys}
    mine = [c for c in schemas.TABLE_CHECKS if c.table in tables]

    @dg.multi_asset_check(
        name=f"{step.node_def.name}_checks",
        specs=[dg.AssetCheckSpec(c.name, asset=c.table, blocking=True, description=c.description) for c in mine],
    )
    def _run(warehouse: WarehouseResource):
        with warehouse.staging() as con:
            for check in mine:
                # Looked up at run time, so the rule that runs is the one in closeconv.schemas.
                outcome = schemas.run_table_check(con, schemas.CHECKS_BY_NAME[check.name])
                yield dg.AssetCheckResult(
                    asset_key=check.table,
                    check_name=check.name,
                    passed=outcome.passed,
                    description=None if outcome.passed else f"{outcome.violations} violation(s): " + "; ".join(outcome.examples),
                    metadata={"violations": outcome.violations, "examples": dg.MetadataValue.json(outcome.examples)},
                )

    return _run


table_checks = [_checks_of(step) for step in CHECKED_STEPS]
_covered = {c.name for step in CHECKED_STEPS for c in schemas.TABLE_CHECKS if c.table in {k.to_user_string() for k in step.keys}}
if _covered != {c.name for c in schemas.TABLE_CHECKS}:
    raise RuntimeError("a table check in closeconv.schemas has no check step: add its asset step to CHECKED_STEPS")
