"""Drift figures: replayed unassignments the platform did not record (table workflow_drift)."""

from __future__ import annotations

import duckdb


def drift_count(con: duckdb.DuckDBPyConnection) -> int:
    """Number of rows of ``workflow_drift`` (replayed unassignments the platform did not record)."""
    return int(con.sql("SELECT count(*) FROM workflow_drift").fetchall()[0][0])


def drift_contacts(con: duckdb.DuckDBPyConnection) -> int:
    """Number of distinct contacts in ``workflow_drift`` (what `closeconv run` reports)."""
    return int(con.sql("SELECT count(DISTINCT contact_id) FROM workflow_drift").fetchall()[0][0])

