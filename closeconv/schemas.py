"""The contract of every published table, as SQL run inside DuckDB: the rules the blocking
asset checks enforce (pipelines/defs/checks.py runs them; tests run them directly).

Record-level rules with human reasons live in SQL too (closeconv.ingest); these checks guard
the result, so a bug that lets a bad row through fails the run instead of reaching analysts.
Each check is a query that returns one row per violation, with a `problem` text for people;
nothing is loaded into Python but the count and a few examples.
"""

from __future__ import annotations

from dataclasses import dataclass

import duckdb

from closeconv.contract import ALLOWED_SOURCES, EVENT_TYPES, FRT_BUCKETS, USER_ID_REQUIRED_FOR_USER_SOURCE
from closeconv.sessionize import CONVERSATION_ID_CONFLICTS

# Check names: stable, shown by `closeconv run` and the Dagster UI, imported by tests.
EVENTS_MATCH_CONTRACT = "events_match_contract"
RECORDS_ACCOUNTED_FOR = "every_record_accounted_for"
CONVERSATIONS_VALID = "conversations_valid"
CONVERSATIONS_COVER_EVENTS = "conversations_cover_events"
CONVERSATIONS_WITHIN_ONE_SESSION = "conversations_within_one_session"
WORKFLOW_RUNS_VALID = "workflow_runs_valid"
WORKFLOW_ACTIONS_VALID = "workflow_actions_valid"
ASSIGNMENTS_ORDERED_WITHOUT_OVERLAP = "assignments_ordered_without_overlap"
DAILY_METRICS_ADD_UP = "daily_metrics_add_up"
CONVERSATION_ASSIGNEES_VALID = "conversation_assignees_valid"
USER_MESSAGES_ADD_UP = "user_messages_add_up"
USER_CLOSES_VALID = "user_closes_valid"

EXAMPLES_SHOWN = 5


def _list(values) -> str:
    return ", ".join("'" + v.replace("'", "''") + "'" for v in values)


_SOURCE_ALLOWED = " OR ".join(
    f"(event_type = '{t}' AND source IN ({_list(s)}))" for t, s in ALLOWED_SOURCES.items()
)
_BUCKETS = _list(label for label, _ in FRT_BUCKETS)


@dataclass(frozen=True)
class TableCheck:
    name: str
    table: str  # the asset the check guards
    description: str
    # One row per violation, with a VARCHAR column `problem`. Placeholders such as
    # `{contacts:e.contact_id}` mark where the check can be narrowed to the changed rows
    # (`run_table_check`); a check without them always reads its whole tables.
    sql: str


@dataclass(frozen=True)
class CheckOutcome:
    passed: bool
    violations: int
    examples: list[str]


