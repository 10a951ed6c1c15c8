"""Names for ids, from the published reference tables `users`, `teams`, `categories`.

A warehouse published before those tables existed (or without reference files) simply has no
names: the SQL falls back to an empty relation and the label to the id.
"""

from __future__ import annotations

from closeconv.reports.access import Warehouse

_EMPTY = {
    "users": "(SELECT NULL::VARCHAR AS user_id, NULL::VARCHAR AS name, NULL::VARCHAR AS team_id WHERE FALSE)",
    "teams": "(SELECT NULL::VARCHAR AS team_id, NULL::VARCHAR AS name WHERE FALSE)",
    "categories": "(SELECT NULL::VARCHAR AS name, NULL::VARCHAR AS description WHERE FALSE)",
}


def reference_table(wh: Warehouse, table: str) -> str:
    """`table` when the warehouse has it, else an empty relation with its key columns."""
    return table if table in wh.tables else _EMPTY[table]


def user_name_sql(wh: Warehouse, id_expr: str) -> str:
    """A scalar subquery: the user's name, else the id itself."""
    return f"coalesce((SELECT n.name FROM {reference_table(wh, 'users')} n WHERE n.user_id = {id_expr}), {id_expr})"


def team_name_sql(wh: Warehouse, id_expr: str) -> str:
    return f"coalesce((SELECT n.name FROM {reference_table(wh, 'teams')} n WHERE n.team_id = {id_expr}), {id_expr})"
