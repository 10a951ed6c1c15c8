"""What the dashboard serves and to whom, read from the environment (set by `closeconv dashboard`).

Streamlit-free, so the CLI can check the same rules before it starts a server.
"""

from __future__ import annotations

import ipaddress
import os
import tomllib
from dataclasses import dataclass
from pathlib import Path

WAREHOUSE_ENV = "CLOSECONV_WAREHOUSE"
TIMEZONE_ENV = "CLOSECONV_TIMEZONE"
PASSWORD_ENV = "CLOSECONV_DASHBOARD_PASSWORD"
REDACT_ENV = "CLOSECONV_DASHBOARD_REDACT"
# Key that signs CSV download links; `closeconv dashboard` draws a fresh one per server start.
TOKEN_KEY_ENV = "CLOSECONV_DASHBOARD_TOKEN_KEY"
DEFAULT_WAREHOUSE = "data/warehouse.duckdb"
DASHBOARD_DIR = Path(__file__).resolve().parent


@dataclass(frozen=True)
class DashboardConfig:
    warehouse_path: Path
    timezone_override: str | None
    password: str | None
    redact_summaries: bool

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> "DashboardConfig":
        env = os.environ if environ is None else environ
        return cls(
            warehouse_path=Path(env.get(WAREHOUSE_ENV) or DEFAULT_WAREHOUSE),
            timezone_override=env.get(TIMEZONE_ENV) or None,
            password=env.get(PASSWORD_ENV) or None,
            redact_summaries=env.get(REDACT_ENV, "") not in ("", "0", "false"),
        )


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def secrets_files(cwd: Path | None = None) -> list[Path]:
    """Where Streamlit looks for secrets.toml: the user's, the working folder's, the app's."""
    cwd = cwd or Path.cwd()
    return [Path.home() / ".streamlit" / "secrets.toml", cwd / ".streamlit" / "secrets.toml",
            DASHBOARD_DIR / ".streamlit" / "secrets.toml"]


def oidc_configured(cwd: Path | None = None) -> Path | None:
    """The secrets.toml that configures `st.login` (an [auth] table with a redirect_uri and
    cookie_secret, and a client_id, directly or for a named provider), or None."""
    for path in secrets_files(cwd):
        if not path.is_file():
            continue
        try:
            auth = tomllib.loads(path.read_text()).get("auth")
        except (OSError, tomllib.TOMLDecodeError):
            continue
        if not isinstance(auth, dict) or not auth.get("redirect_uri") or not auth.get("cookie_secret"):
            continue
        providers = [auth] + [v for v in auth.values() if isinstance(v, dict)]
        if any(p.get("client_id") for p in providers):
            return path
    return None


def signin_method(config: DashboardConfig, cwd: Path | None = None) -> str | None:
    """'password' or 'oidc' when sign-in is configured, else None. A password wins: it needs
    no identity provider and no extra package."""
    if config.password:
        return "password"
    if oidc_configured(cwd):
        return "oidc"
    return None
