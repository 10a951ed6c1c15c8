"""Typed workflow definitions (spec §6).

The models are the one statement of what a valid definition is: the YAML loader
(:mod:`closeconv.workflows.loader`) validates through them and maps each error to its line. They are frozen and
carry a ``version``: a hash of the normalized definition (what the workflow *does*), so a
run id changes when the behaviour changes and not when a comment or the name changes.
"""

from __future__ import annotations

import hashlib
import json
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, ValidationInfo, field_validator, model_validator
from pydantic_core import PydanticCustomError

from closeconv.contract import ALLOWED_SOURCES
from closeconv.workflows.hints import did_you_mean

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
#: The options each `assign_to` action takes.
STEP_OPTIONS: dict[str, tuple[str, ...]] = {
    "unassign": (),
    "user": ("user_id",),
    "round_robin": ("team_id", "max_open_contacts"),
    "least_open_contacts": ("team_id", "max_open_contacts"),
}

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
#
# The models hold every rule of a workflow definition. A rule a plain type cannot say raises
# `problem(...)`: a pydantic error whose context carries the human message and the fix, and
# where in the YAML it points (`at`, relative to the error's location). The loader maps each
# error to the line of that node (closeconv.workflows.loader). "{where}" in a message is
# filled by the loader ("the workflow", "step 2", "rule 1", ...).

_FROZEN = ConfigDict(frozen=True, extra="forbid")
_ID_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.")
MAX_ID_LENGTH = 64
PROBLEM = "closeconv_problem"


def problem(message: str, fix: str, at: tuple = (), **extra) -> PydanticCustomError:
    return PydanticCustomError(PROBLEM, message, {"message": message, "fix": fix, "at": at, **extra})


