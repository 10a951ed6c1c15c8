"""Sessionization (spec §4): validated events → events with their conversation.

Per contact the events are ordered by (occurred_at, kind rank, event_id). The open/closed
state is a two-state machine whose value after an event depends only on the last
state-setting event (opened/received → open, closed → closed), so it is a window function,
not a Python loop: `open_before` is that value as of the previous event.
"""

from __future__ import annotations

import duckdb

ORPHAN_CLOSE_REASON = (
    "close without open conversation: contact '{contact}' had no open conversation at {at}; "
    "deliver the events that opened it, or drop this close"
)


def sessionize(con: duckdb.DuckDBPyConnection) -> None:
    """Read temp table `valid_events`; create temp tables `sessionized_events` and `orphan_closes`."""
    con.sql(
        """
        CREATE OR REPLACE TEMP TABLE _ordered AS
        SELECT *,
            row_number() OVER (ORDER BY occurred_at, kind_rank, event_id) AS event_order,
            CASE WHEN event_type IN ('conversation.opened', 'message.received') THEN 1
                 WHEN event_type = 'conversation.closed' THEN 0 END AS sets_open
        FROM valid_events
        """
    )
    con.sql(
        """
        CREATE OR REPLACE TEMP TABLE _stateful AS
        WITH s AS (
            SELECT *,
                coalesce(last_value(sets_open IGNORE NULLS) OVER (
                    PARTITION BY contact_id ORDER BY event_order
                    ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING), 0) AS open_before
            FROM _ordered
        )
        SELECT *,
            (sets_open = 1 AND open_before = 0) AS opens,
            (event_type = 'conversation.closed' AND open_before = 1) AS closes,
            (event_type = 'conversation.closed' AND open_before = 0) AS orphan
        FROM s
        """
    )
    con.sql(
        """
        CREATE OR REPLACE TEMP TABLE _sessions AS
        WITH numbered AS (
            SELECT *,
                sum(opens::INT) OVER (PARTITION BY contact_id ORDER BY event_order
                                      ROWS UNBOUNDED PRECEDING) AS session_no
            FROM _stateful
        )
        SELECT *, (open_before = 1 OR opens) AND NOT orphan AS in_session FROM numbered
        """
    )
    # Deterministic id: hash of contact + open time + opening event; a conversation_id given
    # on the session's own events (first in order) wins, as the contract keeps given ids.
    con.sql(
        """
        CREATE OR REPLACE TEMP TABLE _session_ids AS
        SELECT contact_id, session_no,
            coalesce(
                arg_min(conversation_id, event_order) FILTER (WHERE conversation_id IS NOT NULL),
                'cv_' || left(sha256(contact_id || '|' || epoch_ms(arg_min(occurred_at, event_order) FILTER (WHERE opens))::VARCHAR
                                     || '|' || arg_min(event_id, event_order) FILTER (WHERE opens)), 24)
            ) AS session_conversation_id
        FROM _sessions WHERE in_session
        GROUP BY contact_id, session_no
        """
    )
    con.sql(
        """
        CREATE OR REPLACE TEMP TABLE sessionized_events AS
        SELECT s.event_id, s.event_type, s.occurred_at, s.contact_id,
            CASE WHEN s.in_session THEN i.session_conversation_id ELSE s.conversation_id END AS conversation_id,
            s.channel_id, s.source, s.user_id, s.team_id, s.assignee_id, s.category, s.summary,
            s.event_order, s.source_file, s.source_line
        FROM _sessions s
        LEFT JOIN _session_ids i ON s.in_session AND i.contact_id = s.contact_id AND i.session_no = s.session_no
        WHERE NOT s.orphan
        """
    )
    con.sql(
        f"""
        CREATE OR REPLACE TEMP TABLE orphan_closes AS
        SELECT s.source_file AS file, s.source_line AS line, r.raw AS raw_record, s.event_id,
            'orphan_close' AS reason_code,
            replace(replace('{ORPHAN_CLOSE_REASON.replace("'", "''")}', '{{contact}}', s.contact_id),
                    '{{at}}', strftime(s.occurred_at, '%Y-%m-%dT%H:%M:%S.%gZ')) AS reason
        FROM _sessions s
        LEFT JOIN raw_records r ON r.file = s.source_file AND r.line = s.source_line
        WHERE s.orphan
        """
    )
    for t in ("_ordered", "_stateful", "_sessions", "_session_ids"):
        con.sql(f"DROP TABLE IF EXISTS {t}")
