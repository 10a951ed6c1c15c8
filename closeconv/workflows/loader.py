"""Read workflow YAML files and validate them through the models, reporting every problem
with file, line and fix.

The rules live in one place, the pydantic models (closeconv.workflows.models); this module
reads the YAML with ruamel (which keeps line numbers), validates the plain data through the
models, and turns each pydantic error into ``FILE:LINE: problem. Fix: ...`` with the line of
the node the error points at and a "did you mean" hint for misspelled words.

Only the top level of a workflows folder is loaded (``*.yaml`` / ``*.yml``); the shipped
templates in ``templates/`` are not. Validation never stops at the first problem: a file
reports all of its problems, and a folder all of its files' problems, plus duplicate ids.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import MarkedYAMLError, YAMLError

from closeconv.errors import ConfigError
from closeconv.workflows.hints import did_you_mean
from closeconv.workflows.models import (
    ASSIGN_ACTIONS,
    CONDITION_FIELDS,
    MAX_CONDITIONS,
    OPERATORS,
    PROBLEM,
    STEP_TYPES,
    TRIGGER_TYPES,
    AssignStep,
    Conditions,
    Rule,
    Trigger,
    Workflow,
    WorkflowSettings,
    kind_of,
)

YAML_SUFFIXES = (".yaml", ".yml")
TEMPLATES_DIRNAME = "templates"

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



# --------------------------------------------------------------------------- YAML and lines


def _yaml() -> YAML:
    y = YAML(typ="rt")
    y.allow_duplicate_keys = False
    return y


def _node_line(node: Any) -> int:
    lc = getattr(node, "lc", None)
    return (lc.line + 1) if lc is not None and lc.line is not None else 1


def _walk(data: Any, loc: tuple) -> tuple[Any, int, bool]:
    """(deepest node on the way to ``loc``, the line of its key or item, whether it was reached)."""
    line, node = _node_line(data), data
    for part in loc:
        try:
            if isinstance(node, CommentedMap) and part in node:
                line, node = node.lc.key(part)[0] + 1, node[part]
                continue
            if isinstance(node, CommentedSeq) and isinstance(part, int) and 0 <= part < len(node):
                line, node = node.lc.item(part)[0] + 1, node[part]
                continue
        except (KeyError, IndexError, TypeError):
            pass
        return node, line, False
    return node, line, True


def yaml_line(data: Any, loc: tuple) -> int:
    """The 1-based line of the node at ``loc`` (keys and list indexes) in a round-trip tree:
    the line of the deepest key or item that exists on the way."""
    return _walk(data, loc)[1]


def line_in_file(path: Path, loc: tuple) -> int:
    try:
        return yaml_line(_yaml().load(Path(path).read_text(encoding="utf-8")), loc)
    except (OSError, YAMLError, UnicodeDecodeError):
        return 1


def _plain(node: Any) -> Any:
    """Round-trip YAML → plain Python (ruamel's booleans and numbers are int subclasses)."""
    if isinstance(node, CommentedMap):
        return {k: _plain(v) for k, v in node.items()}
    if isinstance(node, CommentedSeq):
        return [_plain(v) for v in node]
    if type(node).__name__ == "ScalarBoolean" or isinstance(node, bool):
        return bool(node)
    if isinstance(node, int):
        return int(node)
    if isinstance(node, float):
        return float(node)
    if isinstance(node, str):
        return str(node)
    return node


# --------------------------------------------------------------------------- pydantic errors → problems

# The model at each place of a definition (list indexes as "*").
_MODELS: dict[tuple, type[BaseModel]] = {
    (): Workflow,
    ("trigger",): Trigger,
    ("trigger", "conditions"): Conditions,
    ("trigger", "conditions", "rules", "*"): Rule,
    ("settings",): WorkflowSettings,
    ("steps", "*"): AssignStep,
}
_NOT_IN_YAML = ("source_file", "source_line")
_EXAMPLE_STEP = "- {id: unassign, type: assign_to, action: unassign}"
_EXAMPLE_RULE = "- {field: source, operator: is_equal_to, value: user}"


def _shape(loc: tuple) -> tuple:
    return tuple("*" if isinstance(p, int) else p for p in loc)


def _keys(model_loc: tuple) -> tuple[str, ...]:
    return tuple(k for k in _MODELS[_shape(model_loc)].model_fields if k not in _NOT_IN_YAML)


def _where(model_loc: tuple) -> str:
    shape = _shape(model_loc)
    if shape == ("trigger", "conditions", "rules", "*"):
        return f"rule {model_loc[-1] + 1}"
    if shape == ("steps", "*"):
        return f"step {model_loc[-1] + 1}"
    return {(): "the workflow", ("trigger",): "the trigger", ("trigger", "conditions"): "the conditions",
            ("settings",): "the settings"}.get(shape, ".".join(str(p) for p in model_loc))


def _model_loc(loc: tuple) -> tuple:
    """The location of the model an error belongs to (the error's own, or its field's parent)."""
    return loc if _shape(loc) in _MODELS else loc[:-1]


def _missing(parent: tuple, key: str) -> tuple[str, str]:
    where = _where(parent)
    special = {
        ((), "enabled"): ("the workflow has no 'enabled' flag",
                          "add 'enabled: true' to run it, or 'enabled: false' to keep it as a draft"),
        ((), "trigger"): ("the workflow has no 'trigger'", "add 'trigger: {type: conversation.closed}'"),
        ((), "steps"): ("the workflow has no 'steps'", f"add 'steps:' with '{_EXAMPLE_STEP}'"),
        (("trigger",), "type"): ("the trigger has no 'type'", f"add 'type:' with one of {', '.join(TRIGGER_TYPES)}"),
        (("trigger", "conditions", "rules", "*"), "field"): (None, f"add 'field:' with one of {', '.join(CONDITION_FIELDS)}"),
        (("trigger", "conditions", "rules", "*"), "operator"): (None, f"add 'operator:' with one of {', '.join(OPERATORS)}"),
        (("steps", "*"), "type"): (None, "add 'type: assign_to'"),
        (("steps", "*"), "action"): (None, f"add 'action:' with one of {', '.join(ASSIGN_ACTIONS)}"),
    }.get((_shape(parent), key), (None, f"add '{key}: ...' to {where}"))
    return special[0] or f"{where} has no '{key}'", special[1]


def _unknown_word(parent: tuple, key: str, value: Any) -> tuple[str, str]:
    where, shape = _where(parent), _shape(parent)
    if shape == ("trigger",):
        return f"unknown trigger '{value}'{did_you_mean(value, TRIGGER_TYPES)}", f"use one of {', '.join(TRIGGER_TYPES)}"
    if shape == ("trigger", "conditions"):
        return (f"'match' must be 'all' (AND) or 'any' (OR), got {value!r}{did_you_mean(value, ('all', 'any'))}",
                "write 'match: all' or 'match: any'")
    if key == "field":
        return (f"unknown field '{value}' in {where}{did_you_mean(value, CONDITION_FIELDS)}",
                f"use one of {', '.join(CONDITION_FIELDS)}")
    if key == "operator":
        return f"unknown operator '{value}' in {where}{did_you_mean(value, OPERATORS)}", f"use one of {', '.join(OPERATORS)}"
    if key == "type":
        return (f"unknown step type '{value}' in {where}{did_you_mean(value, STEP_TYPES)}",
                f"use one of {', '.join(STEP_TYPES)} (other platform steps cannot be replayed from events)")
    return (f"unknown assign_to action '{value}' in {where}{did_you_mean(value, ASSIGN_ACTIONS)}",
            f"use one of {', '.join(ASSIGN_ACTIONS)}")


def _not_a_mapping(loc: tuple, value: Any) -> tuple[str, str]:
    kind, shape = kind_of(value), _shape(loc)
    return {
        ("trigger",): (f"'trigger' must be a mapping with 'type' (and optional 'conditions'), got a {kind}",
                       "write 'trigger:' then an indented 'type: conversation.closed'"),
        ("trigger", "conditions"): (f"'conditions' must be a mapping with 'match' and 'rules', got a {kind}",
                                    "write 'conditions:' then indented 'match: all' and 'rules:' with a list of rules"),
        ("settings",): (f"'settings' must be a mapping, got a {kind}",
                        "write 'settings:' then an indented 'trigger_once_per_contact: false'"),
        ("steps", "*"): (f"{_where(loc)} must be a mapping, got a {kind}", f"write '{_EXAMPLE_STEP}'"),
    }.get(shape, (f"{_where(loc)} must be a mapping with field, operator and value, got a {kind}",
                  f"write '{_EXAMPLE_RULE}'"))


def _problem(file: str, data: CommentedMap, err: dict) -> Problem:
    loc, kind, value = tuple(err["loc"]), err["type"], err.get("input")
    key = loc[-1] if loc else None
    parent = loc[:-1]
    line = yaml_line(data, loc)
    if kind == PROBLEM:
        ctx, model_loc = err["ctx"], _model_loc(loc)
        where = _where(model_loc)
        if ctx.get("line") == "node":
            line = _node_line(_walk(data, model_loc)[0])
        else:
            line = yaml_line(data, loc + tuple(ctx.get("at", ())))
        message = ctx["message"].replace("{where}", where)
        if "first_at" in ctx:
            message = message.replace("{first_line}", str(yaml_line(data, tuple(ctx["first_at"]))))
        return Problem(file, line, message, ctx["fix"].replace("{where}", where))
    if kind == "extra_forbidden":
        if "online" in str(key).lower():
            return Problem(file, line, ONLINE_MESSAGE.format(key=key), f"remove '{key}'")
        allowed = _keys(parent)
        return Problem(file, line, f"unknown key '{key}' in {_where(parent)}{did_you_mean(key, allowed)}",
                       f"use only {', '.join(allowed)}")
    if kind == "missing":
        message, fix = _missing(parent, str(key))
        return Problem(file, _node_line(_walk(data, parent)[0]), message, fix)
    if kind == "literal_error":
        return Problem(file, line, *_unknown_word(parent, str(key), value))
    if kind == "bool_type":
        return Problem(file, line, f"'{key}' must be true or false, got {value!r}",
                       f"write '{key}: true' or '{key}: false'")
    if kind in ("model_type", "model_attributes_type", "dict_type"):
        return Problem(file, line, *_not_a_mapping(loc, value))
    if key == "steps" and kind in ("tuple_type", "too_short"):
        return Problem(file, line, "'steps' must be a non-empty list", f"add '{_EXAMPLE_STEP}' under 'steps:'")
    if key == "rules" and kind == "tuple_type":
        return Problem(file, line, f"'rules' must be a list, got a {kind_of(value)}",
                       "write each rule on its own line starting with '- '")
    if key == "rules" and kind == "too_long":
        return Problem(file, yaml_line(data, (*loc, MAX_CONDITIONS)),
                       f"{err['ctx']['actual_length']} conditions, more than the {MAX_CONDITIONS} allowed",
                       f"keep at most {MAX_CONDITIONS} rules (combine values with is_one_of)")
    return Problem(file, line, f"{'.'.join(str(p) for p in loc)}: {err['msg']}", "correct this value")


# --------------------------------------------------------------------------- parsing


def parse_workflow_text(text: str, file: str = "<text>") -> tuple[Workflow | None, list[Problem]]:
    """Parse one workflow definition. Returns the workflow (None if invalid) and the problems."""
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
        return None, [Problem(file, line, f"invalid YAML: {problem}", fix)]
    except YAMLError as exc:  # pragma: no cover - unmarked errors are rare
        return None, [Problem(file, 1, f"invalid YAML: {exc}", "correct the YAML syntax")]

    if data is None:
        return None, [Problem(file, 1, "the file is empty", "write a workflow (see workflows/templates/) or delete the file")]
    if not isinstance(data, CommentedMap):
        return None, [Problem(file, _node_line(data),
                              f"a workflow must be a mapping of keys (id, name, ...), got a {kind_of(_plain(data))}",
                              "start from a template: closeconv workflows new --template unassign-after-close")]
    plain = _plain(data)
    problems = []
    for key in _NOT_IN_YAML:  # fields the loader fills, never the file
        if key in plain:
            del plain[key]
            problems.append(_problem(file, data, {"loc": (key,), "type": "extra_forbidden", "input": None, "msg": ""}))
    try:
        workflow = Workflow.model_validate(plain, context={"yaml": True})
    except ValidationError as exc:
        errors = exc.errors()
        # A list whose items failed is also "too short" to pydantic: the item errors say it.
        items_failed = {tuple(e["loc"][:1]) for e in errors if len(e["loc"]) > 1 and isinstance(e["loc"][1], int)}
        problems += [_problem(file, data, err) for err in errors
                     if not (err["type"] == "too_short" and tuple(err["loc"]) in items_failed)]
        return None, sorted(set(problems))
    if problems:
        return None, sorted(problems)
    return workflow.model_copy(update={"source_file": file, "source_line": 1}), []


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
        return yaml_line(data, ("id",))
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
