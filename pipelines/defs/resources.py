"""Resources: the closeconv settings, handed to Dagster as resources.

`dg dev` builds them from `resolve_settings()` (environment, then `.env`, then defaults);
`closeconv run` passes its own resolved settings to `execute_in_process(resources=...)`.
Either way the values come from the one resolver in `closeconv.config`.
"""

from __future__ import annotations

from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Iterator

import dagster as dg
import duckdb
from pydantic import PrivateAttr

from closeconv.config import ENV_NAMES, Settings, resolve_settings
from closeconv.warehouse import pipeline_lock, staging_connection


class WarehouseResource(dg.ConfigurableResource):
    """The published DuckDB warehouse, its private staging database, and the workspace timezone.

    While a run uses it, the run holds the pipeline lock: from its first step to its last, no
    other closeconv run (CLI or Dagster) touches the staging database or publishes."""

    path: str
    timezone: str = "UTC"
    allow_shrink: bool = False
    auto_close_hours: str = ""  # "" = off; checked by Settings.check() before any work
    memory_limit: str = ""  # "" = the default cap (config.default_memory_limit); checked by Settings.check()
    _run_scope: ExitStack | None = PrivateAttr(default=None)
    _staging: duckdb.DuckDBPyConnection | None = PrivateAttr(default=None)

    def auto_close(self) -> float | None:
        return self.settings().auto_close()

    def settings(self) -> Settings:
        return Settings(warehouse_path=Path(self.path), timezone=self.timezone, allow_shrink=self.allow_shrink,
                        auto_close_hours=self.auto_close_hours or None, memory_limit=self.memory_limit or None)

    @contextmanager
    def yield_for_execution(self, context: dg.InitResourceContext) -> Iterator["WarehouseResource"]:
        if context.run is None:  # a sensor or schedule evaluation: no lock needed
            yield self
            return
        with pipeline_lock(self.settings()), ExitStack() as run_scope:
            self._run_scope = run_scope
            try:
                yield self
            finally:
                self._run_scope = self._staging = None

    @contextmanager
    def staging(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """The staging database. Within a run, one connection serves every step: opened by the
        first step that needs it, closed when the run ends (one open and one checkpoint per run)."""
        if self._run_scope is None:  # outside a run (a test calling the asset): its own connection
            with staging_connection(self.settings()) as con:
                yield con
            return
        if self._staging is None:
            self._staging = self._run_scope.enter_context(staging_connection(self.settings()))
        yield self._staging


class LandingResource(dg.ConfigurableResource):
    """The landing folder event files are dropped into, and the archive processed files move to."""

    path: str
    archive_path: str = ""  # "" = no archive: files stay in the landing folder

    def archive_folder(self) -> Path | None:
        return Path(self.archive_path) if self.archive_path else None

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


def resources_for(settings: Settings) -> dict[str, dg.ConfigurableResource]:
    return {
        "warehouse": WarehouseResource(
            path=str(settings.warehouse_path), timezone=settings.timezone, allow_shrink=settings.allow_shrink,
            auto_close_hours=settings.auto_close_hours or "", memory_limit=settings.memory_limit or "",
        ),
        "landing": LandingResource(path=str(settings.landing_dir),
                                   archive_path=str(settings.archive_dir) if settings.archive_dir else ""),
        "workflows": WorkflowsResource(path=str(settings.workflows_dir)),
        "reference": ReferenceDataResource(path=str(settings.reference_dir)),
    }


def settings_of(
    warehouse: WarehouseResource, landing: LandingResource, workflows: WorkflowsResource, reference: ReferenceDataResource
) -> Settings:
    """The run's settings back from its resources (to check them before any work)."""
    settings = Settings(
        landing_dir=Path(landing.path), warehouse_path=Path(warehouse.path), workflows_dir=Path(workflows.path),
        reference_dir=Path(reference.path), timezone=warehouse.timezone, allow_shrink=warehouse.allow_shrink,
        auto_close_hours=warehouse.auto_close_hours or None, archive_dir=landing.archive_folder(),
        memory_limit=warehouse.memory_limit or None,
    )
    # Named in messages as the resource they came from. An absent workflows or reference
    # folder means "none" here, as for a default: whether it was named on purpose is known
    # only where the settings were resolved (`closeconv run` checks that before the run).
    settings._origins = {
        "landing_dir": "resource landing.path", "warehouse_path": "resource warehouse.path",
        "timezone": "resource warehouse.timezone", "allow_shrink": "resource warehouse.allow_shrink",
        "auto_close_hours": "resource warehouse.auto_close_hours", "archive_dir": "resource landing.archive_path",
        "memory_limit": "resource warehouse.memory_limit",
    }
    return settings


@dg.definitions
def resources() -> dg.Definitions:
    return dg.Definitions(resources=resources_for(resolve_settings()))
