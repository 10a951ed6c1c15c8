"""Run settings: where the landing folder, warehouse, workflows and reference data live.

One resolution for every entry point (`closeconv run`, `dg dev`, what-if, the dashboard):
flags (init arguments) win over environment variables, which win over the project's `.env`,
which wins over the defaults. pydantic-settings does the resolving; this module only adds
where each value came from (for error messages) and the checks that run before any work.
"""

from __future__ import annotations

import csv
import difflib
import os
import re
from functools import lru_cache
from pathlib import Path
from typing import Any

from dotenv import dotenv_values
from pydantic import Field, PrivateAttr
from pydantic_settings import BaseSettings, SettingsConfigDict

from closeconv.errors import ConfigError  # noqa: F401  (re-exported: callers catch it from here)

ENV_FILE = ".env"

# Setting → (environment variable, flag). The variable names are the public contract.
ENV_NAMES: dict[str, str] = {
    "landing_dir": "CLOSECONV_LANDING",
    "warehouse_path": "CLOSECONV_WAREHOUSE",
    "workflows_dir": "CLOSECONV_WORKFLOWS",
    "reference_dir": "CLOSECONV_REFERENCE",
    "timezone": "CLOSECONV_TIMEZONE",
    "allow_shrink": "CLOSECONV_ALLOW_SHRINK",
    "dagster_home": "DAGSTER_HOME",
    "auto_close_hours": "CLOSECONV_AUTO_CLOSE_HOURS",
    "archive_dir": "CLOSECONV_ARCHIVE",
    "memory_limit": "CLOSECONV_MEMORY_LIMIT",
}
AUTO_CLOSE_ENV = ENV_NAMES["auto_close_hours"]
FLAGS: dict[str, str] = {
    "landing_dir": "--landing",
    "warehouse_path": "--warehouse",
    "workflows_dir": "--workflows",
    "reference_dir": "--reference",
    "timezone": "--timezone",
    "allow_shrink": "--allow-shrink",
    "auto_close_hours": "--auto-close-hours",
    "archive_dir": "--archive",
    "memory_limit": "--memory-limit",
}




