"""The validator: every problem reported with its file, line and a fix; templates; loading rules."""

from __future__ import annotations

from pathlib import Path

import pytest

from closeconv.config import ConfigError
from closeconv.workflows import WorkflowValidationError, load_workflows, parse_workflow_text, validate_folder
from closeconv.workflows.loader import list_templates

ROOT = Path(__file__).resolve().parents[1]

# The shipped template, exactly as in spec §6.
SPEC_TEMPLATE = """id: unassign-after-close
name: "Assignment: Unassign After Conversation Closes"
enabled: true
trigger:
  type: conversation.closed
  conditions:
    match: all            # all = AND, any = OR
    rules:
      - {field: source, operator: is_equal_to, value: user}
settings:
  trigger_once_per_contact: false
steps:
  - {id: unassign, type: assign_to, action: unassign}
"""

GOOD = """id: good
name: good
enabled: true
trigger:
  type: conversation.closed
  conditions:
    match: all
    rules:
      - {field: source, operator: is_equal_to, value: user}
steps:
  - {id: unassign, type: assign_to, action: unassign}
"""


def problems_of(text: str) -> list[tuple[int, str]]:
    wf, problems = parse_workflow_text(text, "f.yaml")
    assert wf is None
    return [(p.line, str(p)) for p in problems]


def test_shipped_template_is_the_spec_yaml_and_is_enabled_in_workflows():
    assert (ROOT / "workflows/templates/unassign-after-close.yaml").read_text() == SPEC_TEMPLATE
    wfs = load_workflows(ROOT / "workflows")
    assert [w.id for w in wfs] == ["unassign-after-close"]  # templates/ is not loaded
    assert wfs[0].enabled and wfs[0].name == "Assignment: Unassign After Conversation Closes"


def test_all_templates_are_valid():
    templates = list_templates(ROOT / "workflows")
    names = {p.stem for p, _, _ in templates}
    assert {"unassign-after-close", "round-robin-in-team", "least-open-contacts"} <= names
    for path, wf, problems in templates:
        assert wf is not None and not problems, (path, problems)
    loc = next(wf for p, wf, _ in templates if p.stem == "least-open-contacts")
    assert loc.steps[0].action == "least_open_contacts" and loc.steps[0].max_open_contacts == 20


def replace_line(text: str, old: str, new: str) -> str:
    assert old in text
    return text.replace(old, new)


