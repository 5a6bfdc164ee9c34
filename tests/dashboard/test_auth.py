"""Token sign-in: failed attempts are throttled across sessions (10 a minute, then 60 s locked for
everyone) and each is logged; AppTest sessions share the server process as browser sessions do."""

from __future__ import annotations

import pytest
from streamlit.testing.v1 import AppTest

from dashboard import auth
from dashboard.auth import SignInThrottle
from tests.dashboard.conftest import APP

TOKEN = "the-right-token-for-throttle-tests"


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def test_throttle_counts_and_expires():
    clock = Clock()
    th = SignInThrottle(max_failures=10, window_s=60, lockout_s=60, clock=clock)
    for i in range(9):
        assert th.failure() == (i + 1, 0.0)
        clock.t += 1
    assert th.locked_for() == 0
    assert th.failure() == (10, 60.0)
    assert th.locked_for() == 60
    clock.t += 59
    assert th.locked_for() == 1
    clock.t += 1.5
    assert th.locked_for() == 0
    # failures older than the window no longer count
    for _ in range(9):
        th.failure()
    clock.t += 61
    assert th.failure() == (1, 0.0)


def _session(password: str) -> AppTest:
    at = AppTest.from_file(str(APP), default_timeout=60)
    at.run()
    at.text_input[0].input(password)
    at.button[0].click().run()
    return at


def test_throttled_across_sessions(dash_env, monkeypatch, capfd):
    monkeypatch.setenv("ROUTERWATCH_DASHBOARD_AUTH", "token")
    monkeypatch.setenv("ROUTERWATCH_DASHBOARD_TOKEN", TOKEN)
    monkeypatch.setattr(auth, "_guess_delay", lambda s: None)  # the per-session delay is not what is tested
    # (not time.sleep itself: that turned Streamlit's own waits into busy loops, 3.4 s a session, >60 s in CI)
    clock = Clock()
    monkeypatch.setattr(auth, "THROTTLE", SignInThrottle(clock=clock))
    for i in range(10):  # ten different sessions, one wrong guess each
        at = _session(f"guess-{i}")
        errors = " ".join(e.value for e in at.error)
        assert "Wrong token" in errors
        assert ("locked for 60 s" in errors) == (i == 9), (i, errors)
    # now even the right token is refused, in yet another session
    at = _session(TOKEN)
    assert any("sign-in is locked" in e.value for e in at.error)
    assert not at.session_state["rw_authed"] if "rw_authed" in at.session_state else True
    assert not [m for m in at.metric]
    err = capfd.readouterr().err
    assert err.count("failed sign-in from") == 10
    assert "(10 in the last 60 s); sign-in locked for 60 s" in err and "attempt from localhost refused: locked" in err
    assert "guess-" not in err and TOKEN not in err  # guesses are never logged
    # after the lockout the right token works again
    clock.t += 61
    at = _session(TOKEN)
    assert not at.error and at.session_state["rw_authed"]
    assert "signed in with the token" in capfd.readouterr().err


@pytest.fixture(autouse=True)
def _fresh_throttle(monkeypatch):
    monkeypatch.setattr(auth, "THROTTLE", SignInThrottle())


@pytest.mark.browser
def test_throttled_across_browser_sessions(seeded_store, tmp_path):
    """The same against a real server: three browser contexts (three sessions), 10 wrong guesses between
    two of them, then the right token in the third is refused; the server log shows each failure."""
    import time

    from tests.dashboard.test_browser import ARGS, CHROMIUM, Server

    if not __import__("os").path.exists(CHROMIUM):
        pytest.skip("Debian's chromium is not installed (deploy/deps.sh --test installs it)")
    from playwright.sync_api import sync_playwright

    token = tmp_path / "token"
    token.write_text(TOKEN + "\n")
    srv = Server(seeded_store.path, tmp_path / "state", "--token-file", str(token))
    try:
        with sync_playwright() as p:
            b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
            pages = [b.new_context().new_page() for _ in range(3)]
            for page in pages:
                page.goto(srv.url)
                page.get_by_label("Access token").wait_for(timeout=60_000)

            def sign_in(page, value: str, expect: str) -> None:
                page.get_by_label("Access token").fill(value)
                page.get_by_role("button", name="Sign in").click()
                page.get_by_text(expect, exact=False).first.wait_for(timeout=30_000)

            for i in range(10):
                sign_in(pages[i % 2], f"wrong-guess-{i}", "Wrong token")
                deadline = time.monotonic() + 30  # counted by the server before the next guess
                while "".join(srv.out).count("failed sign-in from") <= i and time.monotonic() < deadline:
                    time.sleep(0.1)
            sign_in(pages[2], TOKEN, "sign-in is locked")
            assert pages[2].locator('[data-testid="stMetric"]').count() == 0
            b.close()
    finally:
        assert srv.stop() == 0
    time.sleep(0.5)
    log = "".join(srv.out)
    assert log.count("failed sign-in from") == 10 and "sign-in locked for 60 s" in log, log[-3000:]
    assert "wrong-guess" not in log and TOKEN not in log