class Settings(BaseSettings):
    """Every closeconv setting. `Settings()` reads the environment and `.env`; keyword
    arguments (flags) win. Use `resolve_settings(flags)` to also record where each came from."""

    model_config = SettingsConfigDict(
        env_prefix="CLOSECONV_", env_file=ENV_FILE, env_file_encoding="utf-8", extra="ignore", frozen=True, validate_by_name=True
    )

    landing_dir: Path = Field(Path("data/landing"), validation_alias="CLOSECONV_LANDING")
    warehouse_path: Path = Field(
        Path("data/warehouse.duckdb"), validation_alias="CLOSECONV_WAREHOUSE"
    )
    workflows_dir: Path = Field(Path("workflows"), validation_alias="CLOSECONV_WORKFLOWS")
    reference_dir: Path = Field(
        Path("data/reference"), validation_alias="CLOSECONV_REFERENCE"
    )
    timezone: str = Field("UTC", validation_alias="CLOSECONV_TIMEZONE")
    # Publish even if the new warehouse has fewer events than the one it replaces.
    allow_shrink: bool = Field(False, validation_alias="CLOSECONV_ALLOW_SHRINK")
    # The Dagster instance (run history, sensor cursor). Unset: `<warehouse folder>/.dagster`.
    dagster_home: Path | None = Field(None, validation_alias="DAGSTER_HOME")
    # Derive respond.io's auto-close (closeconv/auto_close.py): hours as given, None = off.
    # Kept as text so that `check()` can name where a bad value came from.
    auto_close_hours: str | None = Field(None, validation_alias="CLOSECONV_AUTO_CLOSE_HOURS")
    # The landing folder is an inbox: after a run, processed files move here (same relative
    # path); every run reads this folder too, so their events stay. None = files stay put.
    archive_dir: Path | None = Field(None, validation_alias="CLOSECONV_ARCHIVE")
    # Cap on the staging DuckDB's memory (e.g. "3GB"); past it DuckDB spills to the staging
    # folder instead of failing. None = default_memory_limit(). Text, checked by check().
    memory_limit: str | None = Field(None, validation_alias="CLOSECONV_MEMORY_LIMIT")

    # Where a setting came from, for error messages ("--landing", "CLOSECONV_LANDING", "default").
    _origins: dict[str, str] = PrivateAttr(default_factory=dict)

    @property
    def origins(self) -> dict[str, str]:
        return self._origins

    def origin(self, name: str) -> str:
        return self._origins.get(name, "default")

    @property
    def state_dir(self) -> Path:
        """Pipeline-private folder beside the warehouse (staging database, lock)."""
        return self.warehouse_path.parent / ".closeconv"

    @property
    def staging_path(self) -> Path:
        return self.state_dir / f"{self.warehouse_path.stem}.staging.duckdb"

    @property
    def lock_path(self) -> Path:
        return self.state_dir / "pipeline.lock"

    @property
    def instance_dir(self) -> Path:
        """The Dagster instance folder closeconv records runs in (DAGSTER_HOME wins)."""
        if self.dagster_home is not None:
            return self.dagster_home.expanduser().absolute()
        return (self.warehouse_path.parent / ".dagster").absolute()

    def with_(self, **changes: Any) -> "Settings":
        copy = self.model_copy(update=changes)
        copy._origins = {**self._origins, **{k: "code" for k in changes}}
        return copy

    def check(self, *, landing: bool = True, inputs: bool = True) -> "Settings":
        """Raise ConfigError naming the setting, its origin and the fix; before any work.

        `landing=False` for readers that do not need the landing folder (what-if, dashboard);
        `inputs=False` skips reading the reference files and the workflow definitions."""
        check_timezone(self.timezone, self.origin("timezone"))
        self.auto_close()
        self.memory_limit_bytes()
        if landing:
            self._check_landing()
        self._check_archive()
        for name, what in (("workflows_dir", "workflows"), ("reference_dir", "reference")):
            path = getattr(self, name)
            # A folder named on purpose must exist: a typo must not silently mean "no workflows".
            if self.origin(name) != "default" and not path.exists():
                raise ConfigError(
                    f"{what} folder {str(path)!r} does not exist (from {self.origin(name)}). "
                    f"Create it, fix the path, or leave {FLAGS[name]} / {ENV_NAMES[name]} unset for the default."
                )
            if path.exists() and not path.is_dir():
                raise ConfigError(
                    f"{what} path {str(path)!r} is not a folder (from {self.origin(name)}). "
                    f"Fix: point {FLAGS[name]} / {ENV_NAMES[name]} at a folder."
                )
        if inputs:
            check_reference_files(self.reference_dir)
            if self.workflows_dir.is_dir():
                from closeconv.workflows import load_workflows

                load_workflows(self.workflows_dir)  # raises WorkflowValidationError (a ConfigError)
        return self

    def auto_close(self) -> float | None:
        """The auto-close hours as a number (None: off); ConfigError naming the origin when bad."""
        try:
            return parse_auto_close_hours(self.auto_close_hours, self.origin("auto_close_hours"))
        except ValueError as exc:
            raise ConfigError(str(exc)) from None

    def _check_archive(self) -> None:
        if self.archive_dir is None:
            return
        where = self.origin("archive_dir")
        archive, landing = self.archive_dir.absolute(), self.landing_dir.absolute()
        if archive.exists() and not archive.is_dir():
            raise ConfigError(
                f"archive folder {str(self.archive_dir)!r} is a file, not a folder (from {where}). "
                "Point --archive / CLOSECONV_ARCHIVE at a folder (it is created if missing), or unset it."
            )
        if archive == landing or archive.is_relative_to(landing) or landing.is_relative_to(archive):
            raise ConfigError(
                f"archive folder {str(self.archive_dir)!r} and landing folder {str(self.landing_dir)!r} overlap "
                f"(from {where}): every file would be read twice. Put the archive beside the landing folder, "
                "e.g. data/archive."
            )

    def memory_limit_bytes(self) -> int:
        """The memory cap in bytes (unset: default_memory_limit()); ConfigError naming the origin when bad."""
        try:
            given = parse_memory_limit(self.memory_limit, self.origin("memory_limit"))
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
        return given if given is not None else default_memory_limit()

    def _check_landing(self) -> None:
        where = self.origin("landing_dir")
        if self.landing_dir.exists() and not self.landing_dir.is_dir():
            raise ConfigError(
                f"landing folder {str(self.landing_dir)!r} is a file, not a folder (from {where}). "
                "Point --landing / CLOSECONV_LANDING at the folder that holds the event files."
            )
        if not self.landing_dir.is_dir():
            raise ConfigError(
                f"landing folder {str(self.landing_dir)!r} does not exist (from {where}). "
                "Create it and drop event files into it, or point --landing / CLOSECONV_LANDING at "
                "an existing folder (`closeconv generate --out DIR` writes sample data)."
            )


@lru_cache(maxsize=1)
def parse_auto_close_hours(text: str | float | None, origin: str) -> float | None:
    """The auto-close setting as hours (None: off). Raises ValueError naming `origin` and the fix."""
    if text is None or (isinstance(text, str) and not text.strip()):
        return None
    try:
        hours = float(text)
    except (TypeError, ValueError):
        hours = float("nan")
    if not hours > 0 or hours == float("inf"):
        raise ValueError(
            f"auto-close hours {text!r} (from {origin}) is not a positive number of hours. "
            f"Give e.g. 24 for --auto-close-hours / {AUTO_CLOSE_ENV}, or leave it unset to turn auto-close off."
        )
    return hours


_SIZE_UNITS = {"b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12,
               "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-z]+)\s*$", re.IGNORECASE)
MIN_MEMORY_LIMIT = 64 * 10**6  # below this DuckDB cannot run the pipeline's queries at all
# The default cap (docs/operations.md, Configuration; docs/performance.md, "Memory by default"):
# a quarter of RAM, at most 2.5 GB. DuckDB's own default, 80% of RAM, let a 10M-event run peak at
# 9.6 GB; the process also holds ~1 GB outside DuckDB at 10M (Polars frames of the replay, Arrow
# blocks of the parser, Python), hence 2.5 GB for a 4 GiB run; at 5M the events step spills ~0.5 GB under it.
DEFAULT_MEMORY_LIMIT_SHARE = 0.25
DEFAULT_MEMORY_LIMIT_CEILING = 2_500 * 10**6