TABLE_CHECKS: tuple[TableCheck, ...] = (
    TableCheck(
        EVENTS_MATCH_CONTRACT, "events",
        "Unique event ids, unique order per contact, allowed types and sources, user_id where required, conflicts named.",
        f"""
        -- Equal ids have equal hashes, so every repeated id is among the rows whose 64-bit hash is
        -- repeated; grouping those integers first is about half the CPU of grouping every
        -- text id, and the text group then runs on those rows only (dropping mere collisions).
        WITH repeated_hashes AS (
            SELECT hash(event_id) AS h FROM events WHERE {{event_ids:event_id}} GROUP BY h HAVING count(*) > 1
        )
        SELECT 'event_id ' || event_id || ' appears ' || count(*) || ' times' AS problem
        FROM events WHERE {{event_ids:event_id}} AND hash(event_id) IN (SELECT h FROM repeated_hashes)
        GROUP BY event_id HAVING count(*) > 1
        UNION ALL
        SELECT 'event_order ' || event_order || ' of contact ' || contact_id || ' is shared by ' || count(*) || ' events'
        FROM events WHERE {{contacts:contact_id}} GROUP BY contact_id, event_order HAVING count(*) > 1
        UNION ALL
        SELECT 'event ' || coalesce(event_id, '(null)') || ': ' || CASE
                WHEN event_id IS NULL THEN 'null event_id'
                WHEN event_type IS NULL OR event_type NOT IN ({_list(EVENT_TYPES)}) THEN 'unknown event_type ' || coalesce(event_type, 'null')
                WHEN occurred_at IS NULL THEN 'null occurred_at'
                WHEN coalesce(contact_id, '') = '' THEN 'empty contact_id'
                WHEN event_order IS NULL OR event_order < 1 THEN 'event_order below 1'
                WHEN NOT coalesce({_SOURCE_ALLOWED}, false) THEN 'source ' || coalesce(source, 'null') || ' not allowed for ' || event_type
                WHEN event_type IN ({_list(USER_ID_REQUIRED_FOR_USER_SOURCE)}) AND source = 'user' AND user_id IS NULL
                    THEN 'source user without user_id'
                WHEN (conversation_id_conflict IS NOT NULL) <> (given_conversation_id IS DISTINCT FROM conversation_id
                                                              AND given_conversation_id IS NOT NULL)
                    THEN 'conversation_id_conflict does not match given_conversation_id vs conversation_id'
                WHEN conversation_id_conflict NOT IN ({_list(CONVERSATION_ID_CONFLICTS)})
                    THEN 'unknown conversation_id_conflict ' || conversation_id_conflict
            END
        FROM events
        WHERE {{contacts:contact_id}} AND (event_id IS NULL OR event_type IS NULL OR event_type NOT IN ({_list(EVENT_TYPES)})
           OR occurred_at IS NULL OR coalesce(contact_id, '') = '' OR event_order IS NULL OR event_order < 1
           OR NOT coalesce({_SOURCE_ALLOWED}, false)
           OR (event_type IN ({_list(USER_ID_REQUIRED_FOR_USER_SOURCE)}) AND source = 'user' AND user_id IS NULL)
           OR (conversation_id_conflict IS NOT NULL) <> (given_conversation_id IS DISTINCT FROM conversation_id
                                                         AND given_conversation_id IS NOT NULL)
           OR conversation_id_conflict NOT IN ({_list(CONVERSATION_ID_CONFLICTS)}))
        """,
    ),
    TableCheck(
        RECORDS_ACCOUNTED_FOR, "rejected_events",
        "loaded + duplicates dropped + rejected = records read = records staged: nothing is lost.",
        """
        WITH n AS (
            SELECT (SELECT records_read FROM ingest_counts) AS read,
                   (SELECT duplicates_dropped FROM ingest_counts) AS duplicates,
                   -- derived events (auto-closes) were read from no file: they are not records
                   (SELECT count(*) FROM events WHERE source_file IS NOT NULL) AS loaded,
                   (SELECT count(*) FROM rejected_events) AS rejected,
                   (SELECT coalesce(sum(records), 0) FROM landing_files) AS staged
        )
        SELECT loaded || ' loaded + ' || duplicates || ' duplicates + ' || rejected || ' rejected != '
               || read || ' records read (' || staged || ' staged)' AS problem
        FROM n WHERE loaded + duplicates + rejected <> read OR read <> staged
        """,
    ),
    TableCheck(
        CONVERSATIONS_VALID, "conversations",
        "Unique ids, closed_at ≥ opened_at, close fields when closed, non-negative durations, valid buckets.",
        f"""
        SELECT 'conversation_id ' || conversation_id || ' appears ' || count(*) || ' times' AS problem
        FROM conversations WHERE {{conversation_ids:conversation_id}} GROUP BY conversation_id HAVING count(*) > 1
        UNION ALL
        SELECT 'conversation ' || coalesce(conversation_id, '(null)') || ': ' || CASE
                WHEN conversation_id IS NULL THEN 'null conversation_id'
                WHEN contact_id IS NULL THEN 'null contact_id'
                WHEN status IS NULL OR status NOT IN ('open', 'closed') THEN 'status ' || coalesce(status, 'null')
                WHEN status = 'closed' AND (closed_at IS NULL OR closed_by_source IS NULL) THEN 'closed without close fields'
                WHEN status = 'open' AND closed_at IS NOT NULL THEN 'open with a closed_at'
                WHEN closed_at < opened_at THEN 'closed before it opened'
                WHEN first_response_time_s < 0 OR resolution_time_s < 0 OR average_response_time_s < 0 THEN 'negative duration'
                WHEN frt_bucket NOT IN ({_BUCKETS}) THEN 'unknown frt_bucket ' || frt_bucket
                WHEN (frt_bucket IS NULL) <> (first_response_time_s IS NULL) THEN 'frt_bucket and first_response_time_s disagree'
                WHEN frt_bucket_order IS DISTINCT FROM list_position([{_BUCKETS}], frt_bucket)
                    THEN 'frt_bucket_order does not match frt_bucket'
            END
        FROM conversations
        WHERE {{contacts:contact_id}} AND (conversation_id IS NULL OR contact_id IS NULL OR status IS NULL
           OR status NOT IN ('open', 'closed')
           OR (status = 'closed' AND (closed_at IS NULL OR closed_by_source IS NULL))
           OR (status = 'open' AND closed_at IS NOT NULL) OR closed_at < opened_at
           OR first_response_time_s < 0 OR resolution_time_s < 0 OR average_response_time_s < 0
           OR frt_bucket NOT IN ({_BUCKETS}) OR (frt_bucket IS NULL) <> (first_response_time_s IS NULL)
           OR frt_bucket_order IS DISTINCT FROM list_position([{_BUCKETS}], frt_bucket))
        """,
    ),
    TableCheck(
        CONVERSATIONS_COVER_EVENTS, "conversations",
        "Every event's conversation_id names a conversation, and every conversation has events.",
        """
        SELECT DISTINCT 'events name conversation ' || e.conversation_id || ', which has no row' AS problem
        FROM events e ANTI JOIN conversations c USING (conversation_id)
        WHERE e.conversation_id IS NOT NULL AND {contacts:e.contact_id}
        UNION ALL
        SELECT 'conversation ' || c.conversation_id || ' has no events'
        FROM conversations c ANTI JOIN events e USING (conversation_id) WHERE {contacts:c.contact_id}
        """,
    ),
    TableCheck(
        CONVERSATIONS_WITHIN_ONE_SESSION, "conversations",
        "No conversation spans two sessions: one contact, at most one close and nothing after it, "
        "and a contact's conversations never interleave.",
        """
        WITH spans AS (
            SELECT conversation_id, count(DISTINCT contact_id) AS contacts, any_value(contact_id) AS contact_id,
                   min(event_order) AS first_order, max(event_order) AS last_order,
                   count(*) FILTER (WHERE event_type = 'conversation.closed') AS closes,
                   max(event_order) FILTER (WHERE event_type = 'conversation.closed') AS close_order
            FROM events WHERE conversation_id IS NOT NULL AND {conversation_ids:conversation_id} GROUP BY conversation_id
        )
        SELECT 'conversation ' || conversation_id || CASE
                WHEN contacts > 1 THEN ' spans ' || contacts || ' contacts'
                WHEN closes > 1 THEN ' is closed ' || closes || ' times'
                ELSE ' has events after its close' END AS problem
        FROM spans WHERE contacts > 1 OR closes > 1 OR (closes = 1 AND close_order <> last_order)
        UNION ALL
        SELECT 'conversations ' || a.conversation_id || ' and ' || b.conversation_id || ' of contact '
               || a.contact_id || ' interleave'
        FROM spans a JOIN spans b
          ON a.contact_id = b.contact_id AND a.conversation_id < b.conversation_id
         AND a.first_order <= b.last_order AND b.first_order <= a.last_order
        """,
    ),
    TableCheck(
        WORKFLOW_RUNS_VALID, "workflow_runs",
        "Unique run ids; each run's trigger is an event of its contact and conversation; "
        "outcome completed (no reason) or skipped (with a reason).",
        """
        -- A run's trigger is an event of its own contact, so it is looked up among that contact's
        -- events (stored by contact: a scoped check reads only the scope's); only the runs that fail
        -- there are looked up again among all events, for the message. An event_id held by two
        -- events is events_match_contract's violation, not the run's.
        WITH failing_own AS MATERIALIZED (
            SELECT r.*
            FROM workflow_runs r LEFT JOIN (SELECT event_id, contact_id, conversation_id, occurred_at FROM events
                                            WHERE {contacts:contact_id}) e
              ON e.contact_id = r.contact_id AND e.event_id = r.trigger_event_id
            WHERE {contacts:r.contact_id} AND (r.run_id IS NULL OR r.workflow_id IS NULL OR r.workflow_version IS NULL
               OR r.outcome IS NULL OR r.outcome NOT IN ('completed', 'skipped')
               OR (r.outcome = 'skipped') <> (r.skip_reason IS NOT NULL) OR e.event_id IS NULL
               OR e.conversation_id IS DISTINCT FROM r.conversation_id OR e.occurred_at <> r.triggered_at)
        )
        SELECT 'run_id ' || run_id || ' appears ' || count(*) || ' times' AS problem
        FROM workflow_runs WHERE {run_ids:run_id} GROUP BY run_id HAVING count(*) > 1
        UNION ALL
        -- The CASE names the first failing rule; a run it finds no fault with (NULL) passes.
        SELECT problem FROM (
        SELECT 'run ' || coalesce(r.run_id, '(null)') || ': ' || CASE
                WHEN r.run_id IS NULL OR r.workflow_id IS NULL OR r.workflow_version IS NULL THEN 'null id or version'
                WHEN r.outcome IS NULL OR r.outcome NOT IN ('completed', 'skipped') THEN 'outcome ' || coalesce(r.outcome, 'null')
                WHEN (r.outcome = 'skipped') <> (r.skip_reason IS NOT NULL) THEN 'skip_reason does not match the outcome'
                WHEN e.event_id IS NULL THEN 'trigger event ' || coalesce(r.trigger_event_id, 'null') || ' is not in events'
                WHEN e.contact_id <> r.contact_id OR e.conversation_id IS DISTINCT FROM r.conversation_id
                     OR e.occurred_at <> r.triggered_at THEN 'contact, conversation or time differ from the trigger event'
            END AS problem
        FROM failing_own r
        LEFT JOIN (SELECT event_id, contact_id, conversation_id, occurred_at FROM events
                   WHERE event_id IN (SELECT trigger_event_id FROM failing_own)) e
          ON e.event_id = r.trigger_event_id
        ) WHERE problem IS NOT NULL
        """,
    ),
    TableCheck(
        WORKFLOW_ACTIONS_VALID, "workflow_actions",
        "Unique action ids; each action belongs to a completed run of its contact; "
        "unassign sets no one, assign sets someone; counts match the runs.",
        """
        SELECT 'action_id ' || action_id || ' appears ' || count(*) || ' times' AS problem
        FROM workflow_actions WHERE {action_ids:action_id} GROUP BY action_id HAVING count(*) > 1
        UNION ALL
        SELECT 'action ' || coalesce(a.action_id, '(null)') || ': ' || CASE
                WHEN a.action_id IS NULL THEN 'null action_id'
                WHEN r.run_id IS NULL THEN 'run ' || coalesce(a.run_id, 'null') || ' is not in workflow_runs'
                WHEN r.outcome <> 'completed' THEN 'its run was ' || r.outcome
                WHEN a.contact_id <> r.contact_id OR a.effective_at <> r.triggered_at THEN 'contact or time differ from its run'
                WHEN a.action IS NULL OR a.action NOT IN ('unassign', 'assign') THEN 'action ' || coalesce(a.action, 'null')
                WHEN a.action = 'unassign' AND a.to_assignee_id IS NOT NULL THEN 'unassign to ' || a.to_assignee_id
                WHEN a.action = 'assign' AND a.to_assignee_id IS NULL THEN 'assign to no one'
            END
        FROM workflow_actions a LEFT JOIN workflow_runs r USING (run_id)
        WHERE {contacts:a.contact_id} AND (a.action_id IS NULL OR r.run_id IS NULL OR r.outcome <> 'completed'
           OR a.contact_id <> r.contact_id OR a.effective_at <> r.triggered_at
           OR a.action IS NULL OR a.action NOT IN ('unassign', 'assign')
           OR (a.action = 'unassign' AND a.to_assignee_id IS NOT NULL)
           OR (a.action = 'assign' AND a.to_assignee_id IS NULL))
        UNION ALL
        SELECT 'run ' || r.run_id || ' says ' || r.action_count || ' actions, workflow_actions has ' || count(a.action_id)
        FROM workflow_runs r LEFT JOIN workflow_actions a USING (run_id) WHERE {contacts:r.contact_id}
        GROUP BY r.run_id, r.action_count HAVING count(a.action_id) <> r.action_count
        """,
    ),
    TableCheck(
        ASSIGNMENTS_ORDERED_WITHOUT_OVERLAP, "assignments",
        "Per contact: seq 1, 2, … in timeline order; each interval ends where the next begins "
        "(no overlap, no gap); only the last is open-ended; cause event or workflow.",
        """
        WITH a AS (
            SELECT *, lead(valid_from) OVER w AS next_from, lead(timeline_order) OVER w AS next_order,
                   row_number() OVER w AS position
            FROM assignments WHERE {contacts:contact_id} WINDOW w AS (PARTITION BY contact_id ORDER BY seq)
        )
        SELECT 'contact ' || contact_id || ' seq ' || seq || ': ' || CASE
                WHEN seq <> position THEN 'seq is not 1, 2, … (position ' || position || ')'
                WHEN cause IS NULL OR cause NOT IN ('event', 'workflow') THEN 'cause ' || coalesce(cause, 'null')
                WHEN valid_from IS NULL THEN 'null valid_from'
                WHEN next_from IS NULL AND valid_to IS NOT NULL THEN 'the last interval is closed'
                WHEN next_from IS NOT NULL AND valid_to IS DISTINCT FROM next_from THEN 'overlaps or leaves a gap before the next interval'
                WHEN valid_to < valid_from THEN 'ends before it starts'
                WHEN next_order <= timeline_order THEN 'out of timeline order'
            END AS problem
        FROM a
        WHERE seq <> position OR cause IS NULL OR cause NOT IN ('event', 'workflow') OR valid_from IS NULL
           OR (next_from IS NULL AND valid_to IS NOT NULL)
           OR (next_from IS NOT NULL AND valid_to IS DISTINCT FROM next_from)
           OR valid_to < valid_from OR next_order <= timeline_order
        """,
    ),
    TableCheck(
        DAILY_METRICS_ADD_UP, "daily_conversation_metrics",
        "Per local day, conversations_closed adds up to the closed conversations of that close day and "
        "conversations_opened to the conversations opened that day; one timezone.",
        """
        WITH tz AS (SELECT coalesce(min(timezone), 'UTC') AS name, count(DISTINCT timezone) AS n FROM daily_conversation_metrics),
        per_day AS (
            SELECT day, sum(conversations_closed) AS closed, sum(conversations_opened) AS opened,
                   sum(conversations_answered) AS answered
            FROM daily_conversation_metrics GROUP BY day
        ),
        actual AS (
            SELECT coalesce(c.day, o.day) AS day, coalesce(c.closed, 0) AS closed, coalesce(c.answered, 0) AS answered,
                   coalesce(o.opened, 0) AS opened
            FROM (SELECT CAST(timezone((SELECT name FROM tz), closed_at) AS DATE) AS day, count(*) AS closed,
                         count(first_response_time_s) AS answered
                  FROM conversations WHERE status = 'closed' GROUP BY 1) c
            FULL JOIN (SELECT CAST(timezone((SELECT name FROM tz), opened_at) AS DATE) AS day, count(*) AS opened
                       FROM conversations GROUP BY 1) o USING (day)
        )
        SELECT 'daily_conversation_metrics holds ' || n || ' timezones' AS problem FROM tz WHERE n > 1
        UNION ALL
        SELECT 'day ' || coalesce(a.day, p.day) || ': metrics say ' || coalesce(p.closed, 0) || ' closed / '
               || coalesce(p.opened, 0) || ' opened / ' || coalesce(p.answered, 0) || ' answered, conversations have '
               || coalesce(a.closed, 0) || ' / ' || coalesce(a.opened, 0) || ' / ' || coalesce(a.answered, 0)
        FROM actual a FULL JOIN per_day p USING (day)
        WHERE coalesce(a.closed, 0) <> coalesce(p.closed, 0) OR coalesce(a.opened, 0) <> coalesce(p.opened, 0)
           OR coalesce(a.answered, 0) <> coalesce(p.answered, 0)
        """,
    ),
    TableCheck(
        CONVERSATION_ASSIGNEES_VALID, "conversation_assignees",
        "Each row is a closed conversation with its close time and a user, each pair once.",
        """
        SELECT 'conversation ' || a.conversation_id || ' (assignee ' || coalesce(a.assignee_id, 'NULL') || '): '
               || CASE WHEN a.assignee_id IS NULL THEN 'no assignee'
                       WHEN c.conversation_id IS NULL OR c.status <> 'closed' THEN 'is not a closed conversation'
                       ELSE 'closed_at does not match conversations' END AS problem
        FROM conversation_assignees a LEFT JOIN conversations c USING (conversation_id)
        WHERE a.assignee_id IS NULL OR c.conversation_id IS NULL OR c.status <> 'closed'
           OR c.closed_at IS DISTINCT FROM a.closed_at
        UNION ALL
        SELECT 'conversation ' || conversation_id || ' lists assignee ' || assignee_id || ' ' || count(*) || ' times'
        FROM conversation_assignees GROUP BY conversation_id, assignee_id HAVING count(*) > 1
        """,
    ),
    TableCheck(
        USER_MESSAGES_ADD_UP, "user_messages_15min",
        "Per user, the slots add up to the user's message.sent events (source user); slots are quarter hours.",
        """
        WITH slots AS (SELECT user_id, sum(messages_sent) AS n FROM user_messages_15min GROUP BY 1),
        sent AS (SELECT user_id, count(*) AS n FROM events
                 WHERE event_type = 'message.sent' AND source = 'user' AND user_id IS NOT NULL GROUP BY 1)
        SELECT 'user ' || coalesce(s.user_id, e.user_id) || ': slots say ' || coalesce(s.n, 0)
               || ' messages sent, events have ' || coalesce(e.n, 0) AS problem
        FROM slots s FULL JOIN sent e USING (user_id)
        WHERE coalesce(s.n, 0) <> coalesce(e.n, 0)
        UNION ALL
        SELECT 'slot ' || slot_start || ' is not on a quarter hour' FROM user_messages_15min
        WHERE epoch_ms(slot_start) % 900000 <> 0
        """,
    ),
    TableCheck(
        USER_CLOSES_VALID, "user_closes",
        "Per user, as many closes as conversations closed by the user; a previous close comes before its close.",
        """
        WITH rows_per_user AS (SELECT user_id, count(*) AS n FROM user_closes GROUP BY 1),
        closed AS (SELECT closed_by_user_id AS user_id, count(*) AS n FROM conversations
                   WHERE status = 'closed' AND closed_by_user_id IS NOT NULL GROUP BY 1)
        SELECT 'user ' || coalesce(r.user_id, c.user_id) || ': user_closes has ' || coalesce(r.n, 0)
               || ' closes, conversations ' || coalesce(c.n, 0) AS problem
        FROM rows_per_user r FULL JOIN closed c USING (user_id)
        WHERE coalesce(r.n, 0) <> coalesce(c.n, 0)
        UNION ALL
        SELECT 'user ' || user_id || ': a close at ' || closed_at || ' has its previous close after it'
        FROM user_closes WHERE previous_close_of_contact_at > closed_at
        """,
    ),
)

