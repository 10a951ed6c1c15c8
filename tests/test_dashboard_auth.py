"""Safe to expose: no serving beyond loopback without sign-in; the password gate end to end,
in AppTest and in a real browser against `closeconv dashboard`; CSV links need a signed token."""

from __future__ import annotations

import re
import subprocess

import httpx
import pytest
from playwright.sync_api import expect
from streamlit.testing.v1 import AppTest

from closeconv.commands.dashboard import refuse_unprotected_host
from closeconv.commands.run import ConfigurationFailed
from dashboard.config import oidc_configured
from dashboard_support import (CLOSECONV, DASHBOARD_ENV, REPO, build_warehouse, chromium, closed_count,
                               dashboard_server, hermetic_env, wait_ready)

PASSWORD = "correct horse battery staple"
OIDC_SECRETS = """
[auth]
redirect_uri = "https://dash.example.com/oauth2callback"
cookie_secret = "0123456789abcdef0123456789abcdef"
client_id = "closeconv"
client_secret = "s3cret"
server_metadata_url = "https://login.example.com/.well-known/openid-configuration"
"""


@pytest.fixture(scope="module")
def warehouse(tmp_path_factory):
    return build_warehouse(tmp_path_factory.mktemp("dash-auth"), conversations=150, seed=5)


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.0.2.10", "dash.example.com"])
def test_refuses_a_non_local_address_without_sign_in(tmp_path, warehouse, host):
    proc = subprocess.run([str(CLOSECONV), "dashboard", "--warehouse", str(warehouse), "--host", host, "--port", "9"],
                          cwd=tmp_path, env=hermetic_env(tmp_path), capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2, proc.stderr
    assert f"refusing to serve on {host}" in proc.stderr
    assert "CLOSECONV_DASHBOARD_PASSWORD" in proc.stderr and "secrets.toml" in proc.stderr


def test_loopback_needs_no_sign_in_and_a_password_unlocks_any_address():
    assert refuse_unprotected_host("127.0.0.1", {}) is None
    assert refuse_unprotected_host("localhost", {}) is None
    assert refuse_unprotected_host("0.0.0.0", {"CLOSECONV_DASHBOARD_PASSWORD": "pw"}) == "password"


def test_oidc_secrets_are_recognised_and_need_authlib(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert oidc_configured(tmp_path) is None
    (tmp_path / ".streamlit").mkdir()
    (tmp_path / ".streamlit" / "secrets.toml").write_text(OIDC_SECRETS)
    assert oidc_configured(tmp_path) == tmp_path / ".streamlit" / "secrets.toml"
    try:
        import authlib  # noqa: F401
    except ImportError:
        with pytest.raises(ConfigurationFailed, match="Authlib"):
            refuse_unprotected_host("0.0.0.0", {})
    else:
        assert refuse_unprotected_host("0.0.0.0", {}) == "oidc"


def test_password_gate_in_apptest(warehouse, monkeypatch):
    for name in DASHBOARD_ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("CLOSECONV_WAREHOUSE", str(warehouse))
    monkeypatch.setenv("CLOSECONV_DASHBOARD_PASSWORD", PASSWORD)
    at = AppTest.from_file(str(REPO / "dashboard" / "app.py"), default_timeout=60)
    at.run()
    assert not at.exception
    assert not at.dataframe and not [m for m in at.markdown if "conversations" in m.value]
    at.text_input(key="password").input("guess")  # a form: the value goes with the submit
    at.button[0].click().run()
    assert [e.value for e in at.error] == ["Wrong password."]
    assert not at.dataframe
    at.text_input(key="password").input(PASSWORD)
    at.button[0].click().run()
    assert not at.error, [e.value for e in at.error]
    assert any(m.value.endswith(f"{closed_count(warehouse):,} conversations") for m in at.markdown)


def test_password_sign_in_end_to_end(warehouse, tmp_path):
    with dashboard_server(warehouse, tmp_path / "srv", CLOSECONV_DASHBOARD_PASSWORD=PASSWORD) as (base, _), chromium() as browser:
        # The CSV route serves nothing without a token minted by a signed-in page.
        assert httpx.get(f"{base}/api/export/conversations.csv").status_code == 403
        assert httpx.get(f"{base}/api/export/conversations.csv", params={"token": "e30.forged"}).status_code == 403
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.goto(f"{base}/?category=Billing")
        wait_ready(page)
        password = page.get_by_label("Password", exact=True)
        expect(password).to_be_visible()
        assert page.locator(".st-key-match_count").count() == 0 and page.get_by_test_id("stDataFrame").count() == 0
        password.fill("wrong")
        page.get_by_role("button", name="Sign in").click()
        expect(page.get_by_text("Wrong password.")).to_be_visible(timeout=15_000)
        page.get_by_label("Password", exact=True).fill(PASSWORD)
        page.get_by_role("button", name="Sign in").click()
        billing = closed_count(warehouse, "category = 'Billing'")
        expect(page.locator(".st-key-match_count")).to_have_text(f"{billing:,} conversations", timeout=20_000)
        href = page.get_by_role("link", name="Download CSV").get_attribute("href")
        assert re.fullmatch(r"/api/export/conversations\.csv\?token=[\w-]+\.[\w-]+", href)
        csv = httpx.get(base + href)
        assert csv.status_code == 200
        assert len(csv.text.strip().splitlines()) == billing + 1
        tampered = href[:-3] + ("AAA" if not href.endswith("AAA") else "BBB")
        assert httpx.get(base + tampered).status_code == 403


def test_configuration_errors_exit_2_naming_the_fix(tmp_path, warehouse):
    import socket

    def run(*flags: str) -> subprocess.CompletedProcess:
        return subprocess.run([str(CLOSECONV), "dashboard", *flags], cwd=tmp_path, env=hermetic_env(tmp_path),
                              capture_output=True, text=True, timeout=60)

    bad_tz = run("--warehouse", str(warehouse), "--timezone", "Mars/Olympus")
    assert bad_tz.returncode == 2 and "unknown timezone 'Mars/Olympus'" in bad_tz.stderr and "IANA" in bad_tz.stderr
    folder = run("--warehouse", str(tmp_path))
    assert folder.returncode == 2 and "is a folder" in folder.stderr
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        busy = run("--warehouse", str(warehouse), "--port", str(port))
    assert busy.returncode == 2 and "--port" in busy.stderr
