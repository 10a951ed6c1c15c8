"""The tables replay writes and the frames its engines hand to the writers: a leaf module
(no imports from the engines), so the engines, the writers and the checks share one spelling."""

from __future__ import annotations

import polars as pl

COMPLETED = "completed"
SKIPPED = "skipped"
SKIP_NO_ASSIGNEE = "contact has no assignee"
SKIP_ONCE = "already triggered once for this contact"
SKIP_SAME_USER = "contact is already assigned to this user"
SKIP_CHOSEN_IS_CURRENT = "contact is already assigned to the chosen user"
SKIP_NO_TEAM_USERS = "no users in the team '{team}'"  # .format(team=...): what-if names it
SKIP_NO_WORKSPACE_USERS = "no users in the workspace"
SKIP_ALL_AT_CAP = "every eligible user already has max_open_contacts or more open contacts"

RECONCILE_WINDOW_S = 60
DRIFT_GRACE_S = 60

# The tables a replay writes (every one has a contact_id).
REPLAY_TABLES = ("workflow_runs", "workflow_actions", "assignments", "workflow_drift")

WORKFLOW_RUNS_COLUMNS: dict[str, str] = {
    "run_id": "VARCHAR",
    "workflow_id": "VARCHAR",
    "workflow_version": "VARCHAR",
    "trigger_event_id": "VARCHAR",
    "contact_id": "VARCHAR",
    "conversation_id": "VARCHAR",
    "triggered_at": "TIMESTAMPTZ",
    "outcome": "VARCHAR",  # completed | skipped
    "skip_reason": "VARCHAR",  # null when completed
    # extras
    "trigger_type": "VARCHAR",
    "trigger_event_order": "BIGINT",  # the trigger's events.event_order (position within its contact)
    "action_count": "INTEGER",
}

WORKFLOW_ACTIONS_COLUMNS: dict[str, str] = {
    "action_id": "VARCHAR",
    "run_id": "VARCHAR",
    "step_id": "VARCHAR",
    "action": "VARCHAR",  # unassign | assign
    "contact_id": "VARCHAR",
    "from_assignee_id": "VARCHAR",
    "to_assignee_id": "VARCHAR",
    "effective_at": "TIMESTAMPTZ",  # = the trigger time
    # extras
    "workflow_id": "VARCHAR",
    "workflow_version": "VARCHAR",
    "trigger_event_id": "VARCHAR",
    "conversation_id": "VARCHAR",
    "strategy": "VARCHAR",  # unassign | user | round_robin | least_open_contacts
    "step_index": "INTEGER",
    "trigger_event_order": "BIGINT",
    "trigger_action_seq": "INTEGER",  # 1, 2, ... position among all actions of the trigger event
    "reconciled_event_id": "VARCHAR",  # the recorded update that is the same change, if any
}

ASSIGNMENTS_COLUMNS: dict[str, str] = {
    "contact_id": "VARCHAR",
    "assignee_id": "VARCHAR",  # null = unassigned
    "valid_from": "TIMESTAMPTZ",
    "valid_to": "TIMESTAMPTZ",  # null = still valid
    "cause": "VARCHAR",  # event | workflow
    # extras
    "seq": "BIGINT",  # 1, 2, ... per contact, in timeline order
    "event_order": "BIGINT",  # recorded event's order, or the trigger's order for workflow rows (per contact)
    # unique position in the contact's timeline: event_order for recorded rows,
    # trigger event_order + 0.5 (+ 0.001 per earlier action of the same trigger) for workflow rows
    "timeline_order": "DOUBLE",
    "event_id": "VARCHAR",  # recorded event id (for workflow rows: the reconciled recorded update)
    "source": "VARCHAR",  # recorded source, or 'workflow'
    "run_id": "VARCHAR",
    "action_id": "VARCHAR",
    "workflow_id": "VARCHAR",
    "trigger_event_id": "VARCHAR",
}

WORKFLOW_DRIFT_COLUMNS: dict[str, str] = {
    "contact_id": "VARCHAR",
    "workflow_id": "VARCHAR",
    "run_id": "VARCHAR",
    "action_id": "VARCHAR",
    "trigger_event_id": "VARCHAR",
    "conversation_id": "VARCHAR",
    "expected_unassigned_at": "TIMESTAMPTZ",
    "replayed_from_assignee_id": "VARCHAR",
    "recorded_assignee_id": "VARCHAR",
    "recorded_assignee_since": "TIMESTAMPTZ",
    "recorded_assignee_until": "TIMESTAMPTZ",  # null = still assigned at the end of the data
}

# Internal frames the engines hand to writers.write_tables. A trigger or recorded update is
# named by ``pos``, its row position in the timeline (sorted by contact, then event_order):
# unique over all contacts, where event_order is unique only within a contact. Ids, contacts,
# times and the published orders come from the trigger frame by ``pos``:
#   runs:    pos, wf_index, outcome, skip_reason, action_count
#   actions: pos, wf_index, step_index, step_id, action, strategy,
#            from_assignee_id, to_assignee_id, reconciled_pos (the recorded update's pos)
RUNS_SCHEMA = {
    "pos": pl.Int64,
    "wf_index": pl.Int32,
    "outcome": pl.String,
    "skip_reason": pl.String,
    "action_count": pl.Int32,
}

ACTIONS_SCHEMA = {
    "pos": pl.Int64,
    "wf_index": pl.Int32,
    "step_index": pl.Int32,
    "step_id": pl.String,
    "action": pl.String,
    "strategy": pl.String,
    "from_assignee_id": pl.String,
    "to_assignee_id": pl.String,
    "reconciled_pos": pl.Int64,
}

CONDITION_COLUMNS = ("source", "category", "summary", "user_id", "team_id", "channel_id")
