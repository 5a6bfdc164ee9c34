"""Who may see the dashboard: nobody but localhost by default; a token or OIDC when exposed.

`routerwatch dashboard` binds 127.0.0.1 unless told otherwise, and refuses any other address unless
authentication is configured (see `require_auth_for` in dashboard/cli.py). The running app enforces it:
- token: `ROUTERWATCH_DASHBOARD_TOKEN` (set by the CLI from `--token-file` or the environment); the
  login form compares digests in constant time. Wrong tokens are counted across every session of the
  server (`THROTTLE`: 10 within a minute lock sign-in for 60 s, for everyone, the right token included)
  and each one is logged to stderr, so parallel sessions cannot guess faster than one.
- oidc: Streamlit's built-in `st.login()` with an `[auth]` section in a secrets.toml the CLI passes
  (`--oidc-secrets`); `ROUTERWATCH_DASHBOARD_ALLOWED_EMAILS` (comma-separated) narrows who gets in.
"""

from __future__ import annotations

import collections
import hashlib
import hmac
import os
import sys
import threading
import time
from collections.abc import Callable

MODE_ENV = "ROUTERWATCH_DASHBOARD_AUTH"  # 'none' | 'token' | 'oidc'
TOKEN_ENV = "ROUTERWATCH_DASHBOARD_TOKEN"
ALLOWED_ENV = "ROUTERWATCH_DASHBOARD_ALLOWED_EMAILS"
MIN_TOKEN_LEN = 16


class SignInThrottle:
    """Failed sign-ins of all sessions together: `max_failures` within `window_s` -> locked for `lockout_s`.

    Module state, so one per server process (Streamlit re-runs the app script, not imported modules)."""

    def __init__(self, max_failures: int = 10, window_s: float = 60.0, lockout_s: float = 60.0,
                 clock: Callable[[], float] = time.monotonic):
        self.max_failures, self.window_s, self.lockout_s = max_failures, window_s, lockout_s
        self._clock = clock
        self._failures: collections.deque[float] = collections.deque()
        self._locked_until = 0.0
        self._lock = threading.Lock()

    def locked_for(self) -> float:
        """Seconds left of the lockout (0 when sign-in is open)."""
        with self._lock:
            return max(0.0, self._locked_until - self._clock())

    def failure(self) -> tuple[int, float]:
        """Count a failed sign-in; returns (failures in the window, seconds locked from now: 0 if not)."""
        with self._lock:
            now = self._clock()
            self._failures.append(now)
            while self._failures and now - self._failures[0] > self.window_s:
                self._failures.popleft()
            n = len(self._failures)
            if n >= self.max_failures:
                self._locked_until = now + self.lockout_s
                self._failures.clear()
                return n, self.lockout_s
            return n, 0.0


THROTTLE = SignInThrottle()
_guess_delay: Callable[[float], None] = time.sleep  # a name of its own, so tests can skip the delay alone


def _log(msg: str) -> None:
    print(f"routerwatch dashboard: {msg}", file=sys.stderr, flush=True)


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
            ip = st.context.ip_address  # None on localhost
            who = ip if isinstance(ip, str) and ip else "localhost"
            wait = THROTTLE.locked_for()
            if wait:
                _log(f"sign-in attempt from {who} refused: locked after too many failed sign-ins ({wait:.0f} s left)")
                st.error(f"Too many failed sign-ins: sign-in is locked for {wait:.0f} s more.")
                st.stop()
            if token_ok(given, expected):
                _log(f"signed in with the token from {who}")
                st.session_state["rw_authed"] = True
                st.rerun()
            n, locked = THROTTLE.failure()
            _log(f"failed sign-in from {who} ({n} in the last {THROTTLE.window_s:.0f} s)"
                 + (f"; sign-in locked for {locked:.0f} s" if locked else ""))
            _guess_delay(1.0)  # slow down guessing within a session too
            st.error("Wrong token." + (f" Too many failed sign-ins: sign-in is locked for {locked:.0f} s."
                                       if locked else ""))
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
