"""A small warehouse built by the real pipeline for the dashboard tests, and SQL to check figures.

The sample's days end yesterday, so the date presets (Last 7 days, ...) select real data.
"""

from __future__ import annotations

import shutil
from datetime import date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import duckdb

from closeconv.commands.run import _failure_message, run_pipeline
from closeconv.config import Settings
from closeconv.sample import generate_sample, write_reference

REPO = Path(__file__).resolve().parent.parent
TIMEZONE = "Europe/Berlin"
DAYS = 21
DASHBOARD_ENV = ("CLOSECONV_WAREHOUSE", "CLOSECONV_TIMEZONE", "CLOSECONV_DASHBOARD_PASSWORD",
                 "CLOSECONV_DASHBOARD_REDACT", "CLOSECONV_DASHBOARD_TOKEN_KEY", "CLOSECONV_LANDING",
                 "CLOSECONV_WORKFLOWS", "CLOSECONV_REFERENCE")


def build_warehouse(root: Path, conversations: int = 300, seed: int = 11) -> Path:
    landing, reference, workflows = root / "landing", root / "reference", root / "workflows"
    for folder in (landing, reference, workflows):
        folder.mkdir(parents=True, exist_ok=True)
    generate_sample(landing, conversations=conversations, seed=seed, start=date.today() - timedelta(days=DAYS), days=DAYS)
    write_reference(reference, seed=seed)
    shutil.copy(REPO / "workflows" / "templates" / "unassign-after-close.yaml", workflows)
    warehouse = root / "warehouse.duckdb"
    settings = Settings(landing_dir=landing, warehouse_path=warehouse, workflows_dir=workflows,
                        reference_dir=reference, timezone=TIMEZONE)
    result = run_pipeline(settings, quiet=True)
    assert result.success, _failure_message(result)
    return warehouse


def scalar(warehouse: Path, sql: str, params: list | None = None):
    con = duckdb.connect(str(warehouse), read_only=True)
    try:
        con.sql("SET TimeZone = 'UTC'")
        return con.sql(sql, params=params or []).fetchall()[0][0]
    finally:
        con.close()


def closed_count(warehouse: Path, where: str = "TRUE", params: list | None = None) -> int:
    return scalar(warehouse, f"SELECT count(*) FROM conversations WHERE status = 'closed' AND {where}", params)


def local_day(column: str) -> str:
    return f"timezone('{TIMEZONE}', {column})::DATE"


def local_today() -> date:
    """Today in the warehouse's timezone, as the dashboard's presets count days (not the machine's
    date: from 23:00 UTC, Berlin is already on the next day)."""
    return datetime.now(ZoneInfo(TIMEZONE)).date()


# --- the real server and a real browser ------------------------------------------------------

import os  # noqa: E402
import signal  # noqa: E402
import socket  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import threading  # noqa: E402
from contextlib import contextmanager  # noqa: E402

CLOSECONV = Path(sys.executable).parent / "closeconv"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]
READY = '[data-testid="stApp"][data-test-script-state="notRunning"]'


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def hermetic_env(home: Path, **extra: str) -> dict[str, str]:
    """The environment without the developer's CLOSECONV_* settings or Streamlit secrets."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLOSECONV_") and not k.startswith("STREAMLIT_")}
    env["HOME"] = str(home)
    env.update(extra)
    return env


@contextmanager
def dashboard_server(warehouse: Path, workdir: Path, *flags: str, **env_extra: str):
    """`closeconv dashboard` on a free port; yields (base URL, process). Stopped with SIGINT (Ctrl-C)."""
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    proc = subprocess.Popen([str(CLOSECONV), "dashboard", "--warehouse", str(warehouse), "--port", str(port), *flags],
                            cwd=workdir, env=hermetic_env(workdir, **env_extra), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    first_line: list[str] = []
    reader = threading.Thread(target=lambda: first_line.append(proc.stdout.readline()), daemon=True)
    reader.start()
    reader.join(timeout=90)
    try:
        line = first_line[0] if first_line else ""
        assert "serving" in line, f"no address printed: {line!r}; stderr: {proc.stderr.read() if proc.poll() is not None else ''}"
        url = line.split(" at ", 1)[1].split()[0]
        assert url == f"http://localhost:{port}/"
        yield f"http://127.0.0.1:{port}", proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                # The whole group: killing only the CLI would leave its Streamlit server running.
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


@contextmanager
def chromium():
    """Debian's Chromium under Playwright; a missing browser fails the test (never skips)."""
    import pytest
    from playwright.sync_api import sync_playwright

    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: install Debian's chromium (`apt-get install -y chromium`; "
                    "`python3 dev.py test` does it when run as root). The browser tests never skip.")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


def wait_ready(page, timeout_ms: int = 30_000) -> None:
    """Until the script run the page triggered has finished."""
    page.wait_for_selector(READY, timeout=timeout_ms)
