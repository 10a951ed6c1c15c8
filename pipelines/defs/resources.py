"""Resources: every path and setting comes from a CLOSECONV_* environment variable.

`dagster dev` reads them from the project's `.env`; `closeconv run` sets them from its flags.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import dagster as dg
import duckdb

from closeconv.auto_close import parse_auto_close_hours
from closeconv.config import AUTO_CLOSE_ENV, ENV_NAMES, Settings
from closeconv.warehouse import staging_connection


class WarehouseResource(dg.ConfigurableResource):
    """The published DuckDB warehouse, its private staging database, and the workspace timezone."""

    path: str
    timezone: str = "UTC"
    auto_close_hours: str = ""  # optional, so read at load time (an unset dg.EnvVar is an error)

    def auto_close(self) -> float | None:
        return parse_auto_close_hours(self.auto_close_hours, AUTO_CLOSE_ENV)

    def settings(self) -> Settings:
        return Settings(warehouse_path=Path(self.path), timezone=self.timezone)

    @contextmanager
    def staging(self) -> Iterator[duckdb.DuckDBPyConnection]:
        with staging_connection(self.settings()) as con:
            yield con


class LandingResource(dg.ConfigurableResource):
    """The landing folder event files are dropped into."""

    path: str

    def folder(self) -> Path:
        folder = Path(self.path)
        if not folder.is_dir():
            raise FileNotFoundError(
                f"landing folder {self.path!r} does not exist; create it or set {ENV_NAMES['landing_dir']}"
            )
        return folder


class WorkflowsResource(dg.ConfigurableResource):
    """The folder of workflow definitions (workflows/*.yaml)."""

    path: str

    def folder(self) -> Path:
        return Path(self.path)


class ReferenceDataResource(dg.ConfigurableResource):
    """Optional reference data: users.csv, teams.csv, categories.csv."""

    path: str

    def folder(self) -> Path:
        return Path(self.path)


@dg.definitions
def resources() -> dg.Definitions:
    return dg.Definitions(
        resources={
            "warehouse": WarehouseResource(
                path=dg.EnvVar(ENV_NAMES["warehouse_path"]), timezone=dg.EnvVar(ENV_NAMES["timezone"]),
                auto_close_hours=os.environ.get(AUTO_CLOSE_ENV, ""),
            ),
            "landing": LandingResource(path=dg.EnvVar(ENV_NAMES["landing_dir"])),
            "workflows": WorkflowsResource(path=dg.EnvVar(ENV_NAMES["workflows_dir"])),
            "reference": ReferenceDataResource(path=dg.EnvVar(ENV_NAMES["reference_dir"])),
        }
    )
