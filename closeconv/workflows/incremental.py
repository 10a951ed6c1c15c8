"""The workflows step of an incremental run: replay what the change journal's WORKFLOWS scope
names, and tell the later steps which contacts' replay tables changed (closeconv/changes.py).

- Everything in scope (first run, full refresh, changed workflows or users.csv): a full replay;
  the later steps recompute everything.
- Contact-local workflows (the vectorized engine: unassign-only): each contact's rows depend on
  its own events only, so only the scope's contacts are replayed and their rows replaced.
- Round robin / least open contacts (the sequential engine) carry a cursor and open counts
  across contacts in time order: one contact's new event can change the choice for every later
  trigger of every contact. Replaying "from the earliest affected trigger" would need the
  cursor and the counts as of that instant, rebuilt from the stored actions, and a merge of the
  recomputed tail with the kept head; instead the replay is full (it is the cheap part: the
  engine does Python work per candidate trigger only) and the later steps get only the contacts
  whose rows differ, found by an order-free digest of each contact's rows before and after.
"""

from __future__ import annotations

import duckdb
import polars as pl

from closeconv import changes
from closeconv.workflows.models import Workflow
from closeconv.workflows.replay import ReplayStats, replay_workflows, replays_per_contact
from closeconv.workflows.tables import REPLAY_TABLES

_BEFORE, _AFTER = "_replay_digest_before", "_replay_digest_after"
LATER_STEPS = (changes.CONVERSATIONS, changes.PUBLISH)


def _digest_contacts(con: duckdb.DuckDBPyConnection, into: str) -> None:
    """Per contact, a digest of its rows in the replay tables, independent of row order (the
    rows of a contact are distinct within each table, so a sum of row hashes tells them apart)."""
    rows = " UNION ALL ".join(f"SELECT contact_id, hash('{t}', t) AS h FROM {t} t" for t in REPLAY_TABLES)
    con.sql(
        f"CREATE OR REPLACE TEMP TABLE {into} AS "
        f"SELECT contact_id, sum(h::HUGEINT) AS digest, count(*) AS n FROM ({rows}) GROUP BY contact_id"
    )


CHANGED_CONTACTS_SQL = f"""
    SELECT coalesce(a.contact_id, b.contact_id) AS contact_id
    FROM {_BEFORE} b FULL JOIN {_AFTER} a ON a.contact_id = b.contact_id
    WHERE a.digest IS DISTINCT FROM b.digest OR a.n IS DISTINCT FROM b.n
"""


def replay_scope(
    con: duckdb.DuckDBPyConnection, workflows: list[Workflow], users: pl.DataFrame | None, scope: changes.Scope
) -> ReplayStats | None:
    """Replay ``scope`` and journal the later steps' contacts; None when the scope is empty.
    Opens no transaction: the caller writes, journals and clears in one."""
    if scope.nothing:
        return None
    if scope.everything:
        stats = replay_workflows(con, workflows, users)
        changes.mark_everything(con, LATER_STEPS)
        return stats
    if replays_per_contact(workflows):
        stats = replay_workflows(con, workflows, users, contacts=scope.where("contact_id"))
        changes.mark_contacts(con, LATER_STEPS, f"SELECT contact_id FROM {scope.table}")
        return stats
    _digest_contacts(con, _BEFORE)
    stats = replay_workflows(con, workflows, users)
    _digest_contacts(con, _AFTER)
    changes.mark_contacts(con, LATER_STEPS, CHANGED_CONTACTS_SQL)
    for table in (_BEFORE, _AFTER):
        con.sql(f"DROP TABLE {table}")
    return stats
