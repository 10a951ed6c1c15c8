"""Blocking asset checks: a failure stops the run before the warehouse is published, so
analysts keep the previous, trusted version.

The rules are SQL in closeconv.schemas (one per published table or more); this module only
turns each into a Dagster check that runs it inside the staging DuckDB.
"""

import dagster as dg

from closeconv import schemas
from pipelines.defs.resources import WarehouseResource


def _asset_check(check: schemas.TableCheck) -> dg.AssetChecksDefinition:
    @dg.asset_check(asset=check.table, name=check.name, blocking=True, description=check.description)
    def _run(warehouse: WarehouseResource) -> dg.AssetCheckResult:
        # Looked up at run time, so the rule that runs is the one in closeconv.schemas.
        rule = schemas.CHECKS_BY_NAME[check.name]
        with warehouse.staging() as con:
            outcome = schemas.run_table_check(con, rule)
        return dg.AssetCheckResult(
            passed=outcome.passed,
            description=None if outcome.passed else f"{outcome.violations} violation(s): " + "; ".join(outcome.examples),
            metadata={"violations": outcome.violations, "examples": dg.MetadataValue.json(outcome.examples)},
        )

    return _run


table_checks = [_asset_check(c) for c in schemas.TABLE_CHECKS]
