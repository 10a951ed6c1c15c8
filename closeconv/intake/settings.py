"""Where the receiver's signing keys and folders come from, checked before it starts.

Keys come from the environment (`CLOSECONV_RESPONDIO_SIGNING_KEYS`, comma-separated, one per
respond.io webhook; `CLOSECONV_CHATWOOT_WEBHOOK_SECRET`) or from a secrets file with the same
names (`--secrets FILE` / `CLOSECONV_INTAKE_SECRETS_FILE`, KEY=value lines). The environment
wins. A key is never printed: `describe()` says how many there are and where they came from.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from closeconv.config import ConfigError

RESPONDIO_KEYS_ENV = "CLOSECONV_RESPONDIO_SIGNING_KEYS"
CHATWOOT_SECRET_ENV = "CLOSECONV_CHATWOOT_WEBHOOK_SECRET"
SECRETS_FILE_ENV = "CLOSECONV_INTAKE_SECRETS_FILE"


@dataclass(frozen=True)
class IntakeSettings:
    landing_dir: Path
    archive_dir: Path
    respondio_keys: tuple[str, ...] = field(default=(), repr=False)
    chatwoot_secret: str | None = field(default=None, repr=False)
    origins: dict[str, str] = field(default_factory=dict, compare=False, repr=False)
    rotate_bytes: int = 64 << 20
    rotate_seconds: float = 60.0

    def describe(self) -> str:
        rio = f"{len(self.respondio_keys)} respond.io signing key(s) from {self.origins.get('respondio', '-')}"
        cw = f"Chatwoot secret from {self.origins['chatwoot']}" if self.chatwoot_secret else "no Chatwoot secret (endpoint off)"
        return f"{rio}; {cw}"


def _secrets_file(path: Path) -> dict[str, str]:
    from dotenv import dotenv_values

    if not path.is_file():
        raise ConfigError(f"secrets file {str(path)!r} does not exist (from --secrets / {SECRETS_FILE_ENV}). "
                          f"Create it with lines such as {RESPONDIO_KEYS_ENV}=key1,key2, or unset it.")
    return {k: v for k, v in dotenv_values(path).items() if v is not None}


def resolve_intake_settings(landing_dir: Path, archive_dir: Path | None = None, secrets_file: Path | None = None,
                            environ: dict[str, str] | None = None, **tuning) -> IntakeSettings:
    """Read and check the receiver's settings; raise ConfigError naming the setting and the fix."""
    environ = os.environ if environ is None else environ
    secrets_path = secrets_file or (Path(environ[SECRETS_FILE_ENV]) if environ.get(SECRETS_FILE_ENV) else None)
    from_file = _secrets_file(secrets_path) if secrets_path else {}
    origins: dict[str, str] = {}

    def pick(name: str, label: str) -> str | None:
        if environ.get(name):
            origins[label] = name
            return environ[name]
        if from_file.get(name):
            origins[label] = f"{secrets_path} ({name})"
            return from_file[name]
        return None

    raw_keys = pick(RESPONDIO_KEYS_ENV, "respondio") or ""
    keys = tuple(k.strip() for k in raw_keys.split(",") if k.strip())
    secret = pick(CHATWOOT_SECRET_ENV, "chatwoot")
    if not keys and not secret:
        raise ConfigError(
            f"no signing key configured: set {RESPONDIO_KEYS_ENV} (the signing key of each respond.io webhook, "
            f"comma-separated) and/or {CHATWOOT_SECRET_ENV}, in the environment or in a secrets file "
            f"(--secrets FILE). An unsigned request is never accepted."
        )
    landing_dir = Path(landing_dir)
    if landing_dir.exists() and not landing_dir.is_dir():
        raise ConfigError(f"landing folder {str(landing_dir)!r} is a file, not a folder. "
                          "Point --landing / CLOSECONV_LANDING at the folder the pipeline reads.")
    archive_dir = Path(archive_dir) if archive_dir else landing_dir.parent / "intake-archive"
    if archive_dir.resolve().is_relative_to(landing_dir.resolve()):
        raise ConfigError(f"archive folder {str(archive_dir)!r} is inside the landing folder; the pipeline would "
                          "read the raw bodies as events. Put it beside the landing folder (--archive DIR).")
    if archive_dir.exists() and not archive_dir.is_dir():
        raise ConfigError(f"archive folder {str(archive_dir)!r} is a file, not a folder (--archive DIR).")
    return IntakeSettings(landing_dir=landing_dir, archive_dir=archive_dir, respondio_keys=keys,
                          chatwoot_secret=secret, origins=origins, **tuning)
