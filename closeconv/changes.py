"""Which contacts each pipeline step must recompute: the change journal between steps.

A run recomputes only the contacts that new, changed or removed records touch
(docs/performance.md, "Incremental runs"; the partition key is the contact). The journal lives
in staging, beside the tables it describes:

- `changed_contacts (step, contact_id, event_id)`: for `step`, these contacts (and, for the
  events step, the event ids of records that came or went) must be recomputed;
- `changed_everything (step)`: `step` must recompute everything (first run, full refresh,
  changed settings, a step that cannot scope its work).

A step reads its own scope (`scope_of`), recomputes it, records the contacts its own output
changed for the steps after it (`mark_contacts` / `mark_everything`), and clears its scope
(`clear`) **in the same transaction** as its output. A run that fails before a step leaves
that step's scope in place; the next run adds to it, so nothing is ever lost. A step whose
output tables do not exist yet recomputes everything whatever the journal says.

Each step also fingerprints the settings its output depends on (timezone, workflow
definitions, reference files, auto-close hours): `settings_changed` compares against the
fingerprint recorded by `record_settings` at the step's last success.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import duckdb

# The steps, in pipeline order; each one's scope is filled by the steps before it.
EVENTS, WORKFLOWS, CONVERSATIONS, PUBLISH = "events", "workflows", "conversations", "publish"
STEPS = (EVENTS, WORKFLOWS, CONVERSATIONS, PUBLISH)


@dataclass(frozen=True)
class Scope:
    """What one step must recompute in this run."""

    step: str
    everything: bool
    table: str | None = None  # temp table (contact_id VARCHAR, unique) when not everything
    contacts: int = 0

    @property
    def nothing(self) -> bool:
        return not self.everything and self.contacts == 0

    def where(self, column: str = "contact_id") -> str:
        """A SQL predicate: is `column` a contact in scope (always true for everything)."""
        if self.everything:
            return "true"
        return f"{column} IN (SELECT contact_id FROM {self.table})"


def ensure_journal(con: duckdb.DuckDBPyConnection) -> None:
    con.sql("CREATE TABLE IF NOT EXISTS changed_contacts (step VARCHAR, contact_id VARCHAR, event_id VARCHAR)")
    con.sql("CREATE TABLE IF NOT EXISTS changed_everything (step VARCHAR PRIMARY KEY)")
    con.sql("CREATE TABLE IF NOT EXISTS staging_meta (key VARCHAR PRIMARY KEY, value VARCHAR)")


def _check_steps(steps: Iterable[str]) -> list[str]:
    steps = list(steps)
    unknown = set(steps) - set(STEPS)
    if unknown:
        raise ValueError(f"unknown pipeline step(s) {sorted(unknown)}; the steps are {STEPS}")
    return steps


def mark_everything(con: duckdb.DuckDBPyConnection, steps: Iterable[str]) -> None:
    """These steps recompute everything on their next run (their contact lists are moot)."""
    ensure_journal(con)
    for step in _check_steps(steps):
        con.execute("INSERT OR IGNORE INTO changed_everything VALUES (?)", [step])
        con.execute("DELETE FROM changed_contacts WHERE step = ?", [step])


def mark_contacts(
    con: duckdb.DuckDBPyConnection, steps: Iterable[str], select_sql: str, params: list | None = None
) -> None:
    """Add to these steps' scopes the rows of `select_sql`: a query with a `contact_id` column
    and optionally an `event_id` column (the events step uses both; others contacts only)."""
    ensure_journal(con)
    cols = {d[0] for d in con.sql(f"SELECT * FROM ({select_sql}) LIMIT 0", params=params).description}
    event_id = "event_id" if "event_id" in cols else "NULL::VARCHAR"
    for step in _check_steps(steps):
        if con.execute("SELECT 1 FROM changed_everything WHERE step = ?", [step]).fetchall():
            continue
        con.execute(
            f"INSERT INTO changed_contacts SELECT DISTINCT ?, contact_id, {event_id} FROM ({select_sql}) "
            "WHERE contact_id IS NOT NULL OR " + ("event_id IS NOT NULL" if event_id == "event_id" else "false"),
            [step, *(params or [])],
        )


def missing_tables(con: duckdb.DuckDBPyConnection, tables: Iterable[str]) -> list[str]:
    """Which of these staging tables (not temporary) do not exist yet."""
    found = {t for (t,) in con.sql(
        "SELECT table_name FROM duckdb_tables() WHERE database_name = current_database() AND NOT temporary").fetchall()}
    return [t for t in tables if t not in found]


def scope_of(con: duckdb.DuckDBPyConnection, step: str, *, outputs: Iterable[str] = ()) -> Scope:
    """This step's scope for this run; everything if any of its `outputs` tables is missing.

    Writes the temp table `_scope_<step>` (contact_id, unique) when the scope is a list."""
    ensure_journal(con)
    _check_steps([step])
    if missing_tables(con, outputs) or con.execute("SELECT 1 FROM changed_everything WHERE step = ?", [step]).fetchall():
        return Scope(step, everything=True)
    table = f"_scope_{step}"
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE {table} AS "
        "SELECT DISTINCT contact_id FROM changed_contacts WHERE step = ? AND contact_id IS NOT NULL",
        [step],
    )
    contacts = con.sql(f"SELECT count(*) FROM {table}").fetchall()[0][0]
    return Scope(step, everything=False, table=table, contacts=contacts)


def changed_event_ids(con: duckdb.DuckDBPyConnection, step: str) -> str:
    """SQL for the event ids journaled for `step` (records that came or went)."""
    _check_steps([step])
    return f"SELECT DISTINCT event_id FROM changed_contacts WHERE step = '{step}' AND event_id IS NOT NULL"


def clear(con: duckdb.DuckDBPyConnection, step: str) -> None:
    """The step's output is written: forget its scope (call inside the same transaction)."""
    ensure_journal(con)
    _check_steps([step])
    con.execute("DELETE FROM changed_contacts WHERE step = ?", [step])
    con.execute("DELETE FROM changed_everything WHERE step = ?", [step])
    con.sql(f"DROP TABLE IF EXISTS _scope_{step}")


def settings_changed(con: duckdb.DuckDBPyConnection, step: str, fingerprint: str) -> bool:
    """Did the settings this step's output depends on change since its last success?"""
    ensure_journal(con)
    found = con.execute("SELECT value FROM staging_meta WHERE key = ?", [f"settings:{step}"]).fetchall()
    return not found or found[0][0] != fingerprint


def record_settings(con: duckdb.DuckDBPyConnection, step: str, fingerprint: str) -> None:
    """Record the settings of this step's output (call inside the same transaction as it)."""
    ensure_journal(con)
    con.execute("INSERT OR REPLACE INTO staging_meta VALUES (?, ?)", [f"settings:{step}", fingerprint])
