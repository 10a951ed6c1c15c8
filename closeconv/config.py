"""Run settings: where the landing folder, warehouse, workflows and reference data live."""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

ENV_PREFIX = "CLOSECONV_"
DEFAULTS: dict[str, str] = {
    "landing_dir": "data/landing",
    "warehouse_path": "data/warehouse.duckdb",
    "workflows_dir": "workflows",
    "reference_dir": "data/reference",
    "timezone": "UTC",
}
ENV_NAMES: dict[str, str] = {
    "landing_dir": "CLOSECONV_LANDING",
    "warehouse_path": "CLOSECONV_WAREHOUSE",
    "workflows_dir": "CLOSECONV_WORKFLOWS",
    "reference_dir": "CLOSECONV_REFERENCE",
    "timezone": "CLOSECONV_TIMEZONE",
}


AUTO_CLOSE_ENV = "CLOSECONV_AUTO_CLOSE_HOURS"


class ConfigError(ValueError):
    """A setting is wrong. The message says which, where it came from, and the fix."""


@dataclass(frozen=True)
class Settings:
    landing_dir: Path = Path(DEFAULTS["landing_dir"])
    warehouse_path: Path = Path(DEFAULTS["warehouse_path"])
    workflows_dir: Path = Path(DEFAULTS["workflows_dir"])
    reference_dir: Path = Path(DEFAULTS["reference_dir"])
    timezone: str = DEFAULTS["timezone"]
    # auto-close (closeconv/auto_close.py): hours as given, None = off; kept apart from DEFAULTS
    # because it is optional and has no default path.
    auto_close_hours: str | None = None
    # Where a setting came from, for error messages ("--landing", "CLOSECONV_LANDING", "default").
    origins: dict[str, str] = field(default_factory=dict, compare=False, repr=False)

    @property
    def state_dir(self) -> Path:
        """Pipeline-private folder beside the warehouse (staging database, lock)."""
        return self.warehouse_path.parent / ".closeconv"

    @property
    def staging_path(self) -> Path:
        return self.state_dir / f"{self.warehouse_path.stem}.staging.duckdb"

    def with_(self, **changes) -> "Settings":
        return replace(self, **changes)

    def validate(self) -> "Settings":
        """Raise ConfigError naming the setting, its origin and the fix."""
        def where(name: str) -> str:
            return self.origins.get(name, "default")

        try:
            ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise ConfigError(
                f"unknown timezone {self.timezone!r} (from {where('timezone')}). "
                "Use an IANA name such as 'UTC', 'Europe/Berlin' or 'America/New_York'."
            ) from None
        from closeconv.auto_close import parse_auto_close_hours

        try:
            parse_auto_close_hours(self.auto_close_hours, where("auto_close_hours"))
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
        if self.landing_dir.exists() and not self.landing_dir.is_dir():
            raise ConfigError(
                f"landing folder {str(self.landing_dir)!r} is a file, not a folder (from {where('landing_dir')}). "
                "Point --landing / CLOSECONV_LANDING at the folder that holds the event files."
            )
        if not self.landing_dir.is_dir():
            raise ConfigError(
                f"landing folder {str(self.landing_dir)!r} does not exist (from {where('landing_dir')}). "
                "Create it and drop event files into it, or point --landing / CLOSECONV_LANDING at "
                "an existing folder (`closeconv generate --out DIR` writes sample data)."
            )
        # A folder named on purpose must exist: a typo must not silently mean "no workflows".
        for name, flag in (("workflows_dir", "--workflows / CLOSECONV_WORKFLOWS"), ("reference_dir", "--reference / CLOSECONV_REFERENCE")):
            path = getattr(self, name)
            if where(name) != "default" and not path.exists():
                raise ConfigError(
                    f"{name.split('_')[0]} folder {str(path)!r} does not exist (from {where(name)}). "
                    f"Create it, fix the path, or leave {flag} unset for the default."
                )
        if self.workflows_dir.exists() and not self.workflows_dir.is_dir():
            raise ConfigError(
                f"workflows path {str(self.workflows_dir)!r} is not a folder (from {where('workflows_dir')})."
            )
        if self.reference_dir.exists() and not self.reference_dir.is_dir():
            raise ConfigError(
                f"reference path {str(self.reference_dir)!r} is not a folder (from {where('reference_dir')})."
            )
        return self

    def to_env(self) -> dict[str, str]:
        """The same settings as CLOSECONV_* environment variables (what Dagster resources read)."""
        return {
            ENV_NAMES["landing_dir"]: str(self.landing_dir),
            ENV_NAMES["warehouse_path"]: str(self.warehouse_path),
            ENV_NAMES["workflows_dir"]: str(self.workflows_dir),
            ENV_NAMES["reference_dir"]: str(self.reference_dir),
            ENV_NAMES["timezone"]: self.timezone,
            AUTO_CLOSE_ENV: self.auto_close_hours or "",  # "" = off, even if the shell sets it
        }


def resolve_settings(flags: dict[str, object | None] | None = None, environ: dict[str, str] | None = None) -> Settings:
    """Flags win over environment variables, which win over defaults."""
    flags = flags or {}
    environ = os.environ if environ is None else environ
    values: dict[str, object] = {}
    origins: dict[str, str] = {}
    for name, default in DEFAULTS.items():
        flag = flags.get(name)
        env_name = ENV_NAMES[name]
        if flag not in (None, ""):
            values[name], origins[name] = flag, f"--{name.split('_')[0]}"
        elif environ.get(env_name):
            values[name], origins[name] = environ[env_name], env_name
        else:
            values[name], origins[name] = default, "default"
    auto_close = flags.get("auto_close_hours")
    if auto_close not in (None, ""):
        origins["auto_close_hours"] = "--auto-close-hours"
    elif environ.get(AUTO_CLOSE_ENV):
        auto_close, origins["auto_close_hours"] = environ[AUTO_CLOSE_ENV], AUTO_CLOSE_ENV
    return Settings(
        landing_dir=Path(str(values["landing_dir"])),
        warehouse_path=Path(str(values["warehouse_path"])),
        workflows_dir=Path(str(values["workflows_dir"])),
        reference_dir=Path(str(values["reference_dir"])),
        timezone=str(values["timezone"]),
        auto_close_hours=None if auto_close in (None, "") else str(auto_close),
        origins=origins,
    )
