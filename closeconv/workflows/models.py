"""Typed workflow definitions (spec §6).

A workflow is parsed from YAML by :mod:`closeconv.workflows.loader`, which reports every
problem with its file and line; these models are the typed result. They are frozen and
carry a ``version``: a hash of the normalized definition (what the workflow *does*), so a
run id changes when the behaviour changes and not when a comment or the name changes.
"""

from __future__ import annotations

import hashlib
import json
from typing import Literal

from pydantic import BaseModel, ConfigDict

# --------------------------------------------------------------------------- vocabulary

TRIGGER_TYPES: tuple[str, ...] = ("conversation.closed", "conversation.opened")

#: Fields a condition can read, as they are at the trigger event.
CONDITION_FIELDS: tuple[str, ...] = (
    "source",
    "category",
    "summary",
    "user_id",
    "team_id",
    "channel_id",
    "assignee_id",
)

#: Operators by the kind of value they take.
SCALAR_OPERATORS: tuple[str, ...] = ("is_equal_to", "is_not_equal_to", "contains", "does_not_contain")
LIST_OPERATORS: tuple[str, ...] = ("is_one_of", "is_not_one_of")
NO_VALUE_OPERATORS: tuple[str, ...] = ("is_present", "is_not_present")
OPERATORS: tuple[str, ...] = (
    "is_equal_to",
    "is_not_equal_to",
    "is_one_of",
    "is_not_one_of",
    "contains",
    "does_not_contain",
    "is_present",
    "is_not_present",
)
assert set(OPERATORS) == {*SCALAR_OPERATORS, *LIST_OPERATORS, *NO_VALUE_OPERATORS}  # documented order, same set

MATCH_MODES: tuple[str, ...] = ("all", "any")
MAX_CONDITIONS = 10

STEP_TYPES: tuple[str, ...] = ("assign_to",)
#: `assign_to` actions. `user` needs `user_id`; the two strategies take an optional
#: `team_id` (absent = the whole workspace) and an optional `max_open_contacts`.
ASSIGN_ACTIONS: tuple[str, ...] = ("unassign", "user", "round_robin", "least_open_contacts")
STRATEGY_ACTIONS: tuple[str, ...] = ("round_robin", "least_open_contacts")

TriggerType = Literal["conversation.closed", "conversation.opened"]
ConditionField = Literal["source", "category", "summary", "user_id", "team_id", "channel_id", "assignee_id"]
Operator = Literal[
    "is_equal_to",
    "is_not_equal_to",
    "is_one_of",
    "is_not_one_of",
    "contains",
    "does_not_contain",
    "is_present",
    "is_not_present",
]
AssignAction = Literal["unassign", "user", "round_robin", "least_open_contacts"]

# --------------------------------------------------------------------------- models

_FROZEN = ConfigDict(frozen=True, extra="forbid")


class Rule(BaseModel):
    """One condition: `field` `operator` `value`.

    `value` is a string for the scalar operators, a tuple of strings for `is_one_of` /
    `is_not_one_of`, and None for `is_present` / `is_not_present`.
    """

    model_config = _FROZEN
    field: ConditionField
    operator: Operator
    value: str | tuple[str, ...] | None = None


class Conditions(BaseModel):
    model_config = _FROZEN
    match: Literal["all", "any"] = "all"
    rules: tuple[Rule, ...] = ()


class Trigger(BaseModel):
    model_config = _FROZEN
    type: TriggerType
    conditions: Conditions = Conditions()


class WorkflowSettings(BaseModel):
    model_config = _FROZEN
    trigger_once_per_contact: bool = False


class AssignStep(BaseModel):
    model_config = _FROZEN
    id: str
    type: Literal["assign_to"] = "assign_to"
    action: AssignAction
    user_id: str | None = None
    team_id: str | None = None  # round_robin / least_open_contacts: None = whole workspace
    max_open_contacts: int | None = None


class Workflow(BaseModel):
    model_config = _FROZEN
    id: str
    name: str
    enabled: bool
    description: str | None = None
    trigger: Trigger
    settings: WorkflowSettings = WorkflowSettings()
    steps: tuple[AssignStep, ...]
    # Where it was read from (not part of the definition, not in the version hash).
    source_file: str | None = None
    source_line: int | None = None

    def normalized(self) -> dict:
        """What the workflow does, with defaults filled in and text values lower-cased
        (they compare case-insensitively). Name, description, enabled and the file are
        left out: they do not change what a run does."""
        rules = [
            {
                "field": r.field,
                "operator": r.operator,
                "value": (
                    None
                    if r.value is None
                    else r.value.lower()
                    if isinstance(r.value, str)
                    else sorted({v.lower() for v in r.value})
                ),
            }
            for r in self.trigger.conditions.rules
        ]
        return {
            "id": self.id,
            "trigger": {
                "type": self.trigger.type,
                "conditions": {"match": self.trigger.conditions.match, "rules": rules},
            },
            "settings": {"trigger_once_per_contact": self.settings.trigger_once_per_contact},
            "steps": [s.model_dump(mode="json") for s in self.steps],
        }

    @property
    def version(self) -> str:
        """12 hex digits of the SHA-256 of the normalized definition."""
        text = json.dumps(self.normalized(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode("utf-8")).hexdigest()[:12]

    @property
    def uses_assignee_condition(self) -> bool:
        return any(r.field == "assignee_id" for r in self.trigger.conditions.rules)

    @property
    def unassign_only(self) -> bool:
        return all(s.action == "unassign" for s in self.steps)

    def describe_conditions(self) -> str:
        rules = self.trigger.conditions.rules
        if not rules:
            return "(every event)"
        joiner = " AND " if self.trigger.conditions.match == "all" else " OR "
        parts = []
        for r in rules:
            if r.value is None:
                parts.append(f"{r.field} {r.operator}")
            elif isinstance(r.value, tuple):
                parts.append(f"{r.field} {r.operator} [{', '.join(r.value)}]")
            else:
                parts.append(f"{r.field} {r.operator} {r.value}")
        return joiner.join(parts)

    def describe_steps(self) -> str:
        out = []
        for s in self.steps:
            if s.action == "unassign":
                out.append("unassign")
            elif s.action == "user":
                out.append(f"assign to {s.user_id}")
            else:
                scope = f"team {s.team_id}" if s.team_id else "workspace"
                cap = f", fewer than {s.max_open_contacts} open" if s.max_open_contacts else ""
                out.append(f"{s.action} in {scope}{cap}")
        return "; ".join(out)
