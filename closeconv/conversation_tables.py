"""The conversations step over the change journal's CONVERSATIONS scope (closeconv/changes.py):
`conversations`, `daily_conversation_metrics` and the user tables, for every contact or for the
scope's contacts only.

A scoped run replaces the scope's conversations (every figure of a conversation comes from its
own contact's events and assignment timeline), then what depends on them: the local days they
were on before or are on now (daily metrics), their conversation ids (conversation_assignees),
their (closing user, close instant) pairs (user_closes). `user_messages_15min` is recomputed in
full: it counts events, and the events of records that went are no longer there to say which
slots they were counted in (docs/performance.md gives its cost).
"""

from __future__ import annotations

import duckdb
import polars as pl

from closeconv import changes
from closeconv.metrics import build_conversations, build_daily_conversation_metrics, local_day_sql
from closeconv.user_activity import (
    build_conversation_assignees,
    build_user_activity,
    build_user_closes,
    build_user_messages,
)

CONVERSATION_STEP_TABLES = (
    "conversations", "daily_conversation_metrics", "conversation_assignees", "user_messages_15min", "user_closes",
)
_CONTACTS, _OLD, _NEW = "_conv_scope_contacts", "_conv_scope_old", "_conv_scope_new"
_DAYS, _IDS, _CLOSE_KEYS = "_conv_scope_days", "_conv_scope_ids", "_conv_scope_close_keys"
_TOUCHED_COLUMNS = "conversation_id, opened_at, closed_at, closed_by_user_id"
# A scope naming more contacts than this share of the conversations is recomputed whole: deleting
# and inserting most rows costs more than rebuilding them (round robin moves the turn of most
# later contacts: 42,613 of 49,776 contacts at 1M events; docs/performance.md).
WIDE_SCOPE_SHARE = 0.25


def _conversation_count(con: duckdb.DuckDBPyConnection) -> int:
    return con.sql("SELECT count(*) FROM conversations").fetchall()[0][0]


def build_conversation_scope(
    con: duckdb.DuckDBPyConnection, scope: changes.Scope, tz: str, categories: pl.DataFrame | None
) -> None:
    """Recompute the scope's rows of the step's tables and journal the PUBLISH step's contacts.
    Opens no transaction: the caller writes, journals and clears in one."""
    if scope.nothing:
        return
    if scope.everything or scope.contacts > WIDE_SCOPE_SHARE * _conversation_count(con):
        build_conversations(con, categories)
        build_daily_conversation_metrics(con, tz)
        build_user_activity(con)
        changes.mark_everything(con, [changes.PUBLISH])
        return
    # A contact whose events now carry a conversation id that another contact's conversation
    # had (session naming crosses contacts) takes that contact along, so no id is left twice.
    con.sql(
        f"""
        CREATE OR REPLACE TEMP TABLE {_CONTACTS} AS
        SELECT contact_id FROM {scope.table}
        UNION
        SELECT contact_id FROM conversations WHERE conversation_id IN (
            SELECT conversation_id FROM events WHERE {scope.where("contact_id")} AND conversation_id IS NOT NULL)
        """
    )
    in_scope = f"contact_id IN (SELECT contact_id FROM {_CONTACTS})"
    con.sql(f"CREATE OR REPLACE TEMP TABLE {_OLD} AS SELECT {_TOUCHED_COLUMNS} FROM conversations WHERE {in_scope}")
    build_conversations(con, categories, in_scope)
    con.sql(f"CREATE OR REPLACE TEMP TABLE {_NEW} AS SELECT {_TOUCHED_COLUMNS} FROM conversations WHERE {in_scope}")
    touched = f"(SELECT * FROM {_OLD} UNION ALL SELECT * FROM {_NEW})"
    con.sql(
        f"""
        CREATE OR REPLACE TEMP TABLE {_DAYS} AS
        SELECT {local_day_sql(tz, "opened_at")} AS day FROM {touched}
        UNION SELECT {local_day_sql(tz, "closed_at")} FROM {touched} WHERE closed_at IS NOT NULL
        """
    )
    build_daily_conversation_metrics(con, tz, _DAYS)
    con.sql(f"CREATE OR REPLACE TEMP TABLE {_IDS} AS SELECT DISTINCT conversation_id FROM {touched}")
    build_conversation_assignees(con, _IDS)
    con.sql(
        f"""
        CREATE OR REPLACE TEMP TABLE {_CLOSE_KEYS} AS
        SELECT DISTINCT closed_by_user_id AS user_id, closed_at FROM {touched}
        WHERE closed_at IS NOT NULL AND closed_by_user_id IS NOT NULL
        """
    )
    build_user_closes(con, _CLOSE_KEYS)
    build_user_messages(con)
    changes.mark_contacts(con, [changes.PUBLISH], f"SELECT contact_id FROM {_CONTACTS}")
    for table in (_CONTACTS, _OLD, _NEW, _DAYS, _IDS, _CLOSE_KEYS):
        con.sql(f"DROP TABLE {table}")
