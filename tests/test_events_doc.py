"""docs/events.md says what closeconv/contract.py enforces, and its examples load (issue 7, point 14).

The tables are parsed from the page and compared with the contract in code, whatever it holds:
when the contract gains an event type or a source, only the page's table needs the new row.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

from closeconv.contract import ALLOWED_SOURCES, DEFAULT_SOURCE, EVENT_FIELDS, EVENT_TYPES, REQUIRED_FIELDS
from closeconv.ingest import stage_landing_files
from closeconv.pipeline import build_events
from conftest import REPO

DOC = (REPO / "docs" / "events.md").read_text()


def section(title: str) -> str:
    match = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## |\Z)", DOC, re.M | re.S)
    assert match, f"docs/events.md has no '## {title}' section"
    return match.group(1)


def table(text: str) -> list[list[str]]:
    """The rows of the first Markdown table in `text`, header first, cells stripped."""
    rows = [line for line in text.splitlines() if line.startswith("|")]
    cells = [[c.strip() for c in row.strip("|").split("|")] for row in rows]
    return [cells[0], *cells[2:]]  # skip the |---| rule


def ticked(cell: str) -> list[str]:
    return re.findall(r"`([^`]+)`", cell)


def code_block(lang: str, after: str) -> str:
    match = re.search(rf"{re.escape(after)}.*?```{lang}\n(.*?)```", DOC, re.S)
    assert match, f"no ```{lang} block after {after!r}"
    return match.group(1)


def test_field_table_names_every_field_and_the_required_ones():
    header, *rows = table(section("Fields"))
    assert header[:2] == ["field", "required"]
    fields = [ticked(r[0])[0] for r in rows]
    assert fields == list(EVENT_FIELDS)
    assert [f for f, r in zip(fields, rows) if r[1] == "yes"] == list(REQUIRED_FIELDS)


def test_sources_table_is_the_contract():
    header, *rows = table(section("Sources"))
    assert header[0] == "event_type"
    documented = {ticked(r[0])[0]: ticked(r[1]) for r in rows}
    defaults = {ticked(r[0])[0]: ticked(r[2])[0] for r in rows if ticked(r[2])}
    assert set(documented) == set(EVENT_TYPES)
    assert documented == {t: list(s) for t, s in ALLOWED_SOURCES.items()}
    assert defaults == DEFAULT_SOURCE


def test_csv_header_is_the_contract_order():
    assert code_block("text", "## CSV header").strip() == ",".join(EVENT_FIELDS)
    assert code_block("csv", "CSV (`events.csv`").splitlines()[0] == ",".join(EVENT_FIELDS)


@pytest.fixture
def landing(tmp_path) -> Path:
    folder = tmp_path / "landing"
    folder.mkdir()
    (folder / "events.jsonl").write_text(code_block("jsonl", "JSON Lines (`events.jsonl`)"))
    (folder / "events.csv").write_text(code_block("csv", "CSV (`events.csv`"))
    # The Parquet example is a Python snippet: run it as a user would, in the landing folder.
    proc = subprocess.run([sys.executable, "-c", code_block("python", "Parquet (`events.parquet`)")],
                          cwd=folder, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return folder


def test_every_example_loads_with_zero_rejections(landing, tmp_path):
    con = duckdb.connect(str(tmp_path / "staging.duckdb"))
    con.sql("SET TimeZone = 'UTC'")
    try:
        stage_landing_files(con, landing)
        counts = build_events(con)
        rejected = con.sql("SELECT file, line, reason FROM rejected_events").fetchall()
        assert rejected == []
        per_file = dict(con.sql("SELECT source_file, count(*) FROM events GROUP BY 1").fetchall())
        assert per_file == {"events.jsonl": 5, "events.csv": 5, "events.parquet": 3}
        assert counts.records_read == counts.events_loaded == 13
        # The quoted multi-line summary is one value, and the row keeps the line it starts on.
        summary, line = con.sql("SELECT summary, source_line FROM events WHERE event_id = 'e-2004'").fetchall()[0]
        assert summary == "Refund sent, and\na note for the team" and line == 5
        # Each example ends with its conversation closed.
        closed = con.sql("SELECT count(DISTINCT conversation_id) FROM events WHERE event_type = 'conversation.closed'")
        assert closed.fetchall() == [(3,)]
    finally:
        con.close()
