"""respond.io's auto-close rule, for sources that never send a close (issue 9 §6).

The workspace setting closes a conversation N hours after the last human message when the
contact has not replied. Only `message.sent` with source `user` starts or restarts the timer;
workflow, broadcast, bot and AI-agent messages neither start nor reset it. A contact message,
a later human message or a real close ends the running timer. A real close that comes before
the contact's next message, however late, means the source closed the conversation itself:
its close is kept and none is derived (it would otherwise become an orphan). A later contact
message opens a new conversation in sessionization, as usual.

The closes are *derived*, not delivered: they are `conversation.closed` events with source
`auto_close`, an event_id `auto_close:<event_id of the human message that started the timer>`
(deterministic, so a rerun gives the same conversations) and no `source_file`. They are added
to `valid_events` before sessionization, so every later step treats them like a real close.

Why the timer does not look at the open state of the human message itself: a candidate close
always leaves the contact closed (it either closes the open conversation or finds none), so
the state before each candidate is a plain window over real open/close events plus all
candidates. A close is emitted only where a conversation is open at that moment, so it is
never an orphan. A human message sent while no conversation is open still starts a timer when
a conversation is opened before it runs out (respond.io opens one when an agent writes first).
"""

from __future__ import annotations

from datetime import datetime, timezone

import duckdb

from closeconv.contract import EVENT_KIND_RANK
AUTO_CLOSE_EVENT_ID_PREFIX = "auto_close:"
AUTO_CLOSE_TEMP_VIEWS = ("_auto_close_input",)
AUTO_CLOSE_TEMP_TABLES = ("_auto_closes",)

_CLOSE_RANK = EVENT_KIND_RANK["conversation.closed"]


def apply_auto_close(con: duckdb.DuckDBPyConnection, hours: float | None, as_of: datetime | None = None) -> int:
    """Add the auto-close events to the temp view `valid_events`; return how many were added.

    A timer that has not run out by `as_of` (default: now) closes nothing yet: the contact may
    still answer. Off (`hours` None) changes nothing and costs nothing.
    """
    if hours is None:
        return 0
    as_of = as_of or datetime.now(timezone.utc)
    # The input view is renamed so that `valid_events` can be redefined over it; copying it
    # would cost a full-width copy of every event (about a second per million).
    con.sql("DROP VIEW IF EXISTS _auto_close_input")
    con.sql("ALTER VIEW valid_events RENAME TO _auto_close_input")
    order = "ORDER BY occurred_at, kind_rank, event_id"
    con.sql(
        f"""
        CREATE OR REPLACE TEMP TABLE _auto_closes AS
        WITH timer_events AS (
            -- what starts, restarts or ends a timer: contact messages, human messages, closes
            SELECT event_id, contact_id, occurred_at, kind_rank, event_type, channel_id,
                lead(occurred_at) OVER (PARTITION BY contact_id {order}) AS next_at,
                -- what comes next of a contact message or a close, however late
                first_value(CASE WHEN event_type <> 'message.sent' THEN event_type END IGNORE NULLS) OVER (
                    PARTITION BY contact_id {order} ROWS BETWEEN 1 FOLLOWING AND UNBOUNDED FOLLOWING) AS next_reply_or_close
            FROM _auto_close_input
            WHERE event_type IN ('message.received', 'conversation.closed')
               OR (event_type = 'message.sent' AND source = 'user')
        ),
        candidates AS (
            SELECT contact_id, channel_id, event_id AS timer_event_id,
                occurred_at + to_microseconds(CAST(round(? * 3600e6) AS BIGINT)) AS close_at
            FROM timer_events
            WHERE event_type = 'message.sent'
        ),
        due AS (
            SELECT c.* FROM candidates c JOIN timer_events t ON t.event_id = c.timer_event_id
            WHERE (t.next_at IS NULL OR t.next_at > c.close_at) AND c.close_at <= ?
              -- the source closed this conversation itself (late): its close is kept, none derived
              AND coalesce(t.next_reply_or_close, '') <> 'conversation.closed'
        ),
        state_changes AS (
            SELECT contact_id, occurred_at, kind_rank, event_id, NULL AS timer_event_id,
                CASE WHEN event_type = 'conversation.closed' THEN 0 ELSE 1 END AS sets_open
            FROM _auto_close_input
            WHERE event_type IN ('conversation.opened', 'message.received', 'conversation.closed')
            UNION ALL
            SELECT contact_id, close_at, {_CLOSE_RANK}, '{AUTO_CLOSE_EVENT_ID_PREFIX}' || timer_event_id,
                timer_event_id, 0
            FROM due
        ),
        states AS (
            SELECT *, coalesce(last_value(sets_open) OVER (
                PARTITION BY contact_id {order} ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING), 0) AS open_before
            FROM state_changes
        )
        SELECT s.event_id, 'conversation.closed' AS event_type, s.occurred_at, s.contact_id,
            NULL::VARCHAR AS conversation_id, d.channel_id, 'auto_close' AS source,
            NULL::VARCHAR AS user_id, NULL::VARCHAR AS team_id, NULL::VARCHAR AS assignee_id,
            NULL::VARCHAR AS category, NULL::VARCHAR AS summary, {_CLOSE_RANK} AS kind_rank,
            NULL::VARCHAR AS source_file, NULL::BIGINT AS source_line
        FROM states s JOIN due d USING (timer_event_id)
        WHERE s.open_before = 1
        """,
        params=[hours, as_of],
    )
    con.sql(
        """
        CREATE OR REPLACE TEMP VIEW valid_events AS
        SELECT * FROM _auto_close_input UNION ALL BY NAME SELECT * FROM _auto_closes
        """
    )
    return con.sql("SELECT count(*) FROM _auto_closes").fetchall()[0][0]
