"""Dagster's SQLite storage during a closeconv run, with fewer fsyncs.

Dagster's SQLite storage opens a new connection for every event it stores (about 100 per
closeconv run). SQLite syncs to disk on each commit; and when the last connection to a file
closes, it checkpoints the WAL into the file (syncing both) and deletes it (syncing the folder).
That made about 1,000 fsyncs per run, seconds on a busy disk, whatever the size of the data.
While the run executes:

- each SQLite file Dagster opens is held open by one idle connection of ours, so Dagster's
  connections are never the last to close: no checkpoint and no WAL deletion per event; the
  WAL is checkpointed once, when we let go at the end (or when it grows past SQLite's limit);
- the run's own event log (`history/runs/<run id>.db`) is written with `synchronous = OFF`: a
  crash of the process loses nothing; only a power loss during or right after the run could lose
  or damage that run's event log;
- the files shared across runs (runs.db, index.db: the run list, asset history, schedules), in
  WAL mode, use `synchronous = NORMAL`, SQLite's advice for WAL: never corrupted, though a power
  loss may undo the last commits.
"""

from __future__ import annotations

import os
import sqlite3
from contextlib import contextmanager
from typing import Iterator

from sqlalchemy import event
from sqlalchemy.engine import Engine


@contextmanager
def fewer_fsyncs(run_id: str) -> Iterator[None]:
    """While inside, SQLite connections this process opens behave as described above."""
    run_event_log = f"{run_id}.db"
    held: dict[str, sqlite3.Connection] = {}

    def on_connect(dbapi_connection, _record) -> None:
        if not isinstance(dbapi_connection, sqlite3.Connection):
            return
        path = dbapi_connection.execute("PRAGMA database_list").fetchone()[2]
        if not path:  # in-memory
            return
        if os.path.basename(path) == run_event_log:
            dbapi_connection.execute("PRAGMA synchronous = OFF")
        elif dbapi_connection.execute("PRAGMA journal_mode").fetchone()[0] == "wal":
            dbapi_connection.execute("PRAGMA synchronous = NORMAL")
        if path not in held:
            holder = sqlite3.connect(path, check_same_thread=False)
            holder.execute("SELECT 1 FROM sqlite_master LIMIT 1").fetchall()  # opens the file and its WAL
            held[path] = holder

    event.listen(Engine, "connect", on_connect)
    try:
        yield
    finally:
        event.remove(Engine, "connect", on_connect)
        for holder in held.values():
            holder.close()
