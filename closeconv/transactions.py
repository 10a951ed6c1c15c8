"""One DuckDB transaction as a context manager (a leaf module: ingest and warehouse both use it)."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import duckdb


@contextmanager
def transaction(con: duckdb.DuckDBPyConnection) -> Iterator[None]:
    """Commit what the block did, or roll all of it back if it raised (a kill leaves nothing half-done)."""
    con.sql("BEGIN TRANSACTION")
    try:
        yield
    except BaseException:
        con.sql("ROLLBACK")
        raise
    con.sql("COMMIT")
