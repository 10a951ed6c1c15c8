"""Read-only, short-lived access to the published warehouse file.

No handle on the file outlives a query, so a pipeline run can always publish (it swaps a new
file in with an atomic rename). Opening a DuckDB database costs tens of milliseconds, so each
query instead ATTACHes the file read-only to one process-wide in-memory DuckDB instance (which
holds no file), runs on its own cursor, and DETACHes it: a few milliseconds, and the file is
closed again when the query returns. A query that meets the file mid-swap or briefly unreadable
is retried with a short backoff.
"""

from __future__ import annotations

import os
import threading
import time
import uuid
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Any, Sequence
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import duckdb
import polars as pl

RETRIES = 5
BACKOFF_S = 0.05

_host: duckdb.DuckDBPyConnection | None = None
_host_lock = threading.Lock()


class WarehouseUnavailable(RuntimeError):
    """The warehouse file could not be read, even after retrying."""


def _host_connection() -> duckdb.DuckDBPyConnection:
    global _host
    with _host_lock:
        if _host is None:
            con = duckdb.connect()
            con.sql("SET TimeZone = 'UTC'")
            _host = con
        return _host


def validated_timezone(name: str) -> str:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown timezone {name!r}: use an IANA name such as Europe/Berlin") from None
    return name


class Warehouse:
    """The published warehouse at `path`; the workspace timezone comes from it unless overridden."""

    def __init__(self, path: Path, timezone_override: str | None = None):
        self.path = Path(path)
        self.timezone_override = validated_timezone(timezone_override) if timezone_override else None
        self._meta_key: str | None = None
        self._meta: dict[str, Any] = {}

    def __repr__(self) -> str:
        return f"Warehouse({str(self.path)!r})"

    # --- the file ---------------------------------------------------------------------------

    def exists(self) -> bool:
        return self.path.is_file()

    @property
    def cache_key(self) -> str:
        """Changes whenever a new warehouse is published (the rename gives a new inode)."""
        try:
            st = os.stat(self.path)
        except OSError:
            return f"{self.path}:missing"
        return f"{self.path}:{st.st_ino}:{st.st_mtime_ns}:{st.st_size}:{self.timezone_override or ''}"

    def is_empty(self) -> bool:
        """True when there is nothing to show: no file, no `conversations` table, or no rows in it."""
        if not self.exists():
            return True
        try:
            if "conversations" not in self.tables:
                return True
            return not self.scalar("SELECT EXISTS (SELECT 1 FROM conversations)")
        except (WarehouseUnavailable, duckdb.Error):
            return True

    # --- metadata ---------------------------------------------------------------------------

    def _metadata(self) -> dict[str, Any]:
        key = self.cache_key
        if key != self._meta_key:
            meta: dict[str, Any] = {"tables": frozenset()}
            try:
                tables = frozenset(self.query(
                    "SELECT table_name FROM duckdb_tables() WHERE database_name = current_database()"
                )["table_name"].to_list())
                meta["tables"] = tables
                if "closeconv_meta" in tables:
                    rows = self.query("SELECT timezone, published_at, schema_version, run_id FROM closeconv_meta LIMIT 1")
                    if rows.height:
                        meta.update(rows.row(0, named=True))
            except (WarehouseUnavailable, duckdb.Error):
                pass
            self._meta, self._meta_key = meta, key
        return self._meta

    @property
    def tables(self) -> frozenset[str]:
        """Names of the tables in the file (a warehouse from an older release may lack some)."""
        return self._metadata().get("tables", frozenset())

    @property
    def timezone(self) -> str:
        if self.timezone_override:
            return self.timezone_override
        name = self._metadata().get("timezone") or "UTC"
        try:
            return validated_timezone(name)
        except ValueError:
            return "UTC"

    @property
    def data_as_of(self) -> datetime | None:
        return self._metadata().get("published_at")

    def today(self, now: datetime | None = None) -> date:
        """Today's local day in the workspace timezone."""
        return (now or datetime.now(timezone.utc)).astimezone(ZoneInfo(self.timezone)).date()

    def closed_day_range(self) -> tuple[date, date] | None:
        """First and last local day on which a conversation closed, for date pickers."""
        row = self.query(
            "SELECT timezone(?, min(closed_at))::DATE AS first, timezone(?, max(closed_at))::DATE AS last "
            "FROM conversations WHERE status = 'closed'",
            [self.timezone, self.timezone],
        ).row(0)
        return None if row[0] is None else (row[0], row[1])

    # --- queries ----------------------------------------------------------------------------

    def _run(self, action):
        """Attach the file read-only to a fresh cursor, run `action(cursor)`, detach; retry I/O errors."""
        if not self.exists():
            raise WarehouseUnavailable(f"no warehouse at {self.path}: build one with `closeconv run` or `closeconv demo`")
        path_sql = str(self.path.resolve()).replace("'", "''")
        last: Exception | None = None
        for attempt in range(RETRIES):
            alias = "wh_" + uuid.uuid4().hex[:12]
            cur = _host_connection().cursor()
            attached = False
            try:
                cur.sql("SET TimeZone = 'UTC'")  # per connection: a cursor does not inherit it
                cur.sql(f"ATTACH '{path_sql}' AS {alias} (READ_ONLY)")
                attached = True
                cur.sql(f"USE {alias}")
                return action(cur)
            except duckdb.IOException as exc:
                last = exc
            finally:
                if attached:
                    try:
                        cur.sql("USE memory")
                        cur.sql(f"DETACH {alias}")
                    except duckdb.Error:
                        pass
                cur.close()
            time.sleep(BACKOFF_S * (2 ** attempt))
        raise WarehouseUnavailable(f"could not read {self.path} after {RETRIES} tries: {last}")

    def with_cursor(self, action):
        """`action(cursor)` on one read-only attachment of the file, for dependent statements
        (the cursor is only valid inside `action`)."""
        return self._run(action)

    def query(self, sql: str, params: Sequence[Any] | None = None) -> pl.DataFrame:
        return self._run(lambda cur: cur.sql(sql, params=list(params or [])).pl())

    def scalar(self, sql: str, params: Sequence[Any] | None = None) -> Any:
        def one(cur):
            rows = cur.sql(sql, params=list(params or [])).fetchall()
            return rows[0][0] if rows else None
        return self._run(one)

    def query_many(self, statements: Sequence[tuple[str, Sequence[Any] | None]]) -> list[pl.DataFrame]:
        """Several queries on one attachment of the file (one consistent version, one attach)."""
        return self._run(lambda cur: [cur.sql(sql, params=list(params or [])).pl() for sql, params in statements])

    def copy_to_csv(self, sql: str, params: Sequence[Any] | None, dest: Path) -> int:
        """Write the result of `sql` to `dest` as CSV with a header, by DuckDB; returns rows written."""
        dest = Path(dest)
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest_sql = str(dest).replace("'", "''")
        copy = f"COPY ({sql}) TO '{dest_sql}' (FORMAT csv, HEADER)"
        return int(self._run(lambda cur: cur.execute(copy, list(params or [])).fetchall()[0][0]))
