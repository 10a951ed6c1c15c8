"""Which contacts the events step recomputes: the journaled contacts, closed under the rules
that cross contacts (docs/performance.md, "Incremental runs").

`stage_landing_files` journals the (contact_id, event_id) of every valid record that came or
went. A contact's rows in `events` depend on other contacts' records in two ways, so the
affected set is closed over both, to a fixed point:

- **dedupe**: an event_id's deliveries form one group whatever their contacts (the winner, or a
  conflict, may move to another contact): every contact with a record of an affected
  contact's event_id, or of a journaled one, is affected;
- **session naming** (closeconv/sessionize.py): of the sessions whose first given
  conversation_id is the same, the earliest keeps it. Every contact that gives a conversation_id
  an affected contact gives (now, in `validated_records`, or before, in `events`) is affected;
  the closure, not one hop: a neighbour's other sessions compete for other ids.

Plus **auto-close**, which depends on the clock: a contact whose human message could have had
its timer run out since the last run (`as_of` is recorded in staging_meta). A superset is
always correct; past `EVERYTHING_SHARE` of the contacts the step recomputes everything.
Validation rejects belong to no contact: they are brought up to date by file (`changed_files`).
"""

from __future__ import annotations

from datetime import datetime

import duckdb

from closeconv import changes

AFFECTED = "_events_affected"  # contact_id, journaled: the contacts recomputed (journaled: their records changed)
SCOPE_EVENT_IDS = "_events_scope_ids"  # event_id: the dedupe groups recomputed
CHANGED_FILES = "_events_changed_files"  # file: files whose validation rejects are redone
SCOPE_RECORDS = "_events_scope_records"  # every valid record of the affected contacts, copied as the closure reads them
TEMP_TABLES = (AFFECTED, SCOPE_EVENT_IDS, CHANGED_FILES, SCOPE_RECORDS, "_events_frontier", "_events_reached",
               "_events_frontier_records", "_events_given")

# What the events step writes: any missing → it recomputes everything. `dropped_duplicates`
# (event_id, dropped) keeps `ingest_counts.duplicates_dropped` exact without a full pass;
# `events_input_files` (file, parsed_at) is the landing file versions `rejected_events` reflects.
OUTPUTS = ("events", "rejected_events", "ingest_counts", "dropped_duplicates", "events_input_files")
AS_OF_KEY = "events:as_of"
MAX_ROUNDS = 25
EVERYTHING_SHARE = 0.5

_VALID_RECORDS = "validated_records WHERE reason_code IS NULL"  # followed by AND <one filter>


def settings_fingerprint(auto_close_hours: float | None) -> str:
    return f"auto_close_hours={auto_close_hours!r}"


def _rows(con: duckdb.DuckDBPyConnection, table: str) -> int:
    return con.sql(f"SELECT count(*) FROM {table}").fetchall()[0][0]


