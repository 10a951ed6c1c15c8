"""Shared fixtures: a landing folder in tmp_path, event builders, and a real pipeline run.

`closeconv_env.run()` materializes the real Dagster job in-process against a real DuckDB file
in tmp_path and returns a read-only connection helper on the published warehouse.

Hermetic by construction: every test runs without the developer's CLOSECONV_* variables and
DAGSTER_HOME, in its own tmp_path as the working folder (so the default `data/` is never the
repository's). A skipped test fails the session unless `--allow-skips` is given: the guide
says skip nothing silently.
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import signal
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import polars as pl
import pytest

from closeconv.config import Settings
from closeconv.contract import EVENT_FIELDS

REPO = Path(__file__).resolve().parent.parent

# A shell without job control starts a background command (`dev.py test &`) with SIGINT ignored,
# and an in-process Dagster run maps SIGTERM to SIGINT's handler: every child a test stops with
# Ctrl-C or SIGTERM (the demo, a process holding the warehouse open) would then inherit both as
# ignored and never stop. The suite restores Python's own Ctrl-C handling first.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)
TEMPLATE_UNASSIGN = REPO / "workflows" / "templates" / "unassign-after-close.yaml"
DAY = "2026-03-02"


def at(hhmmss: str, day: str = DAY) -> str:
    """'09:04' or '09:04:30' on the scenario day, as ISO-8601 UTC."""
    if hhmmss.count(":") == 1:
        hhmmss += ":00"
    return f"{day}T{hhmmss}Z"


_ids = itertools.count(1)


def ev(event_type: str, when: str, contact: str = "c1", **fields) -> dict:
    """One event in the contract. `when` is 'HH:MM[:SS]' on the scenario day or a full ISO string."""
    occurred_at = when if "T" in when else at(when)
    event = {"event_id": fields.pop("event_id", f"e{next(_ids):06d}"), "event_type": event_type,
             "occurred_at": occurred_at, "contact_id": contact}
    event.update({k: v for k, v in fields.items()})
    return event


def recv(when, contact="c1", **kw):
    return ev("message.received", when, contact, **kw)


def sent(when, source="user", user=None, contact="c1", **kw):
    if user is not None:
        kw["user_id"] = user
    return ev("message.sent", when, contact, source=source, **kw)


def closed(when, source="user", user=None, category=None, summary=None, contact="c1", **kw):
    if user is not None:
        kw["user_id"] = user
    if category is not None:
        kw["category"] = category
    if summary is not None:
        kw["summary"] = summary
    return ev("conversation.closed", when, contact, source=source, **kw)


def opened(when, source="user", user=None, contact="c1", **kw):
    if user is not None:
        kw["user_id"] = user
    return ev("conversation.opened", when, contact, source=source, **kw)


def assign(when, assignee, source="user", contact="c1", **kw):
    return ev("contact.assignee.updated", when, contact, source=source, assignee_id=assignee, **kw)


@dataclass
class Warehouse:
    path: Path

    def connect(self) -> duckdb.DuckDBPyConnection:
        con = duckdb.connect(str(self.path), read_only=True)
        con.sql("SET TimeZone = 'UTC'")
        return con

    def frame(self, sql: str, params: list | None = None) -> pl.DataFrame:
        con = self.connect()
        try:
            return con.sql(sql, params=params or []).pl()
        finally:
            con.close()

    def rows(self, sql: str, params: list | None = None) -> list[dict]:
        return self.frame(sql, params).to_dicts()

    def scalar(self, sql: str, params: list | None = None):
        con = self.connect()
        try:
            return con.sql(sql, params=params or []).fetchall()[0][0]
        finally:
            con.close()

    def table(self, name: str, order_by: str) -> pl.DataFrame:
        return self.frame(f"SELECT * FROM {name} ORDER BY {order_by}")


@dataclass
class ClosecovEnv:
    root: Path
    landing: Path = field(init=False)
    workflows: Path = field(init=False)
    reference: Path = field(init=False)
    warehouse_path: Path = field(init=False)

    def __post_init__(self):
        self.landing = self.root / "landing"
        self.workflows = self.root / "workflows"
        self.reference = self.root / "reference"
        self.warehouse_path = self.root / "warehouse" / "warehouse.duckdb"
        for d in (self.landing, self.reference):
            d.mkdir(parents=True, exist_ok=True)

    def use_unassign_template(self) -> None:
        self.workflows.mkdir(exist_ok=True)
        shutil.copy(TEMPLATE_UNASSIGN, self.workflows / "unassign-after-close.yaml")

    def write_jsonl(self, name: str, events: list[dict | str]) -> Path:
        path = self.landing / name
        with open(path, "w") as fh:
            for e in events:
                fh.write((e if isinstance(e, str) else json.dumps(e)) + "\n")
        return path

    def write_csv(self, name: str, events: list[dict]) -> Path:
        path = self.landing / name
        frame = pl.DataFrame([{f: (None if e.get(f) is None else str(e.get(f))) for f in EVENT_FIELDS} for e in events],
                             schema={f: pl.String for f in EVENT_FIELDS})
        frame.write_csv(path)
        return path

    def write_parquet(self, name: str, events: list[dict]) -> Path:
        path = self.landing / name
        frame = pl.DataFrame([{f: (None if e.get(f) is None else str(e.get(f))) for f in EVENT_FIELDS} for e in events],
                             schema={f: pl.String for f in EVENT_FIELDS})
        frame.write_parquet(path)
        return path

    def settings(self, timezone: str = "UTC") -> Settings:
        return Settings(landing_dir=self.landing, warehouse_path=self.warehouse_path,
                        workflows_dir=self.workflows, reference_dir=self.reference, timezone=timezone)

    def run(self, timezone: str = "UTC") -> Warehouse:
        from closeconv.commands.run import _failure_message, run_pipeline

        result = run_pipeline(self.settings(timezone), quiet=True)
        assert result.success, _failure_message(result)
        return Warehouse(self.warehouse_path)


HERMETIC_PREFIXES = ("CLOSECONV_",)
HERMETIC_NAMES = ("DAGSTER_HOME",)


@pytest.fixture(autouse=True)
def hermetic_environment(monkeypatch, tmp_path):
    """No developer setting reaches a test: CLOSECONV_*, DAGSTER_HOME and the repository's data/."""
    for name in list(os.environ):
        if name.startswith(HERMETIC_PREFIXES) or name in HERMETIC_NAMES:
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


def pytest_addoption(parser):
    parser.addoption("--allow-skips", action="store_true", default=False,
                     help="Do not fail the session when a test is skipped (closeconv fails it by default).")


_skipped: list[str] = []


def pytest_runtest_logreport(report):
    if report.skipped:
        _skipped.append(f"{report.nodeid}: {report.longrepr[2] if isinstance(report.longrepr, tuple) else report.longrepr}")


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session, exitstatus):
    if _skipped and not session.config.getoption("allow_skips") and exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    if _skipped and not config.getoption("allow_skips"):
        terminalreporter.section("skipped tests fail this session")
        for line in _skipped:
            terminalreporter.line(line)
        terminalreporter.line("A skipped test checks nothing: make it run, or pass --allow-skips knowingly.")


@pytest.fixture
def con() -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB connection in UTC, for unit tests of the SQL steps."""
    c = duckdb.connect()
    c.sql("SET TimeZone = 'UTC'")
    yield c
    c.close()


@pytest.fixture
def closeconv_env(tmp_path) -> ClosecovEnv:
    """A fresh landing folder, empty workflows folder and warehouse path under tmp_path."""
    return ClosecovEnv(tmp_path)
