"""`closeconv dashboard`: serve the Streamlit dashboard on a published warehouse."""

from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import click

from closeconv.commands.run import ConfigurationFailed

HEALTH_TIMEOUT_S = 60


def refuse_unprotected_host(host: str, environ: dict[str, str]) -> str | None:
    """The sign-in method, or ConfigurationFailed when a non-local address would serve customer
    data (closing-note summaries) to anyone who can reach it."""
    from dashboard.config import PASSWORD_ENV, DashboardConfig, is_loopback, secrets_files, signin_method

    method = signin_method(DashboardConfig.from_env(environ))
    if method is None and not is_loopback(host):
        raise ConfigurationFailed(
            f"refusing to serve on {host}: the dashboard shows customer data and no sign-in is configured. "
            f"Set {PASSWORD_ENV} to a password (everyone signs in with it), or configure st.login (OIDC) in "
            f"an [auth] table of {secrets_files()[1]} (see docs/dashboard.md), or serve on 127.0.0.1 "
            "and put a reverse proxy with sign-in in front."
        )
    if method == "oidc":
        import importlib.util

        if importlib.util.find_spec("authlib") is None:
            raise ConfigurationFailed(
                "st.login (OIDC) is configured in .streamlit/secrets.toml but the Authlib package is not "
                f"installed. Install it (`uv add 'Authlib>=1.3.2'`) or use {PASSWORD_ENV} instead."
            )
    return method


def _check_port_free(host: str, port: int) -> None:
    """Refuse a taken port up front: else the health check could be answered by whoever holds it."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the server does: TIME_WAIT is fine
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise ConfigurationFailed(f"cannot listen on {host}:{port} ({exc.strerror}): another program uses the "
                                      "port or the address is not on this machine. Pick a free one with --port.") from None


def _wait_healthy(url: str, proc: subprocess.Popen) -> bool:
    deadline = time.monotonic() + HEALTH_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        try:
            with urllib.request.urlopen(url + "_stcore/health", timeout=2) as resp:
                if resp.status == 200:
                    return True
        except OSError:
            time.sleep(0.2)
    return False


def _stop_on_sigterm(signum, frame):
    raise KeyboardInterrupt


def serve(warehouse: Path, host: str, port: int, timezone: str | None = None,
          redact_summaries: bool = False, environ: dict[str, str] | None = None) -> int:
    """Start the real Streamlit server, print its address, and block until Ctrl-C (or until it exits)."""
    from dashboard.config import (DASHBOARD_DIR, REDACT_ENV, TIMEZONE_ENV, TOKEN_KEY_ENV, WAREHOUSE_ENV)

    env = dict(os.environ if environ is None else environ)
    env[WAREHOUSE_ENV] = str(warehouse.resolve())
    if timezone:
        env[TIMEZONE_ENV] = timezone
    else:
        env.pop(TIMEZONE_ENV, None)
    env[REDACT_ENV] = "1" if redact_summaries else ""
    env[TOKEN_KEY_ENV] = secrets.token_urlsafe(32)
    method = refuse_unprotected_host(host, env)
    _check_port_free(host, port)
    cmd = [sys.executable, "-m", "streamlit", "run", str(DASHBOARD_DIR / "server.py"),
           "--server.address", host, "--server.port", str(port), "--server.headless", "true",
           "--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none",
           "--server.runOnSave", "false", "--global.developmentMode", "false"]
    # Streamlit's own banner names addresses we did not choose (Network URL); we print ours.
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL)
    signal.signal(signal.SIGTERM, _stop_on_sigterm)  # a stopped CLI never leaves the server behind
    shown_host = "localhost" if host in ("127.0.0.1", "localhost") else host
    url = f"http://{shown_host}:{port}/"
    try:
        if not _wait_healthy(f"http://{host if host not in ('0.0.0.0', '::') else '127.0.0.1'}:{port}/", proc):
            proc.terminate()
            proc.wait(timeout=10)
            click.echo(f"closeconv dashboard: the server did not start on {host}:{port} (is the port in use?)", err=True)
            return 1
        click.echo(f"closeconv dashboard: serving {warehouse} at {url}" + (f" (sign-in: {method})" if method else ""))
        click.echo("  Press Ctrl-C to stop.", err=True)
        sys.stdout.flush()
        return proc.wait()
    except KeyboardInterrupt:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
        click.echo("closeconv dashboard: stopped.", err=True)
        return 0


@click.command("dashboard")
@click.option("--warehouse", "warehouse_path", type=click.Path(path_type=Path),
              help="Published DuckDB file. [env CLOSECONV_WAREHOUSE; default data/warehouse.duckdb]")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on. Anything but a loopback address needs sign-in configured.")
@click.option("--port", type=click.IntRange(1, 65535), default=8501, show_default=True)
@click.option("--timezone", help="Workspace timezone (IANA), overriding the warehouse's. [env CLOSECONV_TIMEZONE]")
@click.option("--redact-summaries", is_flag=True, help="Hide closing-note summaries on screen and in CSV exports.")
def command(warehouse_path: Path | None, host: str, port: int, timezone: str | None, redact_summaries: bool) -> None:
    """Serve the dashboard: Conversation List, Reports, Users, Workflows, Pipeline health.

    Sign-in: set CLOSECONV_DASHBOARD_PASSWORD, or configure st.login (OIDC) in
    .streamlit/secrets.toml. Without either, only 127.0.0.1 / localhost is served.
    A missing or empty warehouse shows a page that says how to build one.
    """
    from closeconv.config import ConfigError, check_timezone, resolve_settings

    # The same resolution as `closeconv run` (flags, environment, .env, defaults). The workspace
    # timezone is the warehouse's own unless a timezone setting is given.
    try:
        settings = resolve_settings({"warehouse_path": warehouse_path, "timezone": timezone})
        timezone = settings.timezone if settings.origin("timezone") != "default" else None
        if timezone is not None:
            check_timezone(timezone, settings.origin("timezone"))
    except ConfigError as exc:
        raise ConfigurationFailed(str(exc)) from None
    warehouse = settings.warehouse_path
    if warehouse.exists() and not warehouse.is_file():
        raise ConfigurationFailed(f"warehouse {str(warehouse)!r} is a folder, not a DuckDB file. "
                                  "Point --warehouse / CLOSECONV_WAREHOUSE at the published .duckdb file.")
    sys.exit(serve(warehouse, host, port, timezone, redact_summaries))
