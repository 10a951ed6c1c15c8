"""Trigger conditions compiled to Polars expressions, evaluated over all trigger events at once.

Semantics (also in docs/workflows.md):

* Text compares case-insensitively: both the field and the value are lower-cased.
  Nothing else is normalised (no trimming, no accent folding); `contains` is a plain
  substring test, not a pattern.
* A field is *present* when it is not null and not blank (only spaces). An empty text is
  treated like a missing one.
* Null (missing) fields:

  ============================  ===========================
  operator                      result on a null field
  ============================  ===========================
  is_equal_to X                 false
  is_not_equal_to X             **true**  (the field is not X)
  is_one_of [..]                false
  is_not_one_of [..]            **true**
  contains X                    false
  does_not_contain X            **true**
  is_present                    false
  is_not_present                true
  ============================  ===========================

  In short: a positive test on a missing value fails, its negation succeeds. Every rule
  gives true or false, never null, so `match: all` / `match: any` are plain AND / OR.
* `match: all` with no rules is true (a trigger without conditions fires on every event).
* `assignee_id` is the contact's assignee just before the trigger event, before any
  workflow that this same event triggers (see replay.py). Blank = null = unassigned.
"""

from __future__ import annotations

import polars as pl

from closeconv.workflows.models import Conditions, Rule, Workflow


def _lower(expr: pl.Expr) -> pl.Expr:
    return expr.cast(pl.String).str.to_lowercase()


def _present(expr: pl.Expr) -> pl.Expr:
    return (expr.is_not_null() & (expr.cast(pl.String).str.strip_chars() != "")).fill_null(False)


def rule_expr(rule: Rule, column: pl.Expr) -> pl.Expr:
    """A boolean expression (never null) for one rule applied to ``column``."""
    op = rule.operator
    if op == "is_present":
        return _present(column)
    if op == "is_not_present":
        return ~_present(column)
    if op in ("is_one_of", "is_not_one_of"):
        values = sorted({v.lower() for v in (rule.value or ())})
        hit = _lower(column).is_in(values).fill_null(False)
        return hit if op == "is_one_of" else ~hit
    value = str(rule.value).lower()
    if op in ("is_equal_to", "is_not_equal_to"):
        hit = (_lower(column) == pl.lit(value, dtype=pl.String)).fill_null(False)
        return hit if op == "is_equal_to" else ~hit
    if op in ("contains", "does_not_contain"):
        hit = _lower(column).str.contains(value, literal=True).fill_null(False)
        return hit if op == "contains" else ~hit
    raise ValueError(f"unknown operator {op!r}")  # pragma: no cover - validated earlier


def combine(exprs: list[pl.Expr], match: str) -> pl.Expr:
    if not exprs:
        return pl.lit(True) if match == "all" else pl.lit(False)
    if len(exprs) == 1:
        return exprs[0]
    return pl.all_horizontal(exprs) if match == "all" else pl.any_horizontal(exprs)


def conditions_expr(conditions: Conditions, assignee: pl.Expr | None = None) -> pl.Expr:
    """The whole condition block as one boolean expression.

    Columns are read by field name (``source``, ``category``, ...); ``assignee`` is the
    expression to use for the ``assignee_id`` field (default: the column ``assignee_id``).
    A block with no rules is true.
    """
    if not conditions.rules:
        return pl.lit(True)
    exprs = []
    for rule in conditions.rules:
        if rule.field == "assignee_id":
            col = assignee if assignee is not None else pl.col("assignee_id")
        else:
            col = pl.col(rule.field)
        exprs.append(rule_expr(rule, col))
    return combine(exprs, conditions.match)


def split_conditions(conditions: Conditions) -> tuple[pl.Expr | None, list[Rule]]:
    """The part of a block that does not read ``assignee_id`` (None if no such rule) and the
    assignee rules. Used by the sequential engine, where the assignee changes during replay:
    ``match = static AND/OR assignee_part(value)``."""
    static = [rule_expr(r, pl.col(r.field)) for r in conditions.rules if r.field != "assignee_id"]
    assignee_rules = [r for r in conditions.rules if r.field == "assignee_id"]
    return (combine(static, conditions.match) if static else None), assignee_rules


def workflow_match_expr(workflow: Workflow, assignee: pl.Expr | None = None) -> pl.Expr:
    """True where the event is of the workflow's trigger type and its conditions hold."""
    return (pl.col("trigger_type") == workflow.trigger.type) & conditions_expr(workflow.trigger.conditions, assignee)
