"""Read and validate workflow YAML files, reporting every problem with file, line and fix.

Only the top level of a workflows folder is loaded (``*.yaml`` / ``*.yml``); the shipped
templates in ``templates/`` are not. Validation never stops at the first problem: a file
reports all of its problems, and a folder all of its files' problems, plus duplicate ids.
"""

from __future__ import annotations

import difflib
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import MarkedYAMLError, YAMLError

from closeconv.config import ConfigError
from closeconv.contract import ALLOWED_SOURCES
from closeconv.workflows.models import (
    ASSIGN_ACTIONS,
    CONDITION_FIELDS,
    LIST_OPERATORS,
    MATCH_MODES,
    MAX_CONDITIONS,
    NO_VALUE_OPERATORS,
    OPERATORS,
    STEP_TYPES,
    STRATEGY_ACTIONS,
    TRIGGER_TYPES,
    Workflow,
)

YAML_SUFFIXES = (".yaml", ".yml")
TEMPLATES_DIRNAME = "templates"

_TOP_KEYS = ("id", "name", "description", "enabled", "trigger", "settings", "steps")
_TRIGGER_KEYS = ("type", "conditions")
_CONDITIONS_KEYS = ("match", "rules")
_RULE_KEYS = ("field", "operator", "value")
_SETTINGS_KEYS = ("trigger_once_per_contact",)
_STEP_KEYS = ("id", "type", "action", "user_id", "team_id", "max_open_contacts")
_ID_CHARS = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.")

ONLINE_MESSAGE = (
    "'{key}' is not supported: the event data has no online-presence information, so a replay "
    "could not tell who was online and would silently assign differently from the platform"
)


@dataclass(frozen=True, order=True)
class Problem:
    """One validation problem. ``str(problem)`` is ``FILE:LINE: problem. Fix: ...``."""

    file: str
    line: int
    message: str
    fix: str

    def __str__(self) -> str:
        msg = self.message.rstrip(".")
        fix = self.fix.rstrip(".")
        return f"{self.file}:{self.line}: {msg}. Fix: {fix}."


class WorkflowValidationError(ConfigError):
    """The workflows folder has problems; the message lists every one as FILE:LINE: ... Fix: ..."""

    def __init__(self, problems: list[Problem], folder: Path | str | None = None):
        self.problems = sorted(problems)
        where = f" in {folder}" if folder is not None else ""
        head = f"{len(self.problems)} problem(s) with the workflow definitions{where}; nothing was replayed:"
        super().__init__("\n".join([head, *(f"  {p}" for p in self.problems)]))


# --------------------------------------------------------------------------- helpers


def _yaml() -> YAML:
    y = YAML(typ="rt")
    y.allow_duplicate_keys = False
    return y


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool) or type(value).__name__ == "ScalarBoolean":
        return "boolean"
    if isinstance(value, int):
        return "number"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "text"
    if isinstance(value, dict):
        return "mapping"
    if isinstance(value, list):
        return "list"
    return type(value).__name__


_SYNONYMS = {
    "equals": "is_equal_to", "equal": "is_equal_to", "eq": "is_equal_to", "==": "is_equal_to", "=": "is_equal_to",
    "is": "is_equal_to", "not_equals": "is_not_equal_to", "ne": "is_not_equal_to", "!=": "is_not_equal_to",
    "is_not": "is_not_equal_to", "in": "is_one_of", "one_of": "is_one_of", "not_in": "is_not_one_of",
    "has": "contains", "includes": "contains", "not_contains": "does_not_contain", "exists": "is_present",
    "present": "is_present", "is_set": "is_present", "missing": "is_not_present", "is_empty": "is_not_present",
    "not_present": "is_not_present", "and": "all", "or": "any", "every": "all", "assignee": "assignee_id",
    "user": "user_id", "team": "team_id", "channel": "channel_id", "agent": "user",
}


