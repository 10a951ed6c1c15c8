"""End to end: `closeconv dashboard` (the real Streamlit server) on a warehouse built by the real
pipeline, driven by Playwright in Debian's Chromium.

Set CLOSECONV_SCREENSHOTS=DIR to save a screenshot of every page there (docs/images/ in the README).
"""

from __future__ import annotations

import csv
import io
import os
from datetime import date, timedelta
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import pytest
from playwright.sync_api import expect

from dashboard_support import build_warehouse, chromium, closed_count, dashboard_server, local_day, scalar, wait_ready

SCREENSHOTS = os.environ.get("CLOSECONV_SCREENSHOTS")
PAGES = [("Conversation List", "/", "conversation-list"), ("Reports", "/reports", "reports"),
         ("Users", "/users", "users"), ("Workflows", "/workflows", "workflows"),
         ("Pipeline health", "/health", "health")]
SHARED_FILTER_PAGES = ("/", "/reports", "/users")


@pytest.fixture(scope="module")
def warehouse(tmp_path_factory):
    return build_warehouse(tmp_path_factory.mktemp("dash-e2e"), conversations=400, seed=11)


@pytest.fixture(scope="module")
def server(warehouse, tmp_path_factory):
    with dashboard_server(warehouse, tmp_path_factory.mktemp("dash-e2e-srv")) as (base, proc):
        yield base


@pytest.fixture(scope="module")
def browser():
    with chromium() as b:
        yield b


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1440, "height": 1000}, accept_downloads=True)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    yield page
    context.close()
    assert not errors, errors


def save_png(page, name: str) -> None:
    """A screenshot in 128 colours: a fraction of the bytes, the same look for flat UI."""
    from PIL import Image

    path = Path(SCREENSHOTS) / f"{name}.png"
    page.screenshot(path=str(path))
    Image.open(path).convert("RGB").quantize(colors=128).save(path, optimize=True)


def screenshot(page, name: str) -> None:
    """The whole page: the viewport grows to the content (Streamlit scrolls inside the page)."""
    page.wait_for_timeout(800)  # let charts finish drawing
    height = page.evaluate("document.querySelector('[data-testid=\"stMain\"]').scrollHeight")
    size = page.viewport_size
    page.set_viewport_size({"width": size["width"], "height": min(max(height, size["height"]), 2600)})
    page.wait_for_timeout(500)
    save_png(page, name)
    page.set_viewport_size(size)


def count_line(page):
    return page.locator(".st-key-match_count")


def query(page) -> dict[str, list[str]]:
    return parse_qs(urlparse(page.url).query)


def week():
    """The last 7 local days, which the sample covers."""
    return date.today() - timedelta(days=7), date.today() - timedelta(days=1)


def test_a_url_with_filters_restores_the_view_and_opens_a_row(server, warehouse, page):
    first, last = week()
    where = f"category = 'Billing' AND {local_day('closed_at')} BETWEEN ? AND ?"
    expected = closed_count(warehouse, where, [first, last])
    assert expected > 0
    newest = scalar(warehouse, f"SELECT conversation_id FROM conversations WHERE status = 'closed' AND {where} "
                               "ORDER BY closed_at DESC, conversation_id DESC LIMIT 1", [first, last])
    page.goto(f"{server}/?category=Billing&from={first}&to={last}")
    wait_ready(page)
    expect(count_line(page)).to_have_text(f"{expected:,} conversations")
    # The grid draws on a canvas: pick the first row by its selection box, then read the drill-down.
    grid = page.get_by_test_id("stDataFrame")
    box = grid.bounding_box()
    page.mouse.click(box["x"] + 16, box["y"] + 35 + 17)
    dialog = page.get_by_role("dialog")
    expect(dialog).to_contain_text(newest, timeout=20_000)
    expect(dialog).to_contain_text("Why this first response time")
    expect(dialog).to_contain_text("Timeline")
    assert query(page)["conversation"] == [newest]
    expect(dialog.get_by_test_id("stMetricValue").first).to_have_text("Closed")
    if SCREENSHOTS:
        wait_ready(page)
        page.wait_for_timeout(1000)
        save_png(page, "drill-down")
    page.keyboard.press("Escape")
    expect(dialog).to_have_count(0)
    expect(page).not_to_have_url(f"conversation={newest}", timeout=10_000)


