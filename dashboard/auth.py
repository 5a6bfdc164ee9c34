"""Who may see the dashboard: nobody but localhost by default; a token or OIDC when exposed.

`routerwatch dashboard` binds 127.0.0.1 unless told otherwise, and refuses any other address unless
authentication is configured (see `require_auth_for` in dashboard/cli.py). The running app enforces it:
- token: `ROUTERWATCH_DASHBOARD_TOKEN` (set by the CLI from `--token-file` or the environment); the
  login form compares digests in constant time and slows down wrong guesses.
- oidc: Streamlit's built-in `st.login()` with an `[auth]` section in a secrets.toml the CLI passes
  (`--oidc-secrets`); `ROUTERWATCH_DASHBOARD_ALLOWED_EMAILS` (comma-separated) narrows who gets in.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import time

MODE_ENV = "ROUTERWATCH_DASHBOARD_AUTH"  # 'none' | 'token' | 'oidc'
TOKEN_ENV = "ROUTERWATCH_DASHBOARD_TOKEN"
ALLOWED_ENV = "ROUTERWATCH_DASHBOARD_ALLOWED_EMAILS"
MIN_TOKEN_LEN = 16


def mode() -> str:
    return os.environ.get(MODE_ENV, "none")


def token_ok(given: str, expected: str) -> bool:
    a = hashlib.sha256(given.encode()).digest()
    b = hashlib.sha256(expected.encode()).digest()
    return hmac.compare_digest(a, b)


def require() -> str | None:
    """Stop the script unless the visitor is authenticated; returns who they are (None when open)."""
    import streamlit as st  # imported here so the CLI starts without loading Streamlit

    m = mode()
    if m == "token":
        expected = os.environ.get(TOKEN_ENV, "")
        if not expected:
            st.error("Authentication is required but no token is configured; refusing to show data.")
            st.stop()
        if st.session_state.get("rw_authed"):
            return "token user"
        st.title("routerwatch")
        with st.form("login"):
            given = st.text_input("Access token", type="password")
            ok = st.form_submit_button("Sign in")
        if ok:
            if token_ok(given, expected):
                st.session_state["rw_authed"] = True
                st.rerun()
            time.sleep(1.0)  # slow down guessing
            st.error("Wrong token.")
        st.stop()
    if m == "oidc":
        user = st.user
        if not user.is_logged_in:
            st.title("routerwatch")
            st.button("Log in", on_click=st.login)
            st.stop()
        email = str(user.get("email") or "")
        allowed = [e.strip().lower() for e in os.environ.get(ALLOWED_ENV, "").split(",") if e.strip()]
        if allowed and email.lower() not in allowed:
            st.error(f"{email or 'This account'} is not allowed here.")
            st.button("Log out", on_click=st.logout)
            st.stop()
        return email or "oidc user"
    return None
