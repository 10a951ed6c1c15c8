"""The sign-in gate, run before any page shows data.

A password from CLOSECONV_DASHBOARD_PASSWORD (compared in constant time), or Streamlit's OIDC
`st.login` configured in .streamlit/secrets.toml. Without either, `closeconv dashboard` only
serves loopback addresses, so there is nobody to keep out.
"""

from __future__ import annotations

import hmac
import time

import streamlit as st

from dashboard.config import DashboardConfig, signin_method

WRONG_PASSWORD_DELAY_S = 1.0


def is_signed_in(cfg: DashboardConfig) -> bool:
    method = signin_method(cfg)
    if method is None:
        return True
    if method == "password":
        return bool(st.session_state.get("signed_in"))
    return bool(st.user.is_logged_in)


def _check_password(expected: str) -> None:
    typed = st.session_state.get("password", "") or ""
    if hmac.compare_digest(typed.encode(), expected.encode()):
        st.session_state["signed_in"] = True
        st.session_state.pop("sign_in_error", None)
    else:
        time.sleep(WRONG_PASSWORD_DELAY_S)  # slows guessing
        st.session_state["sign_in_error"] = True
    st.session_state["password"] = ""


def sign_in_page(cfg: DashboardConfig) -> None:
    """Ask for the password (or send to the identity provider), then stop the script."""
    _, middle, _ = st.columns([1, 1, 1])
    with middle:
        st.title("closeconv")
        st.caption("Closed conversations and support reports. Sign in to continue.")
        if signin_method(cfg) == "password":
            with st.form("sign_in"):
                st.text_input("Password", type="password", key="password")
                st.form_submit_button("Sign in", type="primary", on_click=_check_password, args=(cfg.password,))
            if st.session_state.get("sign_in_error"):
                st.error("Wrong password.")
        else:
            st.button("Sign in with your identity provider", type="primary", on_click=st.login)
    st.stop()


def sign_out_button(cfg: DashboardConfig) -> None:
    method = signin_method(cfg)
    if method == "password":
        st.sidebar.button("Sign out", on_click=lambda: st.session_state.update(signed_in=False), type="tertiary",
                          icon=":material/logout:")
    elif method == "oidc":
        st.sidebar.button(f"Sign out {st.user.get('email') or ''}".strip(), on_click=st.logout, type="tertiary",
                          icon=":material/logout:")