def _suggest(word: Any, choices: tuple[str, ...] | list[str]) -> str:
    text = str(word)
    norm = text.strip().lower().replace(" ", "_").replace("-", "_")
    if _SYNONYMS.get(norm) in choices:
        return f" (did you mean '{_SYNONYMS[norm]}'?)"
    for c in choices:
        if c.lower() == norm or c.lower().replace(".", "_") == norm:
            return f" (did you mean '{c}'?)"
    close = difflib.get_close_matches(norm, list(choices), n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


def _one_of(choices: tuple[str, ...] | list[str]) -> str:
    return ", ".join(choices)


class _Checker:
    """Walks the round-trip YAML tree of one file and collects problems with lines."""

    def __init__(self, file: str):
        self.file = file
        self.problems: list[Problem] = []

    def add(self, line: int, message: str, fix: str) -> None:
        self.problems.append(Problem(self.file, line, message, fix))

    # line numbers (1-based)
    @staticmethod
    def key_line(node: CommentedMap, key: str) -> int:
        try:
            return node.lc.key(key)[0] + 1
        except Exception:
            return _Checker.node_line(node)

    @staticmethod
    def value_line(node: CommentedMap, key: str) -> int:
        val = node.get(key)
        if isinstance(val, (CommentedMap, CommentedSeq)):
            return val.lc.line + 1
        return _Checker.key_line(node, key)

    @staticmethod
    def item_line(seq: CommentedSeq, index: int) -> int:
        try:
            return seq.lc.item(index)[0] + 1
        except Exception:
            return _Checker.node_line(seq)

    @staticmethod
    def node_line(node: Any) -> int:
        lc = getattr(node, "lc", None)
        return (lc.line + 1) if lc is not None and lc.line is not None else 1

    def unknown_keys(self, node: CommentedMap, allowed: tuple[str, ...], where: str) -> None:
        for key in node:
            if key in allowed:
                continue
            line = self.key_line(node, key)
            if isinstance(key, str) and "online" in key.lower():
                self.add(line, ONLINE_MESSAGE.format(key=key), f"remove '{key}'")
                continue
            self.add(
                line,
                f"unknown key '{key}' in {where}{_suggest(key, allowed)}",
                f"use only {_one_of(allowed)}",
            )

    def text(self, node: CommentedMap, key: str, where: str, *, required: bool, ident: bool = False) -> str | None:
        if key not in node:
            if required:
                self.add(self.node_line(node), f"{where} has no '{key}'", f"add '{key}: ...' to {where}")
            return None
        value = node[key]
        line = self.key_line(node, key)
        if _kind(value) != "text" or not str(value).strip():
            got = "nothing" if value is None else f"a {_kind(value)} ({value!r})" if _kind(value) != "text" else "an empty text"
            self.add(line, f"'{key}' of {where} must be a non-empty text, got {got}", f"write '{key}: \"...\"' with quotes")
            return None
        text = str(value)
        if ident:
            bad = sorted(set(text) - _ID_CHARS)
            if bad or len(text) > 64:
                self.add(
                    line,
                    f"'{key}' {text!r} of {where} is not a valid id",
                    "use at most 64 letters, digits, '-', '_' or '.' (no spaces)",
                )
                return None
        return text


def yaml_line(data: Any, loc: tuple) -> int:
    """The 1-based line of the node at ``loc`` (keys and list indexes) in a round-trip tree:
    the line of the deepest key or item that exists on the way."""
    line, node = _Checker.node_line(data), data
    for part in loc:
        if isinstance(node, CommentedMap) and part in node:
            line, node = _Checker.key_line(node, part), node[part]
        elif isinstance(node, CommentedSeq) and isinstance(part, int) and 0 <= part < len(node):
            line, node = _Checker.item_line(node, part), node[part]
        else:
            break
    return line


def line_in_file(path: Path, loc: tuple) -> int:
    try:
        return yaml_line(_yaml().load(Path(path).read_text(encoding="utf-8")), loc)
    except (OSError, YAMLError, UnicodeDecodeError):
        return 1


# --------------------------------------------------------------------------- parsing


def parse_workflow_text(text: str, file: str = "<text>") -> tuple[Workflow | None, list[Problem]]:
    """Parse one workflow definition. Returns the workflow (None if invalid) and the problems."""
    checker = _Checker(file)
    try:
        data = _yaml().load(io.StringIO(text))
    except MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else 1
        problem = (exc.problem or exc.context or "invalid YAML").strip()
        ctx = exc.context_mark
        if exc.context and ctx is not None and mark is not None and ctx.line != mark.line:
            problem += f" ({exc.context.strip()} that starts on line {ctx.line + 1})"
        if "duplicate key" in problem:
            fix = "keep only one occurrence of that key"
        else:
            fix = "correct the YAML syntax (indentation, ':' after keys, closing brackets and quotes)"
        checker.add(line, f"invalid YAML: {problem}", fix)
        return None, checker.problems
    except YAMLError as exc:  # pragma: no cover - unmarked errors are rare
        checker.add(1, f"invalid YAML: {exc}", "correct the YAML syntax")
        return None, checker.problems

    if data is None:
        checker.add(1, "the file is empty", "write a workflow (see workflows/templates/) or delete the file")
        return None, checker.problems
    if not isinstance(data, CommentedMap):
        checker.add(
            checker.node_line(data),
            f"a workflow must be a mapping of keys (id, name, ...), got a {_kind(data)}",
            "start from a template: closeconv workflows new --template unassign-after-close",
        )
        return None, checker.problems

    checker.unknown_keys(data, _TOP_KEYS, "the workflow")
    wf_id = checker.text(data, "id", "the workflow", required=True, ident=True)
    name = checker.text(data, "name", "the workflow", required=True)
    description = None
    if "description" in data and data["description"] is not None:
        description = checker.text(data, "description", "the workflow", required=False)

    enabled = None
    if "enabled" not in data:
        checker.add(
            checker.node_line(data),
            "the workflow has no 'enabled' flag",
            "add 'enabled: true' to run it, or 'enabled: false' to keep it as a draft",
        )
    elif _kind(data["enabled"]) != "boolean":
        checker.add(
            checker.key_line(data, "enabled"),
            f"'enabled' must be true or false, got {data['enabled']!r}",
            "write 'enabled: true' or 'enabled: false'",
        )
    else:
        enabled = bool(data["enabled"])

    trigger = _check_trigger(checker, data)
    settings = _check_settings(checker, data)
    steps = _check_steps(checker, data)

    if checker.problems:
        return None, checker.problems
    payload = {
        "id": wf_id,
        "name": name,
        "enabled": enabled,
        "description": description,
        "trigger": trigger,
        "settings": settings,
        "steps": steps,
        "source_file": file,
        "source_line": 1,
    }
    try:
        return Workflow.model_validate(payload), []
    except ValidationError as exc:  # defensive: the checks above should catch everything
        for err in exc.errors():
            checker.add(1, f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}", "correct this value")
        return None, checker.problems


def _check_trigger(ck: _Checker, data: CommentedMap) -> dict | None:
    if "trigger" not in data:
        ck.add(ck.node_line(data), "the workflow has no 'trigger'", "add 'trigger: {type: conversation.closed}'")
        return None
    node = data["trigger"]
    if not isinstance(node, CommentedMap):
        ck.add(
            ck.key_line(data, "trigger"),
            f"'trigger' must be a mapping with 'type' (and optional 'conditions'), got a {_kind(node)}",
            "write 'trigger:' then an indented 'type: conversation.closed'",
        )
        return None
    ck.unknown_keys(node, _TRIGGER_KEYS, "the trigger")
    ttype = None
    if "type" not in node:
        ck.add(ck.node_line(node), "the trigger has no 'type'", f"add 'type:' with one of {_one_of(TRIGGER_TYPES)}")
    elif node["type"] not in TRIGGER_TYPES:
        ck.add(
            ck.key_line(node, "type"),
            f"unknown trigger '{node['type']}'{_suggest(node['type'], TRIGGER_TYPES)}",
            f"use one of {_one_of(TRIGGER_TYPES)}",
        )
    else:
        ttype = str(node["type"])

    conditions: dict = {"match": "all", "rules": []}
    ok = True
    if "conditions" in node and node["conditions"] is not None:
        cnode = node["conditions"]
        if not isinstance(cnode, CommentedMap):
            ck.add(
                ck.key_line(node, "conditions"),
                f"'conditions' must be a mapping with 'match' and 'rules', got a {_kind(cnode)}",
                "write 'conditions:' then indented 'match: all' and 'rules:' with a list of rules",
            )
            ok = False
        else:
            ck.unknown_keys(cnode, _CONDITIONS_KEYS, "the conditions")
            if "match" in cnode:
                if cnode["match"] not in MATCH_MODES:
                    ck.add(
                        ck.key_line(cnode, "match"),
                        f"'match' must be 'all' (AND) or 'any' (OR), got {cnode['match']!r}"
                        + _suggest(cnode["match"], MATCH_MODES),
                        "write 'match: all' or 'match: any'",
                    )
                    ok = False
                else:
                    conditions["match"] = str(cnode["match"])
            rules = cnode.get("rules")
            if "rules" not in cnode or rules is None:
                ck.add(
                    ck.node_line(cnode),
                    "the conditions have no 'rules'",
                    "add 'rules:' with a list like '- {field: source, operator: is_equal_to, value: user}', "
                    "or remove 'conditions' to fire on every event",
                )
                ok = False
            elif not isinstance(rules, CommentedSeq):
                ck.add(
                    ck.key_line(cnode, "rules"),
                    f"'rules' must be a list, got a {_kind(rules)}",
                    "write each rule on its own line starting with '- '",
                )
                ok = False
            else:
                if len(rules) > MAX_CONDITIONS:
                    ck.add(
                        ck.item_line(rules, MAX_CONDITIONS),
                        f"{len(rules)} conditions, more than the {MAX_CONDITIONS} allowed",
                        f"keep at most {MAX_CONDITIONS} rules (combine values with is_one_of)",
                    )
                    ok = False
                for i, rule in enumerate(rules):
                    parsed = _check_rule(ck, rules, i, rule, ttype)
                    if parsed is None:
                        ok = False
                    else:
                        conditions["rules"].append(parsed)
    if ttype is None or not ok:
        return None
    return {"type": ttype, "conditions": conditions}


def _check_rule(ck: _Checker, rules: CommentedSeq, i: int, rule: Any, ttype: str | None) -> dict | None:
    where = f"rule {i + 1}"
    line = ck.item_line(rules, i)
    if not isinstance(rule, CommentedMap):
        ck.add(
            line,
            f"{where} must be a mapping with field, operator and value, got a {_kind(rule)}",
            "write '- {field: source, operator: is_equal_to, value: user}'",
        )
        return None
    line = ck.node_line(rule)
    ok = True
    ck.unknown_keys(rule, _RULE_KEYS, where)
    if any(k not in _RULE_KEYS for k in rule):
        ok = False
    field = rule.get("field")
    if "field" not in rule:
        ck.add(line, f"{where} has no 'field'", f"add 'field:' with one of {_one_of(CONDITION_FIELDS)}")
        ok = False
    elif field not in CONDITION_FIELDS:
        ck.add(
            ck.key_line(rule, "field"),
            f"unknown field '{field}' in {where}{_suggest(field, CONDITION_FIELDS)}",
            f"use one of {_one_of(CONDITION_FIELDS)}",
        )
        ok = False
    op = rule.get("operator")
    if "operator" not in rule:
        ck.add(line, f"{where} has no 'operator'", f"add 'operator:' with one of {_one_of(OPERATORS)}")
        return None
    if op not in OPERATORS:
        ck.add(
            ck.key_line(rule, "operator"),
            f"unknown operator '{op}' in {where}{_suggest(op, OPERATORS)}",
            f"use one of {_one_of(OPERATORS)}",
        )
        return None

    vline = ck.key_line(rule, "value") if "value" in rule else line
    value: Any = rule.get("value")
    if op in NO_VALUE_OPERATORS:
        if "value" in rule:
            ck.add(vline, f"{where}: '{op}' takes no value", "remove 'value' from this rule")
            return None
        parsed_value = None
    elif op in LIST_OPERATORS:
        if value is None:
            ck.add(vline, f"{where}: '{op}' has no value", "add 'value: [a, b]' with the values to compare to")
            return None
        if not isinstance(value, CommentedSeq):
            ck.add(
                vline,
                f"{where}: '{op}' needs a list of values, got a {_kind(value)} ({value!r})",
                f"write 'value: [{value}]', or use {'is_equal_to' if op == 'is_one_of' else 'is_not_equal_to'} for one value",
            )
            return None
        if len(value) == 0:
            ck.add(vline, f"{where}: '{op}' has an empty list of values", "put at least one value in the list")
            return None
        items = []
        for j, item in enumerate(value):
            if _kind(item) != "text" or not str(item).strip():
                ck.add(
                    ck.item_line(value, j) if isinstance(value, CommentedSeq) else vline,
                    f"{where}: value {j + 1} must be a non-empty text, got {item!r}",
                    f"quote it: \"{item}\"" if item is not None else "remove the empty item",
                )
                ok = False
            else:
                items.append(str(item))
        if not ok:
            return None
        parsed_value = tuple(items)
    else:
        if "value" not in rule or value is None or (isinstance(value, str) and not value.strip()):
            ck.add(vline, f"{where}: '{op}' has no value", f"add 'value: ...' (the text to compare {field or 'the field'} to)")
            return None
        if isinstance(value, CommentedSeq):
            alt = "is_one_of" if op in ("is_equal_to", "contains") else "is_not_one_of"
            ck.add(vline, f"{where}: '{op}' takes one value, got a list", f"use operator '{alt}' for a list of values")
            return None
        if _kind(value) != "text":
            ck.add(
                vline,
                f"{where}: value must be a text, got a {_kind(value)} ({value!r})",
                f"quote it: value: \"{value}\"",
            )
            return None
        parsed_value = str(value)

    if ok and field == "source" and ttype in ALLOWED_SOURCES and op not in NO_VALUE_OPERATORS and op not in (
        "contains",
        "does_not_contain",
    ):
        allowed = ALLOWED_SOURCES[ttype]
        values = parsed_value if isinstance(parsed_value, tuple) else (parsed_value,)
        for v in values:
            if v.strip().lower() not in allowed:
                ck.add(
                    vline,
                    f"{where}: source '{v}' never occurs on {ttype}{_suggest(v, allowed)}",
                    f"use one of {_one_of(allowed)}",
                )
                ok = False
    if not ok:
        return None
    return {"field": field, "operator": op, "value": parsed_value}


def _check_settings(ck: _Checker, data: CommentedMap) -> dict | None:
    if "settings" not in data or data["settings"] is None:
        return {}
    node = data["settings"]
    if not isinstance(node, CommentedMap):
        ck.add(
            ck.key_line(data, "settings"),
            f"'settings' must be a mapping, got a {_kind(node)}",
            "write 'settings:' then an indented 'trigger_once_per_contact: false'",
        )
        return None
    ck.unknown_keys(node, _SETTINGS_KEYS, "the settings")
    out: dict = {}
    if "trigger_once_per_contact" in node:
        v = node["trigger_once_per_contact"]
        if _kind(v) != "boolean":
            ck.add(
                ck.key_line(node, "trigger_once_per_contact"),
                f"'trigger_once_per_contact' must be true or false, got {v!r}",
                "write 'trigger_once_per_contact: true' or 'false'",
            )
            return None
        out["trigger_once_per_contact"] = bool(v)
    return out


def _check_steps(ck: _Checker, data: CommentedMap) -> list | None:
    if "steps" not in data:
        ck.add(ck.node_line(data), "the workflow has no 'steps'", "add 'steps:' with '- {id: unassign, type: assign_to, action: unassign}'")
        return None
    steps = data["steps"]
    if not isinstance(steps, CommentedSeq) or len(steps) == 0:
        ck.add(
            ck.key_line(data, "steps"),
            "'steps' must be a non-empty list",
            "add '- {id: unassign, type: assign_to, action: unassign}' under 'steps:'",
        )
        return None
    out = []
    seen: dict[str, int] = {}
    ok = True
    for i, step in enumerate(steps):
        where = f"step {i + 1}"
        line = ck.item_line(steps, i)
        if not isinstance(step, CommentedMap):
            ck.add(line, f"{where} must be a mapping, got a {_kind(step)}", "write '- {id: unassign, type: assign_to, action: unassign}'")
            ok = False
            continue
        line = ck.node_line(step)
        n_before = len(ck.problems)
        ck.unknown_keys(step, _STEP_KEYS, where)
        sid = ck.text(step, "id", where, required=True, ident=True)
        if sid is not None:
            if sid in seen:
                ck.add(ck.key_line(step, "id"), f"step id '{sid}' is used twice (first on line {seen[sid]})", "give each step its own id")
            else:
                seen[sid] = ck.key_line(step, "id")
        stype = step.get("type")
        if "type" not in step:
            ck.add(line, f"{where} has no 'type'", "add 'type: assign_to'")
        elif stype not in STEP_TYPES:
            ck.add(
                ck.key_line(step, "type"),
                f"unknown step type '{stype}' in {where}{_suggest(stype, STEP_TYPES)}",
                f"use one of {_one_of(STEP_TYPES)} (other platform steps cannot be replayed from events)",
            )
        action = step.get("action")
        if stype == "assign_to":
            if "action" not in step:
                ck.add(line, f"{where} has no 'action'", f"add 'action:' with one of {_one_of(ASSIGN_ACTIONS)}")
            elif action not in ASSIGN_ACTIONS:
                ck.add(
                    ck.key_line(step, "action"),
                    f"unknown assign_to action '{action}' in {where}{_suggest(action, ASSIGN_ACTIONS)}",
                    f"use one of {_one_of(ASSIGN_ACTIONS)}",
                )
            else:
                _check_step_options(ck, step, where, str(action))
        if len(ck.problems) > n_before:
            ok = False
            continue
        out.append({k: step[k] for k in _STEP_KEYS if k in step})
        if "max_open_contacts" in step:
            out[-1]["max_open_contacts"] = int(step["max_open_contacts"])
        for k in ("user_id", "team_id"):
            if k in out[-1]:
                out[-1][k] = str(out[-1][k])
    return out if ok else None


def _check_step_options(ck: _Checker, step: CommentedMap, where: str, action: str) -> None:
    allowed = {"unassign": (), "user": ("user_id",), "round_robin": ("team_id", "max_open_contacts"),
               "least_open_contacts": ("team_id", "max_open_contacts")}[action]
    for opt in ("user_id", "team_id", "max_open_contacts"):
        if opt in step and opt not in allowed:
            ck.add(
                ck.key_line(step, opt),
                f"'{opt}' does not apply to action '{action}' in {where}",
                f"remove '{opt}'" + (f" (action '{action}' takes {', '.join(allowed)})" if allowed else ""),
            )
    if action == "user":
        ck.text(step, "user_id", where, required=True)
    if action in STRATEGY_ACTIONS:
        if "team_id" in step:
            ck.text(step, "team_id", where, required=True)
        if "max_open_contacts" in step:
            v = step["max_open_contacts"]
            if _kind(v) != "number" or isinstance(v, float) or int(v) < 1:
                ck.add(
                    ck.key_line(step, "max_open_contacts"),
                    f"'max_open_contacts' must be a whole number of at least 1, got {v!r}",
                    "write e.g. 'max_open_contacts: 20', or remove it for no cap",
                )


# --------------------------------------------------------------------------- files and folders


def parse_workflow_file(path: Path) -> tuple[Workflow | None, list[Problem]]:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        return None, [Problem(str(path), 1, "the file is not UTF-8 text", "save it as UTF-8")]
    except OSError as exc:
        return None, [Problem(str(path), 1, f"cannot read the file: {exc.strerror}", "check the path and permissions")]
    return parse_workflow_text(text, str(path))


def workflow_files(folder: Path) -> list[Path]:
    """Top-level *.yaml / *.yml files of a workflows folder, sorted by name (templates/ excluded)."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    return sorted(
        p for p in folder.iterdir()
        if p.is_file() and p.suffix.lower() in YAML_SUFFIXES and not p.name.startswith(".")
    )


def check_files(files: list[Path]) -> tuple[list[Workflow], list[Problem]]:
    """Parse files and check ids are unique across them."""
    workflows: list[Workflow] = []
    problems: list[Problem] = []
    first_seen: dict[str, Workflow] = {}
    for path in files:
        wf, probs = parse_workflow_file(path)
        problems.extend(probs)
        if wf is None:
            continue
        if wf.id in first_seen:
            other = first_seen[wf.id]
            problems.append(
                Problem(
                    str(path),
                    _id_line(path),
                    f"duplicate workflow id '{wf.id}' (also used in {other.source_file}:{_id_line(Path(other.source_file or ''))})",
                    "give each workflow its own id",
                )
            )
            continue
        first_seen[wf.id] = wf
        workflows.append(wf)
    return workflows, sorted(problems)


def _id_line(path: Path) -> int:
    try:
        data = _yaml().load(path.read_text(encoding="utf-8"))
        return _Checker.key_line(data, "id")
    except Exception:
        return 1


def validate_folder(folder: Path) -> list[Problem]:
    """Every problem of the top-level workflow files in ``folder`` (empty list = valid)."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        return [Problem(str(folder), 1, "this is not a folder", "point to the workflows folder, e.g. workflows/")]
    return check_files(workflow_files(folder))[1]


def load_workflows(folder: Path) -> list[Workflow]:
    """The workflows of ``folder`` (top level only, sorted by id), enabled or not.

    A missing folder means no workflows. Raises :class:`WorkflowValidationError` listing
    every problem if any file is invalid: the pipeline never replays half a folder.
    """
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise WorkflowValidationError(validate_folder(folder), folder)
    workflows, problems = check_files(workflow_files(folder))
    if problems:
        raise WorkflowValidationError(problems, folder)
    return sorted(workflows, key=lambda w: w.id)


# --------------------------------------------------------------------------- templates


def shipped_templates_dir() -> Path:
    """`workflows/templates/` of the project checkout this package lives in."""
    return Path(__file__).resolve().parents[2] / "workflows" / TEMPLATES_DIRNAME


def template_dirs(workflows_dir: Path) -> list[Path]:
    dirs = [Path(workflows_dir) / TEMPLATES_DIRNAME, shipped_templates_dir()]
    out: list[Path] = []
    for d in dirs:
        if d.is_dir() and all(d.resolve() != o.resolve() for o in out):
            out.append(d)
    return out


def list_templates(workflows_dir: Path) -> list[tuple[Path, Workflow | None, list[Problem]]]:
    """Templates visible from ``workflows_dir`` (its templates/ first, then the shipped ones)."""
    seen: set[str] = set()
    out = []
    for d in template_dirs(workflows_dir):
        for path in workflow_files(d):
            if path.stem in seen:
                continue
            seen.add(path.stem)
            wf, probs = parse_workflow_file(path)
            out.append((path, wf, probs))
    return out


def find_template(name: str, workflows_dir: Path) -> Path | None:
    """A template by file stem, workflow id, or (case-insensitive) workflow name."""
    wanted = name.strip().lower()
    for path, wf, _ in list_templates(workflows_dir):
        keys = {path.stem.lower(), path.name.lower()}
        if wf is not None:
            keys |= {wf.id.lower(), wf.name.lower()}
        if wanted in keys:
            return path
    return None