@pytest.mark.parametrize(
    ("text", "line", "needles"),
    [
        (replace_line(GOOD, "type: conversation.closed", "type: conversation.close"), 5,
         ["unknown trigger 'conversation.close'", "did you mean 'conversation.closed'", "Fix: use one of conversation.closed"]),
        (replace_line(GOOD, "field: source,", "field: sorce,"), 9, ["unknown field 'sorce'", "did you mean 'source'"]),
        (replace_line(GOOD, "operator: is_equal_to", "operator: equals"), 9, ["unknown operator 'equals'", "is_equal_to"]),
        (replace_line(GOOD, "type: assign_to", "type: send_message"), 11, ["unknown step type 'send_message'", "assign_to"]),
        (replace_line(GOOD, "action: unassign", "action: unasign"), 11, ["unknown assign_to action 'unasign'", "did you mean 'unassign'"]),
        (replace_line(GOOD, ", value: user}", "}"), 9, ["'is_equal_to' has no value", "Fix: add 'value: ...'"]),
        (replace_line(GOOD, ", value: user}", ", value: }"), 9, ["has no value"]),
        (replace_line(GOOD, "operator: is_equal_to, value: user", "operator: is_one_of, value: user"), 9,
         ["needs a list of values", "value: [user]"]),
        (replace_line(GOOD, "operator: is_equal_to, value: user", "operator: is_present, value: user"), 9, ["takes no value"]),
        (replace_line(GOOD, "operator: is_equal_to, value: user", "operator: is_equal_to, value: [user, api]"), 9,
         ["takes one value", "is_one_of"]),
        (replace_line(GOOD, "value: user", "value: agent"), 9, ["source 'agent' never occurs on conversation.closed"]),
        (replace_line(GOOD, "field: source, operator: is_equal_to, value: user", "field: channel_id, operator: is_equal_to, value: 123"), 9,
         ["must be a text", 'quote it: value: "123"']),
        (replace_line(GOOD, "enabled: true", "enabled: yes"), 3, ["'enabled' must be true or false"]),
        (replace_line(GOOD, "enabled: true\n", ""), 1, ["no 'enabled' flag", "enabled: false"]),
        (replace_line(GOOD, "match: all", "match: every"), 7, ["'match' must be 'all' (AND) or 'any' (OR)"]),
        (GOOD + "priority: 3\n", 12, ["unknown key 'priority' in the workflow"]),
        (replace_line(GOOD, "id: good", "id: my workflow"), 1, ["not a valid id"]),
        (replace_line(GOOD, "action: unassign}", "action: round_robin, online_only: true}"), 11,
         ["'online_only' is not supported", "no online-presence information", "Fix: remove 'online_only'"]),
        (replace_line(GOOD, "action: unassign}", "action: user}"), 11, ["step 1 has no 'user_id'"]),
        (replace_line(GOOD, "action: unassign}", "action: least_open_contacts, max_open_contacts: 0}"), 11,
         ["'max_open_contacts' must be a whole number of at least 1"]),
        (replace_line(GOOD, "action: unassign}", "action: unassign, team_id: t1}"), 11, ["'team_id' does not apply to action 'unassign'"]),
        (GOOD + "  - {id: unassign, type: assign_to, action: unassign}\n", 12, ["step id 'unassign' is used twice (first on line 11)"]),
        (GOOD + "name: again\n", 12, ["invalid YAML", "duplicate key", "keep only one"]),
        ("id: x\nname: [unclosed\n", 3, ["invalid YAML"]),
        ("", 1, ["the file is empty"]),
        ("- just\n- a list\n", 1, ["must be a mapping"]),
    ],
)
def test_each_problem_has_its_line_and_a_fix(text, line, needles):
    problems = problems_of(text)
    assert problems, "expected a problem"
    matching = [(ln, msg) for ln, msg in problems if all(n in msg for n in needles)]
    assert matching, problems
    assert matching[0][0] == line, problems
    assert matching[0][1].startswith(f"f.yaml:{line}: ")
    assert ". Fix: " in matching[0][1]


def test_more_than_ten_conditions():
    rules = "".join("      - {field: source, operator: is_equal_to, value: user}\n" for _ in range(11))
    text = GOOD.replace("      - {field: source, operator: is_equal_to, value: user}\n", rules)
    problems = problems_of(text)
    assert problems == [(19, "f.yaml:19: 11 conditions, more than the 10 allowed. Fix: keep at most 10 rules (combine values with is_one_of).")]
    ten = GOOD.replace("      - {field: source, operator: is_equal_to, value: user}\n", rules.split("\n", 1)[1])
    assert parse_workflow_text(ten)[1] == []


def test_every_problem_of_a_file_is_reported():
    text = (
        GOOD.replace("type: conversation.closed", "type: closed")
        .replace("field: source,", "field: agent,")
        .replace("action: unassign", "action: close")
    ) + "extra: 1\n"
    lines = sorted(ln for ln, _ in problems_of(text))
    assert lines == [5, 9, 11, 12]