def affected_contacts(con: duckdb.DuckDBPyConnection, auto_close_hours: float | None, as_of: datetime) -> changes.Scope:
    """The events step's scope for this run: everything, or the temp table `_events_affected`
    (with `_events_scope_ids`, `_events_changed_files` and `_events_scope_records` beside it)."""
    everything = changes.Scope(changes.EVENTS, everything=True)
    journal = changes.scope_of(con, changes.EVENTS, outputs=OUTPUTS)
    if journal.everything or changes.settings_changed(con, changes.EVENTS, settings_fingerprint(auto_close_hours)):
        return everything
    # The contacts of records sharing a journaled event_id are reached by the closure's first
    # round (which reads those ids with the frontier's): no scan of their own here.
    seeds = [f"SELECT contact_id, true AS journaled FROM {journal.table}"]
    params: list = []
    if auto_close_hours is not None:
        found = con.execute("SELECT value FROM staging_meta WHERE key = ?", [AS_OF_KEY]).fetchall()
        if not found:
            return everything
        # A timer runs out `hours` after the human message: since the earlier of the last run's
        # as_of and now (a clock set back un-fires timers), any contact with a message after
        # that instant minus `hours` may have gained or lost a derived close.
        seeds.append(
            "SELECT contact_id, false FROM events WHERE event_type = 'message.sent' AND source = 'user' "
            "AND occurred_at > least(?::TIMESTAMPTZ, ?::TIMESTAMPTZ) - to_microseconds(CAST(round(? * 3600e6) AS BIGINT))")
        params += [found[0][0], as_of, auto_close_hours]
    con.execute(f"CREATE OR REPLACE TEMP TABLE {AFFECTED} AS SELECT contact_id, bool_or(journaled) AS journaled FROM ("
                + " UNION ALL ".join(seeds) + ") WHERE contact_id IS NOT NULL GROUP BY contact_id", params)
    con.sql(f"CREATE OR REPLACE TEMP TABLE _events_frontier AS SELECT contact_id FROM {AFFECTED}")
    # Every affected contact is in exactly one round's frontier: the event ids of the frontiers'
    # records, gathered as the closure reads them, are those of every affected contact.
    con.sql(f"CREATE OR REPLACE TEMP TABLE {SCOPE_EVENT_IDS} (event_id VARCHAR)")
    con.sql(f"CREATE OR REPLACE TEMP TABLE {SCOPE_RECORDS} AS SELECT * FROM validated_records LIMIT 0")
    rounds = 0
    journaled_ids = changes.changed_event_ids(con, changes.EVENTS)
    while _rows(con, "_events_frontier") or (rounds == 0 and _rows(con, f"({journaled_ids})")):
        rounds += 1
        if rounds > MAX_ROUNDS or _too_many(con):
            con.sql(f"DROP TABLE {SCOPE_RECORDS}")  # up to half the records: not held through the full rebuild
            return everything
        in_frontier = "contact_id IN (SELECT contact_id FROM _events_frontier)"
        # Each read of `validated_records` filters one column by one IN: DuckDB pushes that into
        # the scan (an OR of two INs, or a CASE, would be evaluated on every record, all columns).
        # The frontier's records are copied whole, once: the contact's records are spread over
        # every row group, so a narrow read here and a wide one of all the affected contacts
        # after the closure cost two scans of every vector where one does.
        con.sql(f"INSERT INTO {SCOPE_RECORDS} SELECT * FROM {_VALID_RECORDS} AND {in_frontier}")
        con.sql(f"CREATE OR REPLACE TEMP TABLE _events_frontier_records AS "
                f"SELECT event_id, conversation_id FROM {SCOPE_RECORDS} WHERE {in_frontier}")
        con.sql(f"INSERT INTO {SCOPE_EVENT_IDS} SELECT event_id FROM _events_frontier_records")
        con.sql(
            f"""
            CREATE OR REPLACE TEMP TABLE _events_given AS
            SELECT conversation_id AS cid FROM _events_frontier_records WHERE conversation_id IS NOT NULL
            UNION
            SELECT given_conversation_id FROM events WHERE given_conversation_id IS NOT NULL AND {in_frontier}
            """
        )
        con.sql(
            f"""
            CREATE OR REPLACE TEMP TABLE _events_reached AS
            SELECT contact_id FROM {_VALID_RECORDS} AND event_id IN (
                SELECT event_id FROM _events_frontier_records UNION ALL {journaled_ids})
            UNION
            SELECT contact_id FROM {_VALID_RECORDS} AND conversation_id IN (SELECT cid FROM _events_given)
            UNION
            SELECT contact_id FROM events WHERE given_conversation_id IN (SELECT cid FROM _events_given)
            """
        )
        con.sql(f"CREATE OR REPLACE TEMP TABLE _events_frontier AS "
                f"SELECT DISTINCT contact_id FROM _events_reached WHERE contact_id IS NOT NULL "
                f"AND contact_id NOT IN (SELECT contact_id FROM {AFFECTED})")
        con.sql(f"INSERT INTO {AFFECTED} SELECT contact_id, false FROM _events_frontier")
    con.sql(
        f"""
        CREATE OR REPLACE TEMP TABLE {SCOPE_EVENT_IDS} AS
        SELECT event_id FROM {SCOPE_EVENT_IDS}
        UNION
        {journaled_ids}
        """
    )
    # Landing file versions staged or forgotten since `rejected_events` was last written.
    con.sql(
        f"""
        CREATE OR REPLACE TEMP TABLE {CHANGED_FILES} AS
        SELECT file FROM (
            (SELECT file, parsed_at FROM landing_files EXCEPT SELECT file, parsed_at FROM events_input_files)
            UNION ALL
            (SELECT file, parsed_at FROM events_input_files EXCEPT SELECT file, parsed_at FROM landing_files))
        """
    )
    return changes.Scope(changes.EVENTS, everything=False, table=AFFECTED, contacts=_rows(con, AFFECTED))


def _too_many(con: duckdb.DuckDBPyConnection) -> bool:
    affected = _rows(con, AFFECTED)
    if affected < 1000:
        return False
    # Only a cost threshold (either path gives the same tables): an estimate of the contacts
    # (HyperLogLog, no hash table of every contact id) is enough.
    return affected > EVERYTHING_SHARE * con.sql("SELECT approx_count_distinct(contact_id) FROM events").fetchall()[0][0]


def changed_files(scope: changes.Scope) -> str:
    """A predicate on `file`: the files whose validation rejects this run recomputes."""
    return "true" if scope.everything else f"file IN (SELECT file FROM {CHANGED_FILES})"


def record_built(con: duckdb.DuckDBPyConnection, auto_close_hours: float | None, as_of: datetime) -> None:
    """What the next run's scope compares against (inside the events step's transaction)."""
    changes.record_settings(con, changes.EVENTS, settings_fingerprint(auto_close_hours))
    con.execute("INSERT OR REPLACE INTO staging_meta VALUES (?, ?)", [AS_OF_KEY, as_of.isoformat()])
    con.sql("CREATE OR REPLACE TABLE events_input_files AS SELECT file, parsed_at FROM landing_files")


def drop_temp_tables(con: duckdb.DuckDBPyConnection) -> None:
    for table in TEMP_TABLES:
        con.sql(f"DROP TABLE IF EXISTS {table}")
