"""Running a query written over whole tables on some contacts' rows only.

A step scoped to a set of contacts (closeconv/changes.py) reuses its one query: the tables the
query names are shadowed by CTEs of the same name holding the scope's rows, so every reader
inside it (subqueries and nested CTEs included) sees those contacts only.
"""

from __future__ import annotations

from collections.abc import Iterable


def over_contacts(sql: str, where: str, tables: Iterable[str]) -> str:
    """``sql`` (a SELECT) over the rows of ``tables`` (each with a ``contact_id``) that satisfy
    ``where``, a SQL predicate on ``contact_id``."""
    shadows = ", ".join(f"{t} AS MATERIALIZED (SELECT * FROM main.{t} WHERE {where})" for t in tables)
    return f"WITH {shadows} SELECT * FROM ({sql})"
