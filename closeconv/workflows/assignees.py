"""The assignee of each conversation at its open and at its close: one implementation, used by
the `conversations` table (closeconv.metrics) and tested directly.

It reads ``events`` and the merged timeline ``assignments`` (recorded updates plus replayed
actions). ``timeline_order`` puts a trigger's own workflow rows just after the trigger
(``event_order + 0.5``), so "the last row with ``timeline_order`` < the event's order" is the
assignee just before an event, before the event's own workflows; an ``ASOF JOIN`` finds it.

The query starts from each conversation's span in its contact's timeline
(``CONVERSATION_SPAN_COLUMNS``): over ``events`` by default, or from a relation that already
holds them (the ``conversations`` query groups ``events`` by conversation once, for all its figures).
"""

from __future__ import annotations

# What the assignee query needs of each conversation, and how it is computed from `events`.
CONVERSATION_SPAN_COLUMNS = ("conversation_id", "contact_id", "open_order", "opened_at", "close_order")
CONVERSATION_SPANS_SQL = """
SELECT conversation_id,
       any_value(contact_id) AS contact_id,
       min(event_order) AS open_order,
       arg_min(occurred_at, event_order) AS opened_at,
       max(event_order) FILTER (WHERE event_type = 'conversation.closed') AS close_order
FROM events
WHERE conversation_id IS NOT NULL
GROUP BY conversation_id
"""


def conversation_assignees_sql(spans: str = f"({CONVERSATION_SPANS_SQL})") -> str:
    """Per conversation: first_assignee_id, first_assigned_at (the open time when the contact was
    already assigned at open), assignee_at_close. ``spans``: a relation (table, CTE or
    parenthesized query) with the ``CONVERSATION_SPAN_COLUMNS`` of each conversation."""
    return f"""
WITH conv AS (
    SELECT {", ".join(CONVERSATION_SPAN_COLUMNS)} FROM {spans}
),
at_open AS (        -- the assignee in force just before the conversation's first event
    SELECT c.conversation_id, a.assignee_id
    FROM conv c ASOF LEFT JOIN assignments a
      ON a.contact_id = c.contact_id AND a.timeline_order < c.open_order
),
during AS (         -- the first assignee set during the conversation, before the close's workflows
    SELECT c.conversation_id,
           arg_min(a.assignee_id, a.timeline_order) AS assignee_id,
           arg_min(a.valid_from, a.timeline_order) AS assigned_at
    FROM conv c JOIN assignments a
      ON a.contact_id = c.contact_id AND a.timeline_order > c.open_order
     AND (c.close_order IS NULL OR a.timeline_order < c.close_order)
    WHERE a.assignee_id IS NOT NULL
    GROUP BY c.conversation_id
),
at_close AS (       -- the assignee just before the close, before the close's own workflows
    SELECT c.conversation_id, a.assignee_id
    FROM conv c ASOF LEFT JOIN assignments a
      ON a.contact_id = c.contact_id AND a.timeline_order < c.close_order
    WHERE c.close_order IS NOT NULL
)
SELECT c.conversation_id,
       coalesce(o.assignee_id, d.assignee_id) AS first_assignee_id,
       CASE WHEN o.assignee_id IS NOT NULL THEN c.opened_at ELSE d.assigned_at END AS first_assigned_at,
       k.assignee_id AS assignee_at_close
FROM conv c
LEFT JOIN at_open o USING (conversation_id)
LEFT JOIN during d USING (conversation_id)
LEFT JOIN at_close k USING (conversation_id)
"""


CONVERSATION_ASSIGNEES_SQL = conversation_assignees_sql()
"""The assignees of every conversation in `events`."""
