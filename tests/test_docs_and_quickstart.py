"""The data dictionary matches the published tables, its example queries run, and the quick
start's main command (`closeconv demo`) works end to end on a small sample."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

from closeconv.warehouse import PUBLIC_TABLES

REPO = Path(__file__).resolve().parent.parent
DOC = REPO / "docs" / "warehouse.md"
CLOSECONV = Path(sys.executable).parent / "closeconv"
SQL_TYPE_ALIASES = {"TIMESTAMP WITH TIME ZONE": "TIMESTAMPTZ"}


def documented_tables() -> dict[str, list[tuple[str, str]]]:
    """{table: [(column, type), ...]} from the markdown tables under each `## `table`` heading."""
    tables: dict[str, list[tuple[str, str]]] = {}
    current: list[str] = []
    for line in DOC.read_text().splitlines():
        heading = re.match(r"^##+ (.+)$", line)
        if heading:
            current = re.findall(r"`([a-z0-9_]+)`", heading.group(1))
            continue
        row = re.match(r"^\| `([a-z0-9_]+)` \| ([A-Z]+) \|", line)
        if row and len(current) == 1:
            tables.setdefault(current[0], []).append((row.group(1), row.group(2)))
        elif row and current:
            # a section covering several tables marks each row's table in a sub-heading
            pass
    return tables


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    """`closeconv demo` in an empty folder, as a newcomer runs it (small sample for speed)."""
    work = tmp_path_factory.mktemp("demo")
    env = dict(os.environ, CLOSECONV_WORKFLOWS=str(REPO / "workflows"))
    for name in ("CLOSECONV_LANDING", "CLOSECONV_WAREHOUSE", "CLOSECONV_REFERENCE", "CLOSECONV_TIMEZONE"):
        env.pop(name, None)
    # --start pins the sample's days for the dated example queries; --no-serve skips the dashboard.
    proc = subprocess.run([str(CLOSECONV), "demo", "--conversations", "150", "--seed", "3", "--start", "2026-03-02",
                           "--no-serve"],
                          cwd=work, env=env, capture_output=True, text=True, timeout=300)
    return work, proc


def test_demo_builds_the_warehouse_and_says_how_to_look(demo_run):
    work, proc = demo_run
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "closeconv run: done" in proc.stdout
    assert "duckdb -readonly data/warehouse.duckdb" in proc.stdout
    assert ".venv/bin/closeconv dashboard" in proc.stdout  # hints that work without uv on PATH
    assert "serving" not in proc.stdout
    # progress lines per step, with counts
    for step in ("landing_files:", "events:", "workflows:", "conversations:", "warehouse:"):
        assert step in proc.stderr
    con = duckdb.connect(str(work / "data" / "warehouse.duckdb"), read_only=True)
    closed = con.sql("SELECT count(*) FROM conversations WHERE status = 'closed'").fetchall()[0][0]
    rejected = con.sql("SELECT count(*) FROM rejected_events").fetchall()[0][0]
    con.close()
    assert closed > 100
    assert rejected > 0  # the sample carries bad records on purpose
    assert (work / "data" / "reference" / "users.csv").exists()


def test_demo_reuses_existing_landing_files(demo_run):
    work, _ = demo_run
    before = sorted(p.name for p in (work / "data" / "landing").iterdir())
    env = dict(os.environ, CLOSECONV_WORKFLOWS=str(REPO / "workflows"))
    proc = subprocess.run([str(CLOSECONV), "demo", "--no-serve"], cwd=work, env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "already holds" in proc.stderr
    assert sorted(p.name for p in (work / "data" / "landing").iterdir()) == before


def test_data_dictionary_matches_published_tables(demo_run):
    work, proc = demo_run
    assert proc.returncode == 0
    documented = documented_tables()
    con = duckdb.connect(str(work / "data" / "warehouse.duckdb"), read_only=True)
    try:
        actual_tables = {r[0] for r in con.sql("SELECT table_name FROM duckdb_tables()").fetchall()}
        assert set(PUBLIC_TABLES) | {"closeconv_meta"} == actual_tables
        for table in sorted(actual_tables):
            assert table in documented, f"table {table} is not documented in docs/warehouse.md"
            actual = [(name, SQL_TYPE_ALIASES.get(dtype, dtype.split("(")[0])) for name, dtype in con.sql(
                "SELECT column_name, data_type FROM duckdb_columns() WHERE table_name = ? ORDER BY column_index",
                params=[table]).fetchall()]
            assert documented[table] == actual, f"docs/warehouse.md disagrees with table {table}"
    finally:
        con.close()


def test_example_queries_in_the_docs_run(demo_run):
    work, _ = demo_run
    queries = re.findall(r"```sql\n(.*?)```", DOC.read_text(), flags=re.S)
    assert len(queries) >= 3
    con = duckdb.connect(str(work / "data" / "warehouse.duckdb"), read_only=True)
    try:
        for q in queries:
            rows = con.sql(q).fetchall()
            assert rows, f"example query returned nothing on the sample:\n{q}"
    finally:
        con.close()


def test_demo_ends_by_serving_the_dashboard_until_ctrl_c(tmp_path):
    """The README's main command ends with the dashboard on the demo warehouse at a printed URL."""
    import signal
    import socket
    import threading

    import httpx

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLOSECONV_")}
    env.update(CLOSECONV_WORKFLOWS=str(REPO / "workflows"), HOME=str(tmp_path))
    proc = subprocess.Popen([str(CLOSECONV), "demo", "--conversations", "80", "--port", str(port)], cwd=tmp_path,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                            start_new_session=True)  # its own group: never leaves a server behind
    lines: list[str] = []

    def read() -> None:
        for line in proc.stdout:
            lines.append(line)
            if "serving" in line:
                return
    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    reader.join(timeout=300)
    try:
        served = [line for line in lines if "closeconv dashboard: serving" in line]
        assert served, "".join(lines)[-2000:]
        url = f"http://localhost:{port}/"
        assert url in served[0]
        assert httpx.get(f"http://127.0.0.1:{port}/_stcore/health", timeout=10).text == "ok"
        assert httpx.get(f"http://127.0.0.1:{port}/reports", timeout=10).status_code == 200
    finally:
        proc.send_signal(signal.SIGINT)  # Ctrl-C
        try:
            code = proc.wait(timeout=30)
        finally:
            try:
                os.killpg(proc.pid, signal.SIGKILL)  # whatever is left of the group (the Streamlit server)
            except ProcessLookupError:
                pass
    assert code == 0