def kind_of(value) -> str:
    """How a YAML value reads to a person: text, number, boolean, list, mapping or null."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "text"
    if isinstance(value, dict):
        return "mapping"
    if isinstance(value, (list, tuple)):
        return "list"
    return type(value).__name__


def _text(value, key: str):
    """A non-empty text, else the problem that says so."""
    if isinstance(value, str) and value.strip():
        return value
    got = "nothing" if value is None else "an empty text" if isinstance(value, str) else f"a {kind_of(value)} ({value!r})"
    raise problem(f"'{key}' of {{where}} must be a non-empty text, got {got}", f"write '{key}: \"...\"' with quotes")


def _identifier(value, key: str):
    text = _text(value, key)
    if set(text) - _ID_CHARS or len(text) > MAX_ID_LENGTH:
        raise problem(f"'{key}' {text!r} of {{where}} is not a valid id",
                      f"use at most {MAX_ID_LENGTH} letters, digits, '-', '_' or '.' (no spaces)")
    return text


def _yaml_context(info: ValidationInfo) -> bool:
    return bool(info.context and info.context.get("yaml"))


class Rule(BaseModel):
    """One condition: `field` `operator` `value`.

    `value` is a string for the scalar operators, a tuple of strings for `is_one_of` /
    `is_not_one_of`, and None for `is_present` / `is_not_present`.
    """

    model_config = _FROZEN
    field: ConditionField
    operator: Operator
    value: str | tuple[str, ...] | None = Field(default=None, validate_default=True)

    @field_validator("value", mode="before")
    @classmethod
    def _value_fits_the_operator(cls, value, info: ValidationInfo):
        op = info.data.get("operator")
        if op is None:  # the operator itself is wrong: that is the problem to report
            return None
        if op in NO_VALUE_OPERATORS:
            if value is not None:
                raise problem(f"{{where}}: '{op}' takes no value", "remove 'value' from this rule")
            return None
        if op in LIST_OPERATORS:
            if value is None:
                raise problem(f"{{where}}: '{op}' has no value", "add 'value: [a, b]' with the values to compare to")
            if not isinstance(value, (list, tuple)):
                one = "is_equal_to" if op == "is_one_of" else "is_not_equal_to"
                raise problem(f"{{where}}: '{op}' needs a list of values, got a {kind_of(value)} ({value!r})",
                              f"write 'value: [{value}]', or use {one} for one value")
            if not value:
                raise problem(f"{{where}}: '{op}' has an empty list of values", "put at least one value in the list")
            for j, item in enumerate(value):
                if not isinstance(item, str) or not item.strip():
                    raise problem(f"{{where}}: value {j + 1} must be a non-empty text, got {item!r}",
                                  f"quote it: \"{item}\"" if item is not None else "remove the empty item", at=(j,))
            return tuple(value)
        if value is None or (isinstance(value, str) and not value.strip()):
            raise problem(f"{{where}}: '{op}' has no value",
                          f"add 'value: ...' (the text to compare {info.data.get('field') or 'the field'} to)")
        if isinstance(value, (list, tuple)):
            alt = "is_one_of" if op in ("is_equal_to", "contains") else "is_not_one_of"
            raise problem(f"{{where}}: '{op}' takes one value, got a list", f"use operator '{alt}' for a list of values")
        if not isinstance(value, str):
            raise problem(f"{{where}}: value must be a text, got a {kind_of(value)} ({value!r})",
                          f"quote it: value: \"{value}\"")
        return value


class Conditions(BaseModel):
    model_config = _FROZEN
    match: Literal["all", "any"] = "all"
    rules: tuple[Rule, ...] = Field(default=(), max_length=MAX_CONDITIONS)

    @model_validator(mode="before")
    @classmethod
    def _rules_given(cls, data, info: ValidationInfo):
        if _yaml_context(info) and isinstance(data, dict) and data.get("rules") is None:
            raise problem("the conditions have no 'rules'",
                          "add 'rules:' with a list like '- {field: source, operator: is_equal_to, value: user}', "
                          "or remove 'conditions' to fire on every event", line="node")
        return data


class Trigger(BaseModel):
    model_config = _FROZEN
    type: TriggerType
    conditions: Conditions = Conditions()

    @field_validator("conditions", mode="before")
    @classmethod
    def _no_conditions(cls, value):
        return Conditions() if value is None else value

    @model_validator(mode="after")
    def _sources_occur_on_the_trigger(self):
        allowed = ALLOWED_SOURCES[self.type]
        for i, rule in enumerate(self.conditions.rules):
            if rule.field != "source" or rule.operator in (*NO_VALUE_OPERATORS, "contains", "does_not_contain"):
                continue
            for v in (rule.value,) if isinstance(rule.value, str) else rule.value:
                if v.strip().lower() not in allowed:
                    raise problem(f"rule {i + 1}: source '{v}' never occurs on {self.type}{did_you_mean(v, allowed)}",
                                  f"use one of {', '.join(allowed)}", at=("conditions", "rules", i, "value"))
        return self


class WorkflowSettings(BaseModel):
    model_config = _FROZEN
    trigger_once_per_contact: StrictBool = False


class AssignStep(BaseModel):
    model_config = _FROZEN
    id: str
    type: Literal["assign_to"]
    action: AssignAction
    user_id: str | None = Field(default=None, validate_default=True)
    team_id: str | None = None  # round_robin / least_open_contacts: None = whole workspace
    max_open_contacts: int | None = None

    @field_validator("id", mode="before")
    @classmethod
    def _step_id(cls, value):
        return _identifier(value, "id")

    @field_validator("user_id", "team_id", "max_open_contacts", mode="before")
    @classmethod
    def _option_fits_the_action(cls, value, info: ValidationInfo):
        key, action = info.field_name, info.data.get("action")
        if action is None:
            return value
        takes = STEP_OPTIONS[action]
        if value is not None and key not in takes:
            raise problem(f"'{key}' does not apply to action '{action}' in {{where}}",
                          f"remove '{key}'" + (f" (action '{action}' takes {', '.join(takes)})" if takes else ""))
        if key == "user_id" and action == "user" and value is None:
            raise problem("{where} has no 'user_id'", "add 'user_id: ...' to {where}", line="node")
        if value is None:
            return None
        if key == "max_open_contacts":
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise problem(f"'max_open_contacts' must be a whole number of at least 1, got {value!r}",
                              "write e.g. 'max_open_contacts: 20', or remove it for no cap")
            return value
        return _text(value, key)


class Workflow(BaseModel):
    model_config = _FROZEN
    id: str
    name: str
    enabled: StrictBool
    description: str | None = None
    trigger: Trigger
    settings: WorkflowSettings = WorkflowSettings()
    steps: tuple[AssignStep, ...] = Field(min_length=1)
    # Where it was read from (not part of the definition, not in the version hash).
    source_file: str | None = None
    source_line: int | None = None

    @field_validator("id", mode="before")
    @classmethod
    def _workflow_id(cls, value):
        return _identifier(value, "id")

    @field_validator("name", mode="before")
    @classmethod
    def _name(cls, value):
        return _text(value, "name")

    @field_validator("description", mode="before")
    @classmethod
    def _description(cls, value):
        return None if value is None else _text(value, "description")

    @field_validator("settings", mode="before")
    @classmethod
    def _no_settings(cls, value):
        return WorkflowSettings() if value is None else value

    @model_validator(mode="after")
    def _step_ids_unique(self):
        first: dict[str, int] = {}
        for i, step in enumerate(self.steps):
            if step.id in first:
                raise problem(f"step id '{step.id}' is used twice (first on line {{first_line}})",
                              "give each step its own id", at=("steps", i, "id"), first_at=("steps", first[step.id], "id"))
            first[step.id] = i
        return self

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
