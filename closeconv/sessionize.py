"""Sessionization (spec §4): validated events → events with their conversation.

Per contact the events are ordered by (occurred_at, kind rank, event_id); the published
`event_order` is the event's position within its contact (docs/warehouse.md), so a late event
renumbers only its own contact. Internally the temp tables are keyed by (contact_id, `pos`),
`pos` the position within the contact counting orphan closes too; `events` is stored by
(contact_id, event_order). The open/closed state is a two-state machine whose value after an
event depends only on the last state-setting event (opened/received → open, closed → closed),
so it is a window function, not a Python loop: `open_before` is that value as of the previous
event.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import duckdb

from closeconv.contract import PLATFORM_FIELDS

SESSION_TEMP_TABLES = ("_sessions", "_session_ids", "_session_rows")

# A contact's events in order (docs/warehouse.md): a total order (event ids are unique).
EVENT_ORDER_IN_CONTACT = "occurred_at, kind_rank, event_id"

# Why an event's given conversation_id is not the id of the conversation it belongs to
# (column `events.conversation_id_conflict`; docs/warehouse.md).
CONFLICT_REUSED_ID = "id_names_an_earlier_conversation"
CONFLICT_SECOND_ID = "conversation_named_by_an_earlier_id"
CONFLICT_OUTSIDE = "outside_any_conversation"
CONVERSATION_ID_CONFLICTS = (CONFLICT_REUSED_ID, CONFLICT_SECOND_ID, CONFLICT_OUTSIDE)

# Deterministic id of a session: contact + open time + opening event (over `_sessions`).
DERIVED_ID_SQL = (
    "'cv_' || left(sha256(contact_id || '|' || epoch_ms(arg_min(occurred_at, pos) FILTER (WHERE opens))::VARCHAR"
    " || '|' || arg_min(event_id, pos) FILTER (WHERE opens)), 24)"
)
CONFLICT_SQL = f"""CASE
    WHEN x.conversation_id IS NULL THEN NULL
    WHEN NOT x.in_session THEN '{CONFLICT_OUTSIDE}'
    WHEN x.conversation_id = i.session_conversation_id THEN NULL
    WHEN x.conversation_id = i.candidate_id THEN '{CONFLICT_REUSED_ID}'
    ELSE '{CONFLICT_SECOND_ID}' END"""

# A redundant conversation.opened this soon after an implicit open names who opened it (§4).
EXPLICIT_OPEN_WINDOW_S = 60

CONVERSATION_OPENERS_SQL = f"""
WITH firsts AS (            -- one aggregate, no window: a struct carries the whole first row
    SELECT conversation_id,
        -- the event that opened the conversation (explicitly or not)
        arg_min({{'contact_id': contact_id, 'event_id': event_id, 'event_order': event_order,
                  'event_type': event_type, 'occurred_at': occurred_at, 'channel_id': channel_id,
                  'source': source, 'user_id': user_id, 'team_id': team_id}}, event_order) AS f,
        -- its first conversation.opened, if any
        arg_min({{'channel_id': channel_id, 'source': source, 'user_id': user_id, 'team_id': team_id,
                  'occurred_at': occurred_at}}, event_order) FILTER (WHERE event_type = 'conversation.opened') AS x
    FROM events WHERE conversation_id IS NOT NULL
    GROUP BY conversation_id
),
joined AS (
    SELECT conversation_id, f.*, x.channel_id AS explicit_channel_id, x.source AS explicit_source,
        x.user_id AS explicit_user_id, x.team_id AS explicit_team_id,
        f.event_type = 'message.received' AND x IS NOT NULL
            AND x.occurred_at <= f.occurred_at + INTERVAL {EXPLICIT_OPEN_WINDOW_S} SECOND AS named_later
    FROM firsts
)
SELECT conversation_id, contact_id, event_id AS open_event_id, event_order AS open_order,
    event_type AS open_event_type, occurred_at AS opened_at, channel_id, explicit_channel_id,
    CASE WHEN event_type = 'conversation.opened' THEN source
         WHEN named_later THEN explicit_source ELSE 'contact' END AS opened_by_source,
    CASE WHEN event_type = 'conversation.opened' THEN user_id WHEN named_later THEN explicit_user_id END AS opened_by_user_id,
    CASE WHEN event_type = 'conversation.opened' THEN team_id WHEN named_later THEN explicit_team_id END AS opened_by_team_id
