"""A small warehouse built by the real pipeline for the dashboard tests, and SQL to check figures.

The sample's days end yesterday, so the date presets (Last 7 days, ...) select real data.
"""

from __future__ import annotations

import shutil
from datetime import date, timedelta
from pathlib import Path

import duckdb

from closeconv.commands.run import _failure_message, run_pipeline
from closeconv.config import Settings
from closeconv.generate import generate_sample, write_reference

REPO = Path(__file__).resolve().parent.parent
TIMEZONE = "Europe/Berlin"
DAYS = 21
DASHBOARD_ENV = ("CLOSECONV_WAREHOUSE", "CLOSECONV_TIMEZONE", "CLOSECONV_DASHBOARD_PASSWORD",
                 "CLOSECONV_DASHBOARD_REDACT", "CLOSECONV_DASHBOARD_TOKEN_KEY", "CLOSECONV_LANDING",
                 "CLOSECONV_WORKFLOWS", "CLOSECONV_REFERENCE")


def build_warehouse(root: Path, conversations: int = 300, seed: int = 11) -> Path:
    landing, reference, workflows = root / "landing", root / "reference", root / "workflows"
    for folder in (landing, reference, workflows):
        folder.mkdir(parents=True, exist_ok=True)
    generate_sample(landing, conversations=conversations, seed=seed, start=date.today() - timedelta(days=DAYS), days=DAYS)
    write_reference(reference, seed=seed)
    shutil.copy(REPO / "workflows" / "templates" / "unassign-after-close.yaml", workflows)
    warehouse = root / "warehouse.duckdb"
    settings = Settings(landing_dir=landing, warehouse_path=warehouse, workflows_dir=workflows,
                        reference_dir=reference, timezone=TIMEZONE)
    result = run_pipeline(settings, quiet=True)
    assert result.success, _failure_message(result)
    return warehouse


def scalar(warehouse: Path, sql: str, params: list | None = None):
    con = duckdb.connect(str(warehouse), read_only=True)
    try:
        con.sql("SET TimeZone = 'UTC'")
        return con.sql(sql, params=params or []).fetchall()[0][0]
    finally:
        con.close()


def closed_count(warehouse: Path, where: str = "TRUE", params: list | None = None) -> int:
    return scalar(warehouse, f"SELECT count(*) FROM conversations WHERE status = 'closed' AND {where}", params)


def local_day(column: str) -> str:
    return f"timezone('{TIMEZONE}', {column})::DATE"
