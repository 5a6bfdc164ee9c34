"""The dashboard's SQL page in real headless Chromium against a real server: every hostile statement is
refused with the sandbox's one-line reason, nothing under the store (or the server's HOME, TMPDIR) is
created or changed, the key and planted files never show; saved queries go through the same sandbox;
ordinary SQL and the row cap work."""

from __future__ import annotations

import pytest

from analyzer.sandbox import Refused, Sandbox
from tests.dashboard.test_browser import OUT, Server, _settle, _visit, browser  # noqa: F401 - fixture
from tests.support import hostile_sql
from tests.support.hostile_sql import HOSTILE

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def hs(tmp_path_factory):
    return hostile_sql.build(tmp_path_factory.mktemp("hostile-dash"))


@pytest.fixture(scope="module")
def server(hs):
    srv = Server(hs.root, hs.base / "state", env={**hs.env(), "ROUTERWATCH_SQL_TIMEOUT": "3"})
    yield srv
    assert srv.stop() == 0


def _expected(hs) -> list[tuple[str, str]]:
    """(statement, the refusal the sandbox gives it), computed in this process on the same store."""
    out = []
    with Sandbox.open(str(hs.root)) as sb:
        for stmt in HOSTILE:
            sql = hs.fmt(stmt)
            with pytest.raises(Refused) as exc:
                sb.check(sql)
            out.append((sql, str(exc.value)))
    return out


NO_ALERT = "() => !document.querySelector('[data-testid=\"stAlertContentError\"]')"
IDLE = "() => !document.querySelector('[data-testid=\"stStatusWidget\"]')"


def _run(page, sql: str) -> None:
    """Type `sql`, commit it (that rerun clears any earlier alert: errors show only on a Run), then Run.
    An alert seen afterwards therefore belongs to this statement."""
    box = page.get_by_label("Query")
    box.fill(sql)
    box.press("Control+Enter")
    page.wait_for_function(NO_ALERT, timeout=30_000)
    page.get_by_role("button", name="Run").click()


def _error_text(page) -> str:
    alerts = page.locator('[data-testid="stAlertContentError"]')
    return " ".join(alerts.all_inner_texts())


def test_hostile_statements_in_the_browser(server, browser, hs):  # noqa: F811
    expected = _expected(hs)
    page = browser.new_page(viewport={"width": 1440, "height": 1400})
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    _visit(page, f"{server.url}/sql", "SQL")
    before = hostile_sql.snapshot(hs)
    for sql, reason in expected:
        _run(page, sql)
        page.locator('[data-testid="stAlertContentError"]').first.wait_for(timeout=30_000)
        page.wait_for_function(IDLE, timeout=30_000)
        text = _error_text(page)
        assert reason in text, (sql, text)
        body = page.inner_text("body")
        assert not hostile_sql.secrets_in(body + page.content(), hs), (sql, hostile_sql.secrets_in(body, hs))
        assert page.locator('[data-testid="stDataFrame"]').count() == 0, sql  # no result rendered
        assert hostile_sql.diff(before, hostile_sql.snapshot(hs)) == [], sql
    page.screenshot(path=str(OUT / "dashboard-sql-sandbox.png"))
    assert page.locator('[data-testid="stException"]').count() == 0
    assert not errors, errors


def test_saved_queries_and_ordinary_sql(server, browser, hs):  # noqa: F811
    page = browser.new_page(viewport={"width": 1440, "height": 1400})
    _visit(page, f"{server.url}/sql", "SQL")
    before = hostile_sql.snapshot(hs)
    # a hostile saved query is refused when run, like a typed one
    sql = hs.fmt("SELECT * FROM read_blob('{root}/secret.key')")
    page.get_by_label("Query").fill(sql)
    page.get_by_label("Query").press("Control+Enter")
    page.get_by_placeholder("name to save as").fill("key please")
    page.get_by_placeholder("name to save as").press("Enter")
    page.get_by_role("button", name="Save").click()
    page.get_by_text("saved 'key please'").first.wait_for(timeout=30_000)
    _run(page, "SELECT 1")  # the list of saved queries is drawn before the Save button acts: one more run
    page.get_by_text("1 rows").first.wait_for(state="attached", timeout=30_000)
    page.get_by_role("button", name="key please").wait_for(timeout=30_000)
    page.get_by_role("button", name="key please").click()
    _settle(page)
    page.get_by_role("button", name="Run").click()
    page.get_by_text("read_blob() reads files", exact=False).first.wait_for(timeout=30_000)
    assert not hostile_sql.secrets_in(page.content(), hs)
    # a built-in saved query runs
    page.get_by_role("button", name="Findings by class and severity").click()
    _settle(page)
    page.get_by_role("button", name="Run").click()
    page.get_by_text("attack_class", exact=False).first.wait_for(state="attached", timeout=30_000)
    # ordinary analytic SQL, and the row cap inside the query
    for sql, text in (("SHOW TABLES", "llm_exchanges"), ("DESCRIBE flows", "dst_port"),
                      ("SUMMARIZE flows", "approx_unique"),
                      ("WITH h AS (SELECT host, count(*) AS n FROM llm_exchanges GROUP BY 1) "
                       "SELECT host, n, rank() OVER (ORDER BY n DESC) AS rnk FROM h", "rnk"),
                      ("SELECT * FROM range(5000000)", "more than 10,000 rows (showing the first 10,000)")):
        _run(page, sql)
        page.get_by_text(text, exact=False).first.wait_for(state="attached", timeout=30_000)
        assert _error_text(page) == "", sql
    # the time limit (ROUTERWATCH_SQL_TIMEOUT=3 for this server)
    _run(page, "SELECT count(*) FROM range(100000000000000)")
    page.get_by_text("3 s time limit", exact=False).first.wait_for(timeout=60_000)
    assert page.locator('[data-testid="stException"]').count() == 0
    # saving a query writes the dashboard's own state (under state/), nothing else
    changed = hostile_sql.diff(before, hostile_sql.snapshot(hs))
    assert changed and all("/state/" in c for c in changed), changed
