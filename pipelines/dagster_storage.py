"""Dagster's SQLite run and event log storage, with one SQLAlchemy engine per database file.

Dagster's SQLite storages build a new SQLAlchemy engine (`NullPool`) for every statement they
run: a `closeconv run` stores about 100 events, and each costs an engine, a dialect set-up, an
SQLite connection and our per-connection pragmas (pipelines/dagster_fsync.py), several
milliseconds apiece, whatever the size of the data. These subclasses keep one pooled engine per
file for the life of the instance and dispose of it with the instance. The files, tables and
rows are Dagster's own: `dg dev` and the Dagster UI read them with the stock SQLite storage
(the project's dagster.yaml), and see every run, materialization and check.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

from dagster._core.storage.event_log.sqlite.sqlite_event_log import INDEX_SHARD_NAME, SqliteEventLogStorage
from dagster._core.storage.runs.sqlite.sqlite_run_storage import SqliteRunStorage
from dagster._core.storage.sqlite import SQLITE_BUSY_TIMEOUT_SECONDS
from sqlalchemy import create_engine
from sqlalchemy.engine import Connection, Engine

MODULE = __name__


class PooledSqliteRunStorage(SqliteRunStorage):
    """The run list (runs.db) through one engine."""

    _engine: Engine | None = None

    @classmethod
    def from_config_value(cls, inst_data, config_value):  # the stock one builds a SqliteRunStorage
        return cls.from_local(inst_data=inst_data, **config_value)

    @contextmanager
    def connect(self) -> Iterator[Connection]:
        if self._engine is None:
            self._engine = create_engine(self._conn_string)
        with self._engine.connect() as conn, conn.begin():
            yield conn

    def dispose(self) -> None:
        super().dispose()
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None


class PooledSqliteEventLogStorage(SqliteEventLogStorage):
    """The event logs (one file per run, and index.db across runs) through one engine per file."""

    def __init__(self, base_dir: str, inst_data=None):
        self._engines: dict[str, Engine] = {}  # before the stock set-up, which may already connect
        super().__init__(base_dir, inst_data)

    @classmethod
    def from_config_value(cls, inst_data, config_value):
        return cls(inst_data=inst_data, **config_value)

    @contextmanager
    def _connect(self, shard: str) -> Iterator[Connection]:
        with self._db_lock:  # as the stock method: one statement at a time across threads
            engine = self._engines.get(shard)
            if engine is None:
                engine = create_engine(self.conn_string_for_shard(shard),
                                       connect_args={"timeout": SQLITE_BUSY_TIMEOUT_SECONDS})
                if shard not in self._initialized_dbs:
                    self._initdb(engine)
                    self._initialized_dbs.add(shard)
                self._engines[shard] = engine
            with engine.connect() as conn, conn.begin():
                yield conn

    def has_table(self, table_name: str) -> bool:
        # Asked before most stores (~40 times a run); the stock one builds an engine each time.
        # No lock, as the stock one: it is asked while a connection of this storage is held.
        engine = self._engines.get(INDEX_SHARD_NAME)
        if engine is None:
            return super().has_table(table_name)
        with engine.connect() as conn:
            return bool(engine.dialect.has_table(conn, table_name))

    def dispose(self) -> None:
        super().dispose()
        for engine in self._engines.values():
            engine.dispose()
        self._engines.clear()


def pooled_storage_overrides(instance_dir: str) -> dict:
    """Instance config overrides: the stock SQLite layout of `instance_dir`, through these classes."""
    from dagster._core.instance.ref import _event_logs_directory, _runs_directory, _schedule_directory

    return {
        "run_storage": {"module": MODULE, "class": PooledSqliteRunStorage.__name__,
                        "config": {"base_dir": _runs_directory(instance_dir)}},
        "event_log_storage": {"module": MODULE, "class": PooledSqliteEventLogStorage.__name__,
                              "config": {"base_dir": _event_logs_directory(instance_dir)}},
        "schedule_storage": {"module": "dagster._core.storage.schedules", "class": "SqliteScheduleStorage",
                             "config": {"base_dir": _schedule_directory(instance_dir)}},
    }