def default_memory_limit(ram_bytes: int | None = None) -> int:
    """The staging DuckDB's memory cap when none is given: a share of RAM with a ceiling."""
    if ram_bytes is None:
        ram_bytes = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    return max(MIN_MEMORY_LIMIT, min(DEFAULT_MEMORY_LIMIT_CEILING, int(ram_bytes * DEFAULT_MEMORY_LIMIT_SHARE)))


def parse_memory_limit(text: str | None, origin: str) -> int | None:
    """The memory cap as bytes (None: unset). Raises ValueError naming `origin` and the fix."""
    if text is None or not text.strip():
        return None
    m = _SIZE.match(text)
    unit = _SIZE_UNITS.get(m.group(2).lower()) if m else None
    if m is None or unit is None:
        raise ValueError(
            f"memory limit {text!r} (from {origin}) is not a size. "
            f"Give a number and a unit, e.g. 3GB, 500MB or 2GiB, for --memory-limit / {ENV_NAMES['memory_limit']}, "
            "or leave it unset for the default (a quarter of RAM, at most 2.5GB)."
        )
    size = int(float(m.group(1)) * unit)
    if size < MIN_MEMORY_LIMIT:
        raise ValueError(
            f"memory limit {text!r} (from {origin}) is below {MIN_MEMORY_LIMIT // 10**6}MB, too little for the pipeline. "
            f"Give at least 64MB for --memory-limit / {ENV_NAMES['memory_limit']}, or leave it unset."
        )
    return size


@lru_cache(maxsize=1)  # a run checks its settings twice (CLI, then its first step): one query
def duckdb_timezones() -> frozenset[str]:
    """The timezone names DuckDB accepts (its ICU list): the pipeline computes days with it."""
    import duckdb

    con = duckdb.connect()
    try:
        return frozenset(r[0] for r in con.sql("SELECT name FROM pg_timezone_names()").fetchall())
    finally:
        con.close()


def check_timezone(name: str, origin: str = "default") -> None:
    names = duckdb_timezones()
    if name in names:
        return
    by_lower = {n.lower(): n for n in names}
    close = [by_lower[m] for m in difflib.get_close_matches(name.lower(), list(by_lower), n=3, cutoff=0.6)]
    hint = f"Did you mean {', '.join(repr(c) for c in close)}? " if close else ""
    raise ConfigError(
        f"unknown timezone {name!r} (from {origin}). {hint}"
        "Use an IANA name such as 'UTC', 'Europe/Berlin' or 'America/New_York' "
        "(system aliases like 'localtime' or 'posixrules' are not timezones)."
    )


def check_reference_files(reference_dir: Path) -> None:
    """Read every reference file present, strictly: a bad one is a ConfigError naming it."""
    from closeconv.reference import REFERENCE_FILES, load_reference

    for name in REFERENCE_FILES:
        path = reference_dir / name
        if not path.exists():
            continue
        try:
            load_reference(reference_dir, name)
        except UnicodeDecodeError as exc:
            raise ConfigError(f"{path}: not UTF-8 text ({exc.reason}). Fix: save it as UTF-8 CSV.") from None
        except (OSError, csv.Error) as exc:
            raise ConfigError(
                f"{path}: cannot be read ({type(exc).__name__}: {exc}). "
                "Fix: make it a readable CSV file, or remove it (reference files are optional)."
            ) from None


def resolve_settings(flags: dict[str, object | None] | None = None, env_file: str | Path | None = ENV_FILE) -> Settings:
    """Flags win over environment variables, which win over `.env`, which wins over defaults.

    `flags` maps setting names (landing_dir, warehouse_path, ...) to values; None or "" means
    "not given". Invalid values (e.g. CLOSECONV_ALLOW_SHRINK=maybe) raise ConfigError."""
    from pydantic import ValidationError

    given = {k: v for k, v in (flags or {}).items() if v not in (None, "") and k in Settings.model_fields}
    dotenv = {k: v for k, v in (dotenv_values(env_file) if env_file and Path(env_file).is_file() else {}).items() if v}
    try:
        settings = Settings(_env_file=env_file, **given)
    except ValidationError as exc:
        problems = "; ".join(
            f"{ENV_NAMES.get(str(e['loc'][0]), e['loc'][0])}: {e['msg']} (got {e.get('input')!r})" for e in exc.errors()
        )
        raise ConfigError(f"invalid setting: {problems}. Fix the value or unset it.") from None
    origins: dict[str, str] = {}
    for name, env_name in ENV_NAMES.items():
        if name in given:
            origins[name] = FLAGS.get(name, name)
        elif os.environ.get(env_name):
            origins[name] = env_name
        elif dotenv.get(env_name):
            origins[name] = f"{env_name} in {env_file}"
        else:
            origins[name] = "default"
    settings._origins = origins
    return settings
