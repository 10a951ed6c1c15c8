"""Writing the replay's tables: workflow_runs, workflow_actions, assignments, workflow_drift."""

from __future__ import annotations

import duckdb
import polars as pl

from closeconv.workflows.models import Workflow
from closeconv.workflows.tables import ACTIONS_SCHEMA, DRIFT_GRACE_S, RUNS_SCHEMA


def write_tables(con: duckdb.DuckDBPyConnection, runs: pl.DataFrame, actions: pl.DataFrame, wfs: list[Workflow]) -> None:
    defs = pl.DataFrame(
        {
            "wf_index": list(range(len(wfs))),
            "workflow_id": [w.id for w in wfs],
            "workflow_version": [w.version for w in wfs],
            "trigger_type": [w.trigger.type for w in wfs],
        },
        schema={"wf_index": pl.Int32, "workflow_id": pl.String, "workflow_version": pl.String, "trigger_type": pl.String},
    )
    con.register("_cc_wf_defs", defs.to_arrow())
    con.register("_cc_wf_runs", runs.select(list(RUNS_SCHEMA)).cast(RUNS_SCHEMA).to_arrow())
    con.register("_cc_wf_actions", actions.select(list(ACTIONS_SCHEMA)).cast(ACTIONS_SCHEMA).to_arrow())
    run_id = "substr(md5(d.workflow_id || '|' || d.workflow_version || '|' || e.event_id), 1, 20)"
    try:
        con.sql(
            f"""
            CREATE OR REPLACE TABLE workflow_runs AS
            SELECT CAST({run_id} AS VARCHAR) AS run_id,
                   d.workflow_id, d.workflow_version,
                   e.event_id AS trigger_event_id, e.contact_id, e.conversation_id,
                   CAST(e.occurred_at AS TIMESTAMPTZ) AS triggered_at,
                   r.outcome, r.skip_reason,
                   d.trigger_type, r.event_order AS trigger_event_order,
                   CAST(r.action_count AS INTEGER) AS action_count
            FROM _cc_wf_runs r
            JOIN events e ON e.event_order = r.event_order
            JOIN _cc_wf_defs d ON d.wf_index = r.wf_index
            ORDER BY r.event_order, r.wf_index
            """
        )
        con.sql(
            """
            CREATE OR REPLACE TABLE workflow_actions AS
            WITH a AS (
                SELECT x.*, r.run_id, r.workflow_id, r.workflow_version, r.trigger_event_id AS event_id,
                       r.contact_id, r.conversation_id, r.triggered_at AS occurred_at
                FROM _cc_wf_actions x
                JOIN _cc_wf_defs d ON d.wf_index = x.wf_index
                JOIN workflow_runs r ON r.trigger_event_order = x.event_order AND r.workflow_id = d.workflow_id
            )
            SELECT CAST(substr(md5(a.run_id || '|' || a.step_id), 1, 20) AS VARCHAR) AS action_id,
                   CAST(a.run_id AS VARCHAR) AS run_id, a.step_id, a.action, a.contact_id,
                   a.from_assignee_id, a.to_assignee_id,
                   CAST(a.occurred_at AS TIMESTAMPTZ) AS effective_at,
                   a.workflow_id, a.workflow_version, a.event_id AS trigger_event_id, a.conversation_id,
                   a.strategy, a.step_index, a.event_order AS trigger_event_order,
                   CAST(row_number() OVER (PARTITION BY a.event_order ORDER BY a.wf_index, a.step_index) AS INTEGER)
                       AS trigger_action_seq,
                   rec.event_id AS reconciled_event_id
            FROM a LEFT JOIN events rec ON rec.event_order = a.reconciled_event_order
            ORDER BY a.event_order, a.wf_index, a.step_index
            """
        )
    finally:
        for name in ("_cc_wf_defs", "_cc_wf_runs", "_cc_wf_actions"):
            con.unregister(name)
    con.sql(
        """
        CREATE OR REPLACE TABLE assignments AS
        WITH rows AS (
            SELECT e.contact_id, nullif(trim(e.assignee_id), '') AS assignee_id, e.occurred_at AS valid_from,
                   'event' AS cause, e.event_order, 0 AS sub, e.event_id, lower(e.source) AS source,
                   CAST(NULL AS VARCHAR) AS run_id, CAST(NULL AS VARCHAR) AS action_id,
                   CAST(NULL AS VARCHAR) AS workflow_id, CAST(NULL AS VARCHAR) AS trigger_event_id
            FROM events e
            WHERE e.event_type = 'contact.assignee.updated'
              AND NOT EXISTS (SELECT 1 FROM workflow_actions a WHERE a.reconciled_event_id = e.event_id)
            UNION ALL
            SELECT contact_id, to_assignee_id, effective_at, 'workflow', trigger_event_order, trigger_action_seq,
                   reconciled_event_id, 'workflow', run_id, action_id, workflow_id, trigger_event_id
            FROM workflow_actions
        )
        SELECT CAST(contact_id AS VARCHAR) AS contact_id,
               CAST(assignee_id AS VARCHAR) AS assignee_id,
               CAST(valid_from AS TIMESTAMPTZ) AS valid_from,
               CAST(lead(valid_from) OVER w AS TIMESTAMPTZ) AS valid_to,
               CAST(cause AS VARCHAR) AS cause,
               CAST(row_number() OVER w AS BIGINT) AS seq,
               CAST(event_order AS BIGINT) AS event_order,
               CAST(CASE WHEN sub = 0 THEN event_order
                         ELSE event_order + 0.5 + least(sub - 1, 499) / 1000.0 END AS DOUBLE) AS timeline_order,
               CAST(event_id AS VARCHAR) AS event_id,
               CAST(source AS VARCHAR) AS source,
               run_id, action_id, workflow_id, trigger_event_id
        FROM rows
        WINDOW w AS (PARTITION BY contact_id ORDER BY event_order, sub)
        ORDER BY contact_id, seq
        """
    )
    con.sql(
        f"""
        CREATE OR REPLACE TABLE workflow_drift AS
        WITH rec AS (
            SELECT contact_id, nullif(trim(assignee_id), '') AS assignee_id, occurred_at AS valid_from,
                   lead(occurred_at) OVER (PARTITION BY contact_id ORDER BY event_order) AS valid_to
            FROM events WHERE event_type = 'contact.assignee.updated'
        ), final_action AS (    -- the last action of each trigger: what the replay expects to remain
            SELECT action_id FROM assignments WHERE cause = 'workflow'
            QUALIFY row_number() OVER (PARTITION BY contact_id, event_order ORDER BY seq DESC) = 1
        )
        SELECT CAST(a.contact_id AS VARCHAR) AS contact_id,
               CAST(a.workflow_id AS VARCHAR) AS workflow_id,
               CAST(a.run_id AS VARCHAR) AS run_id,
               CAST(a.action_id AS VARCHAR) AS action_id,
               CAST(a.trigger_event_id AS VARCHAR) AS trigger_event_id,
               CAST(a.conversation_id AS VARCHAR) AS conversation_id,
               CAST(a.effective_at AS TIMESTAMPTZ) AS expected_unassigned_at,
               CAST(a.from_assignee_id AS VARCHAR) AS replayed_from_assignee_id,
               CAST(r.assignee_id AS VARCHAR) AS recorded_assignee_id,
               CAST(r.valid_from AS TIMESTAMPTZ) AS recorded_assignee_since,
               CAST(r.valid_to AS TIMESTAMPTZ) AS recorded_assignee_until
        FROM workflow_actions a
        JOIN rec r
          ON r.contact_id = a.contact_id
         AND r.valid_from <= a.effective_at + INTERVAL {DRIFT_GRACE_S} SECOND
         AND (r.valid_to IS NULL OR r.valid_to > a.effective_at + INTERVAL {DRIFT_GRACE_S} SECOND)
        WHERE a.action = 'unassign' AND a.reconciled_event_id IS NULL AND r.assignee_id IS NOT NULL
          AND a.action_id IN (SELECT action_id FROM final_action)
        ORDER BY a.trigger_event_order, a.action_id
        """
    )

