"""A real server in real headless Chromium: every page, its content, screenshots; live refresh while a
writer appends; the token gate. Screenshots go to test-output/ (git-ignored)."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import BIN, REPO
from tests.support.sample_data import SCENARIO

pytestmark = pytest.mark.browser
CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run"]
OUT = REPO / "test-output"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, store: Path, state: Path, *extra: str, env: dict | None = None):
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        e = dict(os.environ, ROUTERWATCH_DASHBOARD_STATE=str(state), **(env or {}))
        self.proc = subprocess.Popen([str(BIN / "routerwatch"), "dashboard", "--store", str(store), "--port",
                                      str(self.port), *extra], env=e, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True)
        self.out: list[str] = []  # drained continuously: a full pipe would block the server mid-test
        threading.Thread(target=lambda: self.out.extend(self.proc.stdout), daemon=True).start()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(self.url + "/_stcore/health", timeout=2) as r:
                    if r.status == 200:
                        return
            except OSError:
                if self.proc.poll() is not None:
                    break
                time.sleep(0.3)
        self.stop()
        raise AssertionError(f"dashboard did not come up: {''.join(self.out)[-4000:]}")

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)  # forwarded to streamlit by the CLI
        rc = self.proc.wait(timeout=30)
        if rc != 0:  # say why in the failure
            time.sleep(0.5)
            print("dashboard output:\n" + "".join(self.out)[-4000:])
        return rc


@pytest.fixture(scope="module")
def browser():
    if not Path(CHROMIUM).exists():
        pytest.skip("Debian's chromium is not installed (deploy/deps.sh --test installs it)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield b
        b.close()


@pytest.fixture(scope="module")
def server(seeded_store, tmp_path_factory):
    srv = Server(seeded_store.path, tmp_path_factory.mktemp("state"))
    yield srv
    assert srv.stop() == 0  # SIGTERM stops the dashboard cleanly


def _settle(page) -> None:
    page.wait_for_function("() => !document.querySelector('[data-testid=\"stStatusWidget\"]')", timeout=60_000)
    page.wait_for_timeout(800)


def _visit(page, url: str, title: str) -> None:
    page.goto(url)
    page.get_by_role("heading", name=title).first.wait_for(timeout=60_000)
    _settle(page)
    # the app's own navigation and filters, also on a deep link (not Streamlit's pages/ auto-navigation)
    assert page.locator('[data-testid="stSidebar"]').get_by_text("Time window").count() == 1, url


PAGES = [
    ("", "Overview", [f"{SCENARIO.lost_events} lost events", "Top destinations", "Collector health"]),
    (f"routers?endpoint={SCENARIO.router_host}", "Routers and providers",
     ["Suspected routers", SCENARIO.router_host, "Models requested vs returned"]),
    (f"destinations?pid={SCENARIO.agent_pid}", "Destinations", ["Agent egress timeline", "Process tree"]),
    (f"exchanges?exchange={SCENARIO.exchange_id}", "LLM exchanges",
     ["gpt-4o-mini", SCENARIO.injected_command, SCENARIO.secret_fingerprint]),
    ("findings?finding=FSCN-AC1", "Findings", ["Download-and-execute in a tool call", "Acknowledge"]),
    (f"flows?flow={SCENARIO.evil_flow}", "Flows", ["/usr/bin/curl", "No packets to show"]),
    ("hosts?host=ci-runner-1", "Hosts", ["Not reporting", "Collector versions", "Host ci-runner-1"]),
    ("sql", "SQL", ["Saved queries", "Flows per hour"]),
]


def test_every_page(server, browser):
    OUT.mkdir(exist_ok=True)
    page = browser.new_page(viewport={"width": 1440, "height": 1800})
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    for path, title, texts in PAGES:
        _visit(page, f"{server.url}/{path}", title)
        for t in texts:
            page.get_by_text(t, exact=False).first.wait_for(state="attached", timeout=30_000)  # grid cells are hidden DOM
        assert page.locator('[data-testid="stException"]').count() == 0, path
        name = path.split("?")[0] or "overview"
        page.screenshot(path=str(OUT / f"dashboard-{name}.png"))
    # the injected command is highlighted, the secret shows only as a placeholder
    _visit(page, f"{server.url}/exchanges?exchange={SCENARIO.exchange_id}", "LLM exchanges")
    assert page.locator("mark", has_text="| bash").count() >= 1
    assert "AKIA" not in page.content()
    # evidence links carry their ids to the target page
    page.get_by_role("link", name=f"Flow {SCENARIO.router_flow}").click()
    page.get_by_role("heading", name=f"Flow {SCENARIO.router_flow}").wait_for(timeout=60_000)
    assert "/flows" in page.url
    # the SQL console runs a query and refuses a write
    _visit(page, f"{server.url}/sql", "SQL")
    box = page.get_by_label("Query")
    box.fill("SELECT count(*) AS n FROM llm_exchanges")
    box.press("Control+Enter")
    page.get_by_role("button", name="Run").click()
    _settle(page)
    page.get_by_text("1 rows").first.wait_for(state="attached", timeout=30_000)
    box.fill("DELETE FROM flows")
    box.press("Control+Enter")
    page.get_by_role("button", name="Run").click()
    page.get_by_text("statements are refused", exact=False).first.wait_for(timeout=30_000)
    _settle(page)
    page.screenshot(path=str(OUT / "dashboard-sql-refused.png"))
    assert not errors, errors


WRITER = r"""
import datetime as dt, sys, time
import pyarrow as pa
from collector.store import BatchWriter, Store
store = Store.open(sys.argv[1])
n = 0
deadline = time.monotonic() + float(sys.argv[2])
with BatchWriter(store) as w:
    while time.monotonic() < deadline:
        now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
        w.add("flows", pa.table({"flow_uid": [f"LIVE{n + i}" for i in range(200)], "host_id": ["live-host"] * 200,
                                 "ts_start": [now] * 200, "ts_end": [now] * 200, "proto": ["tcp"] * 200,
                                 "dst_ip": ["192.0.2.9"] * 200, "dst_port": [443] * 200, "server_name": ["live.example"] * 200,
                                 "bytes_out": [100] * 200, "bytes_in": [200] * 200}))
        w.flush()
        n += 200
        time.sleep(0.5)
