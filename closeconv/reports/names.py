"""Names for ids, from the published reference tables `users`, `teams`, `categories`.

A warehouse published before those tables existed (or without reference files) simply has no
names: the SQL falls back to an empty relation and the label to the id.
"""

from __future__ import annotations

import polars as pl

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


_maps: dict[str, tuple[dict[str, str], dict[str, str]]] = {}


def name_maps(wh: Warehouse) -> tuple[dict[str, str], dict[str, str]]:
    """({user_id: name}, {team_id: name}) of this published version, read once per version.

    Pages add names in Python (a dict lookup over 50 rows) instead of joining in SQL, which
    costs DuckDB more planning than the page itself.
    """
    key = wh.cache_key
    found = _maps.get(key)
    if found is None:
        users, teams = wh.query_many([
            (f"SELECT user_id, name FROM {reference_table(wh, 'users')} WHERE name IS NOT NULL", None),
            (f"SELECT team_id, name FROM {reference_table(wh, 'teams')} WHERE name IS NOT NULL", None),
        ])
        found = (dict(users.iter_rows()), dict(teams.iter_rows()))
        if len(_maps) > 8:
            _maps.clear()
        _maps[key] = found
    return found


def with_names(frame: pl.DataFrame, wh: Warehouse, users: dict[str, str] | None = None,
               teams: dict[str, str] | None = None) -> pl.DataFrame:
    """Add a name column for each id column: {id_column: name_column}; an unknown id names itself."""
    user_names, team_names = name_maps(wh)
    exprs = [pl.col(src).replace(user_names).alias(dst) for src, dst in (users or {}).items() if src in frame.columns]
    exprs += [pl.col(src).replace(team_names).alias(dst) for src, dst in (teams or {}).items() if src in frame.columns]
    return frame.with_columns(exprs) if exprs else frame