FROM joined
"""
"""Per conversation (over `events`): its opening event and who opened it, `opened_by_*` (§4)."""


@contextmanager
def narrow_side_built(con: duckdb.DuckDBPyConnection) -> Iterator[None]:
    """Within this block, DuckDB builds each hash join's hash table on its right side, as the
    query is written: for `sessionized_events`, the narrow `_session_rows`. DuckDB's own choice
    follows its row estimate of the `valid_events` view, far too low (its filters are guessed),
    and built the wide rows instead (the write at 5M events, one run each: 24.6 against 19.8 CPU
    s, ~0.3 GB more RSS)."""
    before = con.sql("SELECT current_setting('disabled_optimizers')").fetchall()[0][0]
    con.sql("SET disabled_optimizers = ?", params=[",".join(filter(None, [before, "build_side_probe_side"]))])
    try:
        yield
    finally:
        con.sql("SET disabled_optimizers = ?", params=[before])


ORPHAN_CLOSE_REASON = "close without open conversation: contact '{contact}' had no open conversation at {at}"


def sessionize(con: duckdb.DuckDBPyConnection) -> None:
    """Read `valid_events` (and `validated`, for the raw text of orphan closes), as
    `validate_and_dedupe` leaves them; create the temp view `sessionized_events` and table `orphan_closes`.

    The view reads the temp table `_session_rows`: drop the temp tables (see
    `SESSION_TEMP_TABLES`) only after the view has been copied into `events`. The view's rows
    come in no particular order: its writers sort them by (contact_id, event_order).
    """
    # The state machine, on a narrow projection (sorting wide rows moves every summary along).
    # `pos` is the event's position within its contact, orphan closes included: with contact_id
    # the key of the temp tables, and the sort key of the second windows.
    con.sql(
        f"""
        CREATE OR REPLACE TEMP TABLE _sessions AS
        WITH s AS (
            SELECT contact_id, occurred_at, kind_rank, event_id, event_type, conversation_id, source_file, source_line,
                CASE WHEN event_type IN ('conversation.opened', 'message.received') THEN 1
                     WHEN event_type = 'conversation.closed' THEN 0 END AS sets_open
            FROM valid_events
        ),
        f AS (
            SELECT *,
                row_number() OVER w AS pos,
                coalesce(last_value(sets_open IGNORE NULLS) OVER (w ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING), 0)
                    AS open_before
            FROM s
            WINDOW w AS (PARTITION BY contact_id ORDER BY {EVENT_ORDER_IN_CONTACT})
        ),
        g AS (
            SELECT *,
                coalesce(sets_open = 1 AND open_before = 0, false) AS opens,
                (event_type = 'conversation.closed' AND open_before = 0) AS orphan
            FROM f
        )
        SELECT contact_id, pos, occurred_at, kind_rank, event_id, event_type, conversation_id, source_file, source_line,
            opens, orphan,
            sum(opens::INT) OVER (PARTITION BY contact_id ORDER BY pos ROWS UNBOUNDED PRECEDING) AS session_no,
            -- the published event_order: position within the contact among the events that
            -- stay (orphan closes leave `events`), in the same sort as the other window
            sum((NOT orphan)::INT) OVER (PARTITION BY contact_id ORDER BY pos ROWS UNBOUNDED PRECEDING)::BIGINT
                AS event_order,
            (open_before = 1 OR opens) AND NOT orphan AS in_session
        FROM g
        """
    )
    # Open and close events decide the boundaries; a given id only names the session (spec §4).
    # A session's candidate name is its first given id by event order; of the sessions whose
    # candidate is the same id (a thread id reused after a reopen, or by another contact), the
    # earliest keeps it and the others get the derived id: nothing is ever merged. "Earliest"
    # compares sessions of different contacts, so not by position (an order within a contact)
    # but by their first events' (occurred_at, kind rank, event_id), the order of all events.
    con.sql(
        f"""
        CREATE OR REPLACE TEMP TABLE _session_ids AS
        WITH sess AS (
            SELECT contact_id, session_no, min(occurred_at) AS first_at,
                arg_min(kind_rank, pos) AS first_rank, arg_min(event_id, pos) AS first_event_id,
                arg_min(conversation_id, pos) FILTER (WHERE conversation_id IS NOT NULL) AS candidate_id,
                {DERIVED_ID_SQL} AS derived_id
            FROM _sessions WHERE in_session
            GROUP BY contact_id, session_no
        )
        SELECT contact_id, session_no, candidate_id,
            CASE WHEN candidate_id IS NOT NULL
                  AND row_number() OVER (PARTITION BY candidate_id ORDER BY first_at, first_rank, first_event_id) = 1
                 THEN candidate_id ELSE derived_id END AS session_conversation_id
        FROM sess
        """
    )
    # Each event's sessionize results, narrow, orphan closes left out (they leave `events`).
    con.sql(
        f"""
        CREATE OR REPLACE TEMP TABLE _session_rows AS
        SELECT x.event_id, x.event_order,
            -- Outside a session an event belongs to no conversation (§4), even if it names one:
            -- keeping that id would make a phantom conversation of a broadcast.
            CASE WHEN x.in_session THEN i.session_conversation_id END AS conversation_id,
            {CONFLICT_SQL} AS conversation_id_conflict
        FROM _sessions x
        LEFT JOIN _session_ids i ON x.in_session AND i.contact_id = x.contact_id AND i.session_no = x.session_no
        WHERE NOT x.orphan
        """
    )
    # The wide rows meet their results in a hash join on event_id; the writers sort after it
    # (closeconv/pipeline.py), so the join, the sort and the write all run on every thread (a
    # positional join of two sorted sides, and the write after it, ran on one). The narrow side
    # is the one to build (see `narrow_side_built`).
    con.sql(
        f"""
        CREATE OR REPLACE TEMP VIEW sessionized_events AS
        SELECT v.event_id, v.event_type, v.occurred_at, v.contact_id, x.conversation_id,
            v.conversation_id AS given_conversation_id, x.conversation_id_conflict,
            v.channel_id, v.source, v.user_id, v.team_id, v.assignee_id, v.category, v.summary,
            x.event_order, v.source_file, v.source_line, {", ".join("v." + c for c in PLATFORM_FIELDS)}
        FROM valid_events v
        JOIN _session_rows x ON x.event_id = v.event_id
        """
    )
    con.sql(
        f"""
        CREATE OR REPLACE TEMP TABLE orphan_closes AS
        WITH orphans AS (
            SELECT * FROM _sessions WHERE orphan
        ),
        effective_closes AS (
            SELECT contact_id, pos, event_id, occurred_at FROM _sessions
            WHERE event_type = 'conversation.closed' AND NOT orphan
        )
        SELECT o.source_file AS file, o.source_line AS line, r.raw_record, o.event_id,
            'orphan_close' AS reason_code,
            replace(replace('{ORPHAN_CLOSE_REASON.replace("'", "''")}', '{{contact}}', o.contact_id),
                    '{{at}}', strftime(o.occurred_at, '%Y-%m-%dT%H:%M:%S.%gZ'))
            || CASE WHEN c.event_id IS NULL
                    THEN '; deliver the events that opened it, or drop this close'
                    ELSE '; its last conversation was already closed by event ''' || c.event_id || ''' at '
                         || strftime(c.occurred_at, '%Y-%m-%dT%H:%M:%S.%gZ')
                         || ' (a second close of one conversation?); drop this close or deliver the events that reopened it'
               END AS reason
        FROM orphans o
        ASOF LEFT JOIN effective_closes c ON c.contact_id = o.contact_id AND c.pos < o.pos
        -- validation keeps the raw text of every close (closeconv/ingest.py); `validated` is the
        -- records validate_and_dedupe read (a scoped run's copy holds every record of its events)
        LEFT JOIN validated r ON r.file = o.source_file AND r.line = o.source_line
        """
    )