print(n)
"""


def test_live_refresh_while_writing(seeded_store, browser, tmp_path):
    """A writer appends while the page refreshes itself: counts grow, no lock or other error."""
    from collector.store import Store
    from tests.support.sample_data import seed

    store = tmp_path / "store"
    with Store.open(str(store)) as s:
        seed(s, flows=5_000, exchanges=500)
    srv = Server(store, tmp_path / "state")
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(store), "25"], stdout=subprocess.PIPE, text=True)
    try:
        page = browser.new_page(viewport={"width": 1440, "height": 1000})
        _visit(page, srv.url, "Overview")
        page.get_by_text("Live", exact=True).click()
        metric = page.locator('[data-testid="stMetric"]', has_text="Flows").first
        seen: list[int] = []
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and len(set(seen)) < 4:
            txt = metric.inner_text()
            m = re.search(r"([\d,]+)\s*$", txt.strip())
            if m:
                seen.append(int(m.group(1).replace(",", "")))
            page.wait_for_timeout(1000)
        assert page.locator('[data-testid="stException"]').count() == 0
        body = page.inner_text("body").lower()
        assert "lock" not in body and "conflict" not in body
        page.screenshot(path=str(OUT / "dashboard-live.png"))
    finally:
        writer.wait(timeout=60)
        assert srv.stop() == 0
    time.sleep(0.5)  # the drain thread reads the last lines
    log = "".join(srv.out)
    assert "Traceback" not in log and "lock" not in log.lower(), log[-2000:]
    distinct = sorted(set(seen))
    assert len(distinct) >= 3, seen  # the page refreshed itself with new rows at least twice
    assert seen == sorted(seen), seen  # never went backwards
    assert writer.returncode == 0


def test_token_login(seeded_store, browser, tmp_path):
    token = tmp_path / "token"
    token.write_text("s3cret-token-for-the-browser-test\n")
    srv = Server(seeded_store.path, tmp_path / "state", "--token-file", str(token))
    try:
        page = browser.new_page()
        for deep in ("/flows", "/sql", "/exchanges?exchange=" + SCENARIO.exchange_id):  # no way around the gate
            page.goto(srv.url + deep)
            page.get_by_label("Access token").wait_for(timeout=60_000)
            page.wait_for_timeout(1500)
            assert page.locator('[data-testid="stDataFrame"]').count() == 0
            assert SCENARIO.exchange_id not in page.inner_text("body").replace("exchange=", "")
        page.goto(srv.url)
        page.get_by_label("Access token").wait_for(timeout=60_000)
        assert page.locator('[data-testid="stMetric"]').count() == 0
        page.get_by_label("Access token").fill("s3cret-token-for-the-browser-test")
        page.get_by_role("button", name="Sign in").click()
        page.get_by_role("heading", name="Overview").first.wait_for(timeout=60_000)
        page.screenshot(path=str(OUT / "dashboard-after-login.png"))
    finally:
        assert srv.stop() == 0


def test_packet_drilldown(browser, corpus, tmp_path):
    """A flow whose capture is retained (an ingested file still on disk): its packets and protocol tree."""
    import datetime as dt

    from collector.store import BatchWriter, Store

    pcap = corpus / "http-cut-short.pcap"
    t0 = dt.datetime(2019, 8, 31, 12, 44, 0)
    with Store.open(str(tmp_path / "store")) as s, BatchWriter(s) as w:
        w.add("ingest_runs", [{"run_id": "R1", "file": str(pcap), "host_id": "h", "ts": t0}])
        w.add("flows", [{"flow_uid": "FPCAP", "host_id": "h", "proto": "tcp", "src_ip": "1.8.31.101", "src_port": 49160,
                         "dst_ip": "194.32.78.251", "dst_port": 80, "ts_start": t0, "ts_end": t0, "capture_id": "R1"}])
    srv = Server(tmp_path / "store", tmp_path / "state")
    try:
        page = browser.new_page(viewport={"width": 1440, "height": 1600})
        _visit(page, f"{srv.url}/flows?flow=FPCAP", "Flows")
        page.get_by_text("retained in:", exact=False).first.wait_for(timeout=30_000)
        page.get_by_text("Dissect packets (pyshark)").click()
        page.get_by_text("packets (at most 200)", exact=False).first.wait_for(timeout=120_000)
        page.get_by_text("#1 ", exact=False).first.click()
        page.get_by_text("Source Port: 49160", exact=False).first.wait_for(timeout=30_000)
        assert page.locator('[data-testid="stException"]').count() == 0
        page.screenshot(path=str(OUT / "dashboard-packets.png"))
    finally:
        assert srv.stop() == 0