CHECKS_BY_NAME: dict[str, TableCheck] = {c.name: c for c in TABLE_CHECKS}


class _Ids:
    """A placeholder of a check's SQL: `true` (every row) or `<column> IN (<select>)`, with the
    rows whose `column` is NULL too when `or_null` (rows of no contact belong to every scope).
    With `no_rows` (an empty scope) the IN is spelled `false`: DuckDB plans a semi-join with an
    empty side badly (the unique event_id rule took 0.39-0.49 s at 5M events with no contact
    changed, against 0.08 s with one)."""

    def __init__(self, select: str | None, or_null: bool = False, no_rows: bool = False):
        self.select, self.or_null, self.no_rows = select, or_null, no_rows

    def __format__(self, column: str) -> str:
        if self.no_rows:
            matches = "false"
        elif self.select is None:
            return "true"
        else:
            matches = f"{column} IN ({self.select})"
        return f"({matches} OR {column} IS NULL)" if self.or_null else matches


_ID_PLACEHOLDERS = ("contacts", "event_ids", "conversation_ids", "run_ids", "action_ids")


def _rows_to_check(changed_contacts: str | None, no_contacts: bool = False) -> dict[str, _Ids]:
    if changed_contacts is None:
        return dict.fromkeys(_ID_PLACEHOLDERS, _Ids(None))
    if no_contacts:  # no changed contact, hence no id shared with one: only rows of no contact
        return {name: _Ids(None, or_null=name == "contacts", no_rows=True) for name in _ID_PLACEHOLDERS}
    contacts = f"SELECT contact_id FROM {changed_contacts}"
    # An id rule (unique event_id, one contact per conversation …) reads every row that shares
    # an id with a changed contact's row, whichever contact that row belongs to.
    return {
        "contacts": _Ids(contacts, or_null=True),
        # (NULLs left out: an IN list holding a NULL makes DuckDB's semi-join several times slower)
        "event_ids": _Ids(f"SELECT event_id FROM events WHERE contact_id IN ({contacts}) AND event_id IS NOT NULL"),
        "conversation_ids": _Ids(
            f"SELECT conversation_id FROM events WHERE contact_id IN ({contacts}) AND conversation_id IS NOT NULL "
            f"UNION SELECT conversation_id FROM conversations WHERE contact_id IN ({contacts}) "
            "AND conversation_id IS NOT NULL"),
        "run_ids": _Ids(f"SELECT run_id FROM workflow_runs WHERE contact_id IN ({contacts}) AND run_id IS NOT NULL"),
        "action_ids": _Ids(
            f"SELECT action_id FROM workflow_actions WHERE contact_id IN ({contacts}) AND action_id IS NOT NULL"),
    }


def run_table_check(
    con: duckdb.DuckDBPyConnection, check: TableCheck, changed_contacts: str | None = None
) -> CheckOutcome:
    """Run one check in DuckDB: the number of violations and a few of them, in a stable order.

    With `changed_contacts` (a table with a `contact_id` column: the contacts whose rows changed
    since the last publish, when every row passed), a check reads only the rows those changes
    can have made wrong; the same rule, the same messages."""
    no_contacts = changed_contacts is not None and not con.sql(f"SELECT 1 FROM {changed_contacts} LIMIT 1").fetchall()
    sql = check.sql.format(**_rows_to_check(changed_contacts, no_contacts))
    (count, examples), = con.sql(
        f"SELECT count(*), list(problem ORDER BY problem)[1:{EXAMPLES_SHOWN}] FROM ({sql})"
    ).fetchall()
    return CheckOutcome(passed=count == 0, violations=int(count), examples=list(examples or []))