def test_changing_a_filter_updates_the_url_and_the_count(server, warehouse, page):
    page.goto(f"{server}/?category=Billing")
    wait_ready(page)
    billing = closed_count(warehouse, "category = 'Billing'")
    expect(count_line(page)).to_have_text(f"{billing:,} conversations")
    page.get_by_test_id("stMultiSelect").filter(has_text="Closed by source").click()
    page.get_by_role("option", name="User", exact=True).click()
    page.keyboard.press("Escape")
    user_billing = closed_count(warehouse, "category = 'Billing' AND closed_by_source = 'user'")
    expect(count_line(page)).to_have_text(f"{user_billing:,} conversations", timeout=20_000)
    params = query(page)
    assert params["category"] == ["Billing"] and params["closed_by_source"] == ["user"]


def test_download_csv_exports_every_match(server, warehouse, page):
    page.goto(f"{server}/?category=Billing&category=Sales&page_size=25")
    wait_ready(page)
    expected = closed_count(warehouse, "category IN ('Billing', 'Sales')")
    assert expected > 25  # more than one page: the export is not the page
    expect(count_line(page)).to_have_text(f"{expected:,} conversations")
    with page.expect_download() as download:
        page.get_by_role("link", name="Download CSV").click()
    path = download.value.path()
    rows = list(csv.DictReader(io.StringIO(Path(path).read_text())))
    assert len(rows) == expected
    assert {r["category"] for r in rows} == {"Billing", "Sales"}
    assert download.value.suggested_filename.startswith("closeconv-conversations-")


def test_every_page_opens_and_keeps_the_shared_filters(server, warehouse, page):
    page.goto(f"{server}/?category=Billing")
    wait_ready(page)
    billing = closed_count(warehouse, "category = 'Billing'")
    for title, path, name in PAGES:
        if path != "/":
            page.get_by_test_id("stTopNavLink").filter(has_text=title).first.click()
            page.wait_for_function("path => location.pathname === path", arg=path, timeout=15_000)
        if path in SHARED_FILTER_PAGES:  # the one filter bar: its filters follow the manager
            page.wait_for_function("() => new URLSearchParams(location.search).getAll('category').join() === 'Billing'",
                                   timeout=15_000)
        wait_ready(page)
        expect(page.get_by_role("heading", name=title, exact=True)).to_be_visible(timeout=20_000)
        expect(page.get_by_text("Data as of")).to_be_visible()
        assert page.get_by_test_id("stException").count() == 0, page.get_by_test_id("stException").first.inner_text()
        if path == "/users":  # its CSV: one row per user shown
            shown = int(count_line(page).inner_text().split()[0].replace(",", ""))
            href = page.get_by_role("link", name="Download CSV").get_attribute("href")
            body = page.request.get(server + href)
            assert body.ok
            assert len(list(csv.DictReader(io.StringIO(body.text())))) == shown > 0
        if path == "/reports":
            tile = page.get_by_test_id("stMetric").filter(has_text="Closed").first
            expect(tile).to_contain_text(f"{billing:,}")
        if SCREENSHOTS:
            screenshot(page, name)


def test_clicking_an_frt_bucket_lists_its_conversations(server, warehouse, page):
    from closeconv.reports.filters import FRT_BUCKET_LABELS

    tallest, n = scalar(warehouse, "SELECT list_value(frt_bucket, count(*)::VARCHAR) FROM conversations "
                                   "WHERE status = 'closed' AND frt_bucket IS NOT NULL GROUP BY frt_bucket "
                                   "ORDER BY count(*) DESC LIMIT 1")
    page.goto(f"{server}/reports")
    wait_ready(page)
    chart = page.get_by_test_id("stVegaLiteChart").nth(1)  # after opened-vs-closed
    chart.scroll_into_view_if_needed()
    page.wait_for_timeout(500)
    box = chart.bounding_box()
    band = (box["width"] - 60) / len(FRT_BUCKET_LABELS)
    page.mouse.click(box["x"] + 60 + band * (FRT_BUCKET_LABELS.index(tallest) + 0.5), box["y"] + 120)
    expect(count_line(page)).to_have_text(f"{int(n):,} conversations", timeout=20_000)
    page.wait_for_function("b => new URLSearchParams(location.search).get('frt_bucket') === b", arg=tallest)
    expect(page.get_by_text(f"Only first response times in {tallest}")).to_be_visible()