def test_folder_duplicate_ids_and_error_message(tmp_path):
    (tmp_path / "a.yaml").write_text(GOOD)
    (tmp_path / "b.yml").write_text("\n" + GOOD)  # same id, on line 2
    (tmp_path / "c.yaml").write_text(GOOD.replace("id: good", "id: other").replace("value: user", "value: agent"))
    (tmp_path / "notes.txt").write_text("ignored")
    (tmp_path / "templates").mkdir()
    (tmp_path / "templates" / "broken.yaml").write_text("not: [valid")  # templates are not loaded
    problems = validate_folder(tmp_path)
    assert [(Path(p.file).name, p.line) for p in problems] == [("b.yml", 2), ("c.yaml", 9)]
    assert "duplicate workflow id 'good'" in problems[0].message and "a.yaml:1" in problems[0].message

    with pytest.raises(WorkflowValidationError) as exc_info:
        load_workflows(tmp_path)
    err = exc_info.value
    assert isinstance(err, ConfigError)
    text = str(err)
    assert "2 problem(s)" in text
    assert f"{tmp_path / 'b.yml'}:2: duplicate workflow id 'good'" in text
    assert f"{tmp_path / 'c.yaml'}:9: rule 1: source 'agent' never occurs" in text
    assert text.count(". Fix: ") == 2


def test_missing_folder_means_no_workflows(tmp_path):
    assert load_workflows(tmp_path / "nope") == []
    assert validate_folder(tmp_path / "nope") == []


def test_parsed_model_values():
    wf, problems = parse_workflow_text(
        GOOD.replace(
            "      - {field: source, operator: is_equal_to, value: user}\n",
            "      - {field: category, operator: is_one_of, value: [Billing, Sales]}\n"
            "      - {field: summary, operator: is_not_present}\n",
        ).replace("match: all", "match: any")
    )
    assert not problems
    rules = wf.trigger.conditions.rules
    assert wf.trigger.conditions.match == "any"
    assert rules[0].value == ("Billing", "Sales") and rules[1].value is None
    assert wf.settings.trigger_once_per_contact is False


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        (GOOD.replace("  type: conversation.closed\n  conditions:\n    match: all\n    rules:\n"
                      "      - {field: source, operator: is_equal_to, value: user}\n", "  5\n").replace("trigger:\n  5", "trigger: 5"),
         4, "'trigger' must be a mapping with 'type' (and optional 'conditions'), got a number"),
        (GOOD.replace("    rules:\n      - {field: source, operator: is_equal_to, value: user}\n", "    rules:\n"), 7,
         "the conditions have no 'rules'"),
        (GOOD.replace("  - {id: unassign, type: assign_to, action: unassign}\n", "  - unassign\n"), 11,
         "step 1 must be a mapping, got a text"),
        (GOOD.replace("steps:\n  - {id: unassign, type: assign_to, action: unassign}\n", "steps: []\n"), 10,
         "'steps' must be a non-empty list"),
        (GOOD.replace("operator: is_equal_to, value: user", "operator: is_one_of, value: [user, 5]"), 9,
         "rule 1: value 2 must be a non-empty text, got 5"),
        (GOOD + "settings:\n  trigger_once_per_contact: yes\n", 13, "'trigger_once_per_contact' must be true or false"),
        (GOOD + "source_file: elsewhere.yaml\n", 12, "unknown key 'source_file' in the workflow"),
    ],
)
def test_shapes_of_values_are_reported_with_their_line(text, line, message):
    problems = problems_of(text)
    assert any(ln == line and message in msg for ln, msg in problems), problems


def test_the_models_hold_the_rules_the_validator_reports():
    """One statement of the rules: code that builds a workflow without YAML meets them too."""
    from pydantic import ValidationError

    from closeconv.workflows.models import AssignStep, Conditions, Rule, Trigger

    with pytest.raises(ValidationError, match="'team_id' does not apply to action 'unassign'"):
        AssignStep(id="s", type="assign_to", action="unassign", team_id="t1")
    with pytest.raises(ValidationError, match="'is_present' takes no value"):
        Rule(field="summary", operator="is_present", value="x")
    with pytest.raises(ValidationError, match="needs a list of values"):
        Rule(field="category", operator="is_one_of", value="billing")
    with pytest.raises(ValidationError, match="source 'auto_close' never occurs on conversation.opened"):
        Trigger(type="conversation.opened",
                conditions=Conditions(rules=(Rule(field="source", operator="is_equal_to", value="auto_close"),)))
