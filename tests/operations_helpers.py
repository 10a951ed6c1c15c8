"""Helpers for the operations tests: real `closeconv` processes, a hermetic environment, and a
content hash of the published warehouse."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import duckdb

CLOSECONV = Path(sys.executable).parent / "closeconv"
# Tables whose content is the pipeline's result. pipeline_runs (run ids, times) and
# rejected_events.ingested_at (when a file was first read) describe the run, not the data.
RESULT_TABLES = {
    "events": "event_id",
    "rejected_events": "file, line, reason_code",
    "conversations": "conversation_id",
    "workflow_runs": "ALL",
    "workflow_actions": "ALL",
    "assignments": "ALL",
    "workflow_drift": "ALL",
    "daily_conversation_metrics": "ALL",
}
RUN_COLUMNS = {"rejected_events": ["ingested_at"]}


def hermetic_env(**extra: str) -> dict[str, str]:
    """The process environment without the developer's CLOSECONV_* or DAGSTER_HOME."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLOSECONV_") and k != "DAGSTER_HOME"}
    env.update(extra)
    return env


def run_flags(root: Path, warehouse: Path | None = None) -> list[str]:
    return ["--landing", str(root / "landing"), "--warehouse", str(warehouse or root / "wh" / "warehouse.duckdb"),
            "--workflows", str(root / "workflows"), "--reference", str(root / "reference")]


def closeconv(args: list[str], cwd: Path, timeout: float = 300, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(CLOSECONV), *args], cwd=cwd, capture_output=True, text=True,
                          env=hermetic_env(**env), timeout=timeout)


def content_hash(warehouse: Path) -> str:
    """sha256 over every result table, rows in a fixed order; run-describing columns left out."""
    con = duckdb.connect(str(warehouse), read_only=True)
    try:
        con.sql("SET TimeZone = 'UTC'")
        digest = hashlib.sha256()
        for table, order in RESULT_TABLES.items():
            exclude = RUN_COLUMNS.get(table)
            select = f"SELECT * EXCLUDE ({', '.join(exclude)})" if exclude else "SELECT *"
            rows = con.sql(f"{select} FROM {table} ORDER BY {order}").fetchall()
            digest.update(table.encode())
            digest.update(json.dumps(rows, default=str, sort_keys=True).encode())
        return digest.hexdigest()
    finally:
        con.close()


def scalar(warehouse: Path, sql: str):
    con = duckdb.connect(str(warehouse), read_only=True)
    try:
        return con.sql(sql).fetchall()[0][0]
    finally:
        con.close()


def write_events(path: Path, contacts: range, day: str = "2026-03-02", prefix: str = "e") -> int:
    """Three events (received, sent, closed) per contact; returns the number of lines."""
    lines = []
    for c in contacts:
        hh, mm = divmod(c % 1440, 60)
        base = f"{day}T{hh:02d}:{mm:02d}"
        lines.append(json.dumps({"event_id": f"{prefix}{c}-r", "event_type": "message.received",
                                 "occurred_at": f"{base}:00Z", "contact_id": f"c{c}"}))
        lines.append(json.dumps({"event_id": f"{prefix}{c}-s", "event_type": "message.sent", "source": "user",
                                 "user_id": "u1", "occurred_at": f"{base}:20Z", "contact_id": f"c{c}"}))
        lines.append(json.dumps({"event_id": f"{prefix}{c}-c", "event_type": "conversation.closed", "source": "user",
                                 "user_id": "u1", "occurred_at": f"{base}:40Z", "contact_id": f"c{c}"}))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    return len(lines)


def project(root: Path) -> Path:
    for d in ("landing", "workflows", "reference"):
        (root / d).mkdir(parents=True, exist_ok=True)
    return root
