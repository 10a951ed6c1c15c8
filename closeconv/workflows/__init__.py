"""Workflows: YAML definitions, validation, conditions, replay, what-if and drift (spec §6).

Public API::

    load_workflows(folder) -> list[Workflow]          # raises WorkflowValidationError
    validate_folder(folder) -> list[Problem]
    replay_workflows(con, workflows, users=None) -> ReplayStats
    drift_count(con) -> int                           # rows of workflow_drift
    drift_contacts(con) -> int                        # contacts in it: the run summary's figure
    CONVERSATION_ASSIGNEES_SQL                        # first_assignee_id / assignee_at_close
"""

from closeconv.workflows.loader import (
    Problem,
    WorkflowValidationError,
    load_workflows,
    parse_workflow_file,
    parse_workflow_text,
    validate_folder,
)
from closeconv.workflows.models import AssignStep, Conditions, Rule, Trigger, Workflow, WorkflowSettings
from closeconv.workflows.assignees import CONVERSATION_ASSIGNEES_SQL
from closeconv.workflows.drift import drift_contacts, drift_count
from closeconv.workflows.replay import ReplayStats, replay_workflows
from closeconv.workflows.tables import (
    ASSIGNMENTS_COLUMNS,
    WORKFLOW_ACTIONS_COLUMNS,
    WORKFLOW_DRIFT_COLUMNS,
    WORKFLOW_RUNS_COLUMNS,
)

__all__ = [
    "ASSIGNMENTS_COLUMNS",
    "CONVERSATION_ASSIGNEES_SQL",
    "WORKFLOW_ACTIONS_COLUMNS",
    "WORKFLOW_DRIFT_COLUMNS",
    "WORKFLOW_RUNS_COLUMNS",
    "AssignStep",
    "Conditions",
    "Problem",
    "ReplayStats",
    "Rule",
    "Trigger",
    "Workflow",
    "WorkflowSettings",
    "WorkflowValidationError",
    "drift_contacts",
    "drift_count",
    "load_workflows",
    "parse_workflow_file",
    "parse_workflow_text",
    "validate_folder",
    "replay_workflows",
]
