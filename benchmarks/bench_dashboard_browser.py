"""Benchmark: how long a filter change takes to show its new count in Chromium.

    .venv/bin/python benchmarks/bench_dashboard_browser.py data/warehouse.duckdb
    .venv/bin/python benchmarks/bench_dashboard_browser.py big.duckdb --changes 30

Starts the real server (`closeconv dashboard`) on a free port against the warehouse, opens the
Conversation List in Debian's Chromium (Playwright), then adds one more value to a sidebar
filter each time (Category, then Closed by user, Channel, Opened by source), so every state is
new and no answer comes from the cache. Each change is timed from the click on the option to
the end of the rerun it caused, when the new `N conversations` line (and the first page of the
table) is on screen. Prints the median and p95 (target at 1M closed conversations: under 1.5 s).

Build a large warehouse with `closeconv generate --conversations 1000000 ...` + `closeconv run`.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

from playwright.sync_api import Error as PlaywrightError
from playwright.sync_api import sync_playwright

from closeconv.reports.access import Warehouse

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]
READY = '[data-testid="stApp"][data-test-script-state="notRunning"]'
CLOSECONV = Path(sys.executable).parent / "closeconv"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(warehouse: Path, port: int) -> subprocess.Popen:
    proc = subprocess.Popen([str(CLOSECONV), "dashboard", "--warehouse", str(warehouse), "--port", str(port)],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                            start_new_session=True)  # its own process group, so stop_server reaches Streamlit too
    line: list[str] = []
    reader = threading.Thread(target=lambda: line.append(proc.stdout.readline()), daemon=True)
    reader.start()
    reader.join(timeout=120)
    if not line or "serving" not in line[0]:
        proc.kill()
        raise SystemExit(f"the dashboard did not start: {line}")
    return proc


def stop_server(proc: subprocess.Popen) -> None:
    """Ctrl-C, as a person would; if it has not stopped in 30 s, kill its process group."""
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        print("(the dashboard did not stop on Ctrl-C within 30 s; killed)", flush=True)


def p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]


# Resolves once the script run triggered after it was installed has finished: the count line
# then holds the new count (whether or not the number differs).
WATCH_RERUN = """() => {
    const app = document.querySelector('[data-testid="stApp"]');
    window.__rerunDone = false;
    let started = false;
    const observer = new MutationObserver(() => {
        const state = app.dataset.testScriptState;
        if (state === 'running') started = true;
        if (started && state === 'notRunning') { window.__rerunDone = true; observer.disconnect(); }
    });
    observer.observe(app, {attributes: true, attributeFilter: ['data-test-script-state']});
}"""
FILTERS = ("Category", "Closed by user", "Channel", "Opened by source")


def add_one_value(page, label: str) -> tuple[float | None, str]:
    """Pick the first value not yet chosen in the `label` filter; seconds until its rerun ended."""
    page.get_by_test_id("stMultiSelect").filter(has_text=label).click(timeout=5_000)
    options = page.get_by_role("option").filter(has_not_text="Select all")
    if options.count() == 0:
        page.keyboard.press("Escape")
        return None, ""
    choice = options.first.inner_text(timeout=5_000)
    page.evaluate(WATCH_RERUN)
    started = time.perf_counter()
    page.get_by_role("option", name=choice, exact=True).click(timeout=5_000)
    page.wait_for_function("() => window.__rerunDone", timeout=60_000, polling="raf")
    elapsed = time.perf_counter() - started
    page.keyboard.press("Escape")
    page.wait_for_selector(READY)
    return elapsed, choice


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("warehouse", type=Path)
    parser.add_argument("--changes", type=int, default=20, help="Filter changes to time.")
    args = parser.parse_args()
    wh = Warehouse(args.warehouse)
    if wh.is_empty():
        raise SystemExit(f"{args.warehouse}: no conversations to filter")
    closed = wh.scalar("SELECT count(*) FROM conversations WHERE status = 'closed'")
    port = free_port()
    proc = start_server(args.warehouse, port)
    timings: list[float] = []
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1440, "height": 1000})
            page.goto(f"http://127.0.0.1:{port}/")
            page.wait_for_selector(READY, timeout=120_000)
            count = page.locator(".st-key-match_count")
            count.wait_for(timeout=120_000)
            for label in FILTERS:
                failures = 0
                while len(timings) < args.changes and failures < 3:
                    try:
                        elapsed, choice = add_one_value(page, label)
                    except PlaywrightError:  # the dropdown redrew under the click: close it, try again
                        page.keyboard.press("Escape")
                        page.wait_for_selector(READY)
                        failures += 1
                        continue
                    if elapsed is None:  # every value of this filter is already chosen
                        break
                    timings.append(elapsed)
                    print(f"  + {label} = {choice:<24} {count.inner_text():>24}  {elapsed * 1000:7.0f} ms", flush=True)
            browser.close()
    finally:
        stop_server(proc)
    if not timings:
        raise SystemExit("no filter change could be made")
    print(f"\nfilter change -> new count in Chromium, {closed:,} closed conversations, {len(timings)} changes:")
    print(f"  median {statistics.median(timings) * 1000:.0f} ms   p95 {p95(timings) * 1000:.0f} ms   "
          f"max {max(timings) * 1000:.0f} ms   (target: under 1,500 ms at 1M)")


if __name__ == "__main__":
    main()
