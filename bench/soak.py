"""Soak: the main job under load with every other writer and reader at once, on one embedded store.

For --minutes (default 10), on loopback only:
- `routerwatch up` (live collector with eBPF and capture, continuous analyzer, dashboard);
- ~--rate connections/s of unrelated loopback traffic (connect, server resets);
- every --agent-every s a wrapped openai-SDK agent (`routerwatch wrap`) makes one call through a
  malicious loopback router (analyzer.demo.zoo, mode `inject`) that injects a download-and-execute
  tool call (the agent never executes anything: --no-exec);
- a manual `routerwatch analyze` every --analyze-every s, a `routerwatch sql` loop, dashboard page
  loads in headless Chromium (HTTP health checks without Chromium), an offline `routerwatch ingest`
  (--batch-rows 500) every --ingest-every s, `routerwatch canary new` every 2 min,
  `routerwatch store compact` every 3 min, `routerwatch report` and `routerwatch ledger verify` every minute;
- a long-lived read-only reader in this process polls the store every 0.25 s: when each exchange and
  its finding first became visible.

It prints commands run and failed per kind, rows generated vs stored per table (exact), collector lost
events, finding latency p50/p99 (exchange time to the finding being visible to a reader), `routerwatch
sql` latency p50/p99 (the whole command) and the long-lived reader's query latency, the load average,
and whether the acceptance holds (0 failed commands, every injected exchange has its finding, finding
p99 <= 10 s, sql p99 <= 2 s). Needs root (eBPF). `--json FILE` writes the figures.

    sudo .venv/bin/python bench/soak.py [--minutes 10] [--rate 100] [--json out.json] [--keep]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # run as `python bench/soak.py`: the repo root
BIN = Path(sys.executable).parent
RW = str(BIN / "routerwatch")
LIVE_HOST = "soak-live"
SQL_QUERY = "SELECT count(*), max(ts_start) FROM flows"
CHROMIUM = "/usr/bin/chromium"


def pct(xs: list[float], p: float) -> float | None:
    if not xs:
        return None
    s = sorted(xs)
    return s[min(len(s) - 1, max(0, round(p / 100 * (len(s) - 1))))]


def now_utc() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


@dataclass
class Kind:
    run: int = 0
    failed: int = 0
    wall: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


class Results:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.kinds: dict[str, Kind] = {}
        self.load = {"connections": 0, "connect_errors": 0}
        self.agent_calls = 0
        self.reader_latency: list[float] = []
        self.reader_cpu: list[float] = []  # this thread's CPU seconds per query (wall - CPU: waiting)
        self.reader_errors: list[str] = []
        self.exchange_seen: dict[str, tuple[dt.datetime, dt.datetime]] = {}  # id -> (exchange ts, first seen)
        self.finding_seen: dict[str, dt.datetime] = {}  # exchange id -> first time its finding was visible
        self.ingest_hosts: list[str] = []
        self.sql_extra: list[float] = []  # sql on the store minus the same command on an idle store, pairwise

    def record(self, kind: str, ok: bool, wall: float, error: str = "") -> None:
        with self.lock:
            k = self.kinds.setdefault(kind, Kind())
            k.run += 1
            k.wall.append(wall)
            if not ok:
                k.failed += 1
                k.errors.append(error[-3000:])  # a native crash: faulthandler's stack is at the end


def run_cmd(res: Results, kind: str, cmd: list[str], env: dict | None = None, timeout: float = 600,
            ok_codes: tuple[int, ...] = (0,)) -> subprocess.CompletedProcess | None:
    t0 = time.monotonic()
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout, cwd=REPO)
    except subprocess.TimeoutExpired:
        res.record(kind, False, time.monotonic() - t0, f"timed out after {timeout} s")
        return None
    wall = time.monotonic() - t0
    bad = p.returncode not in ok_codes or "Traceback" in p.stderr
    res.record(kind, not bad, wall, f"rc={p.returncode}: {p.stderr.strip()}")
    return p


def every(stop: threading.Event, period: float, fn, first_delay: float = 0.0) -> threading.Thread:
    def loop() -> None:
        nxt = time.monotonic() + first_delay
        while not stop.wait(max(0.0, nxt - time.monotonic())):
            fn()
            nxt = time.monotonic() if period == 0 else max(nxt + period, time.monotonic())
    t = threading.Thread(target=loop, daemon=True)
    t.start()
    return t


# -- the pieces --------------------------------------------------------------------------------
def load_server() -> tuple[subprocess.Popen, int]:
    p = subprocess.Popen([sys.executable, str(REPO / "tests/collector/live/load.py"), "serve"], stdout=subprocess.PIPE,
                         text=True)
    return p, int(p.stdout.readline())


def paced_connections(port: int, rate: float) -> subprocess.Popen:
    """`rate` loopback connections per second in their own process (not this one's GIL); each one is a
    flow the collector must record. SIGTERM it; it prints how many it made and how many failed."""
    return subprocess.Popen([sys.executable, str(REPO / "tests/collector/live/load.py"), "paced", str(port), str(rate)],
                            stdout=subprocess.PIPE, text=True)


def watcher(res: Results, store: Path, stop: threading.Event, router_port: int) -> threading.Thread:
    """A long-lived read-only reader (like the dashboard): first sight of each exchange with the soak's
    router and of its finding (the collector sees the whole host: other people's agents are not ours)."""
    def loop() -> None:
        from collector.store import Store

        while not store.joinpath("catalog.sqlite").exists() and not stop.is_set():
            time.sleep(0.2)
        s = Store.open(str(store), read_only=True)
        try:
            while not stop.wait(0.25):
                t0 = time.monotonic()
                try:
                    c0 = time.thread_time()
                    rows = s.sql(
                        "SELECT e.exchange_id, e.ts, bool_or(f.rule_id = 'ac1-download-exec') FROM llm_exchanges e "
                        "LEFT JOIN findings f ON f.exchange_id = e.exchange_id WHERE e.host_id = ? AND e.host LIKE ? "
                        "GROUP BY ALL", [LIVE_HOST, f"%:{router_port}"]).fetchall()
                    cpu = time.thread_time() - c0
                except Exception as exc:  # counted: a reader must never fail
                    with res.lock:
                        res.reader_errors.append(str(exc).splitlines()[0][:300])
                    continue
                seen = now_utc()
                with res.lock:
                    res.reader_latency.append(time.monotonic() - t0)
                    res.reader_cpu.append(cpu)
                    for ex, ts, found in rows:
                        res.exchange_seen.setdefault(ex, (ts, seen))
                        if found:
                            res.finding_seen.setdefault(ex, seen)
        finally:
            s.close()
    t = threading.Thread(target=loop, daemon=True)
    t.start()
    return t


class Pages:
    """Dashboard page loads in headless Chromium (the Findings and Overview pages, alternately). The
    browser lives in the one thread that calls `load` (Playwright's sync API is bound to its thread)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.browser = self._pw = None
        self.k = 0
        self.mode = "chromium" if Path(CHROMIUM).exists() else "http-health"

    def _start(self) -> None:
        if self.mode != "chromium" or self.browser is not None:
            return
        try:
            from playwright.sync_api import sync_playwright

            self._pw = sync_playwright().start()
            self.browser = self._pw.chromium.launch(executable_path=CHROMIUM, args=[
                "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run"])
        except Exception as exc:  # noqa: BLE001 - then HTTP health checks only, and the report says so
            print(f"soak: no browser page loads ({exc}); HTTP health checks instead", file=sys.stderr)
            self.mode = "http-health"

    def load(self, res: Results) -> None:
        self._start()
        t0 = time.monotonic()
        path, title = (("findings", "Findings"), ("", "Overview"))[self.k % 2]
        self.k += 1
        try:
            if self.browser is None:
                with urllib.request.urlopen(self.url + "/_stcore/health", timeout=30) as r:
                    ok = r.status == 200
                res.record("dashboard page", ok, time.monotonic() - t0, "" if ok else f"HTTP {r.status}")
                return
            page = self.browser.new_page(viewport={"width": 1280, "height": 900})
            try:
                page.goto(f"{self.url}/{path}", timeout=60_000)
                page.get_by_role("heading", name=title).first.wait_for(timeout=60_000)
                page.wait_for_function(
                    "() => !document.querySelector('[data-testid=\"stStatusWidget\"]')", timeout=60_000)
                errors = page.locator('[data-testid="stException"]').count()
                body = page.inner_text("body").lower()
                ok = errors == 0 and "database is locked" not in body
                res.record("dashboard page", ok, time.monotonic() - t0, "" if ok else body[:600])
            finally:
                page.close()
        except Exception as exc:  # noqa: BLE001 - a failed page load is a failed command
            res.record("dashboard page", False, time.monotonic() - t0, str(exc).splitlines()[0][:600])

    def close(self) -> None:
        if self.browser is not None:
            self.browser.close()
            self._pw.stop()
            self.browser = None


def page_loop(pages: Pages, res: Results, stop: threading.Event, period: float, first: float) -> threading.Thread:
    def loop() -> None:
        try:
            nxt = time.monotonic() + first
            while not stop.wait(max(0.0, nxt - time.monotonic())):
                pages.load(res)
                nxt = max(nxt + period, time.monotonic())
        finally:
            pages.close()
    t = threading.Thread(target=loop, daemon=True)
    t.start()
    return t


def children_cpu(pid: int) -> dict[str, float]:
    """CPU seconds used so far by `up`'s children (collector, analyzer, dashboard), with their own children."""
    tick = os.sysconf("SC_CLK_TCK")
    procs: dict[int, tuple[int, str, float]] = {}
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            stat = (d / "stat").read_text()
            cmd = (d / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        f = stat[stat.rindex(")") + 2:].split()
        procs[int(d.name)] = (int(f[1]), cmd, (int(f[11]) + int(f[12]) + int(f[13]) + int(f[14])) / tick)
    out: dict[str, float] = {}
    for child, (ppid, cmd, cpu) in procs.items():
        if ppid != pid:
            continue
        name = ("collector" if " collect " in cmd else "analyzer" if " analyze " in cmd
                else "dashboard" if "streamlit" in cmd else cmd[:40])
        below = [c for c, (pp, _c, _u) in procs.items() if pp == child]
        out[name] = round(cpu + sum(procs[c][2] for c in below), 1)
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def healthy(url: str, proc: subprocess.Popen, timeout: float = 180) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            with urllib.request.urlopen(url + "/_stcore/health", timeout=2) as r:
                if r.status == 200:
                    return True
        except OSError:
            time.sleep(0.5)
    return False


# -- the run -----------------------------------------------------------------------------------
def soak(a: argparse.Namespace) -> dict:
    from analyzer.demo.agent import command as agent_command
    from analyzer.demo.pki import ensure_pki
    from analyzer.demo.zoo import start_router

    work = Path(a.workdir or tempfile.mkdtemp(prefix="rw-soak-"))
    work.mkdir(parents=True, exist_ok=True)
    store, eve, port = work / "store", work / "alerts.eve.json", free_port()
    res = Results()
    stop, watch_stop = threading.Event(), threading.Event()  # the watcher outlives the load
    load_avg = [os.getloadavg()]
    # the offline capture ingested every minute (synthetic TLS + DNS flows)
    capture = work / "ingest.pcap"
    from tests.support.gen_capture import generate

    generate(str(capture), a.ingest_packets, 2)
    from collector.store import BatchWriter, Store

    idle = work / "idle-store"  # the sql loop's peer: same command, a store nobody else uses
    with Store.open(str(idle)) as st, BatchWriter(st) as w:
        w.add("flows", [{"flow_uid": f"I{i}", "host_id": "idle", "proto": "tcp"} for i in range(1000)])
    ensure_pki(work / "pki")
    router = start_router("inject", certdir=work / "pki")
    server, load_port = load_server()
    env = dict(os.environ, ROUTERWATCH_HOST_ID=LIVE_HOST, ROUTERWATCH_KEYLOG_DIR=str(work / "keys"),
               ROUTERWATCH_DASHBOARD_STATE=str(work / "state"),
               PYTHONFAULTHANDLER="1")  # a native crash in a command prints where it happened
    env.pop("SSLKEYLOGFILE", None)
    up_log = open(work / "up.log", "w")
    up = subprocess.Popen([RW, "up", "--store", str(store), "--port", str(port), "--eve", str(eve),
                           "--analyze-interval", "0.5", "--", "--iface", "lo", "--capture-dir", str(work / "cap"),
                           "--capture-filter", f"tcp port {router.port}", "--interval", "5", "--max-delay", "1"],
                          stdout=up_log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    threads: list[threading.Thread] = []
    pages = loader = None
    started = time.monotonic()
    try:
        if not healthy(url, up):
            raise SystemExit(f"soak: `routerwatch up` did not come up:\n{(work / 'up.log').read_text()[-3000:]}")
        deadline = time.monotonic() + 180
        while "mode=" not in (work / "up.log").read_text() and time.monotonic() < deadline:
            time.sleep(0.5)
        print(f"soak: up running (store {store}); {a.minutes} min of load", file=sys.stderr, flush=True)
        threads.append(watcher(res, store, watch_stop, router.port))
        loader = paced_connections(load_port, a.rate)
        agent_env = dict(env, SSL_CERT_FILE=str(router.ca_path))
        agent = [RW, "wrap", "--", *agent_command(router.url, "openai", ca=router.ca_path,
                                                   extra=["--no-exec", "--no-follow-up"])]

        def run_agent() -> None:
            p = run_cmd(res, "agent (wrapped)", agent, env=agent_env, timeout=180)
            if p is not None and p.returncode == 0:
                with res.lock:
                    res.agent_calls += 1

        ingest_k = [0]

        def ingest() -> None:
            host = f"soak-ingest-{ingest_k[0]}"
            ingest_k[0] += 1
            with res.lock:
                res.ingest_hosts.append(host)
            run_cmd(res, "ingest", [RW, "ingest", str(capture), "--store", str(store), "--host-id", host,
                                    "--batch-rows", "500"], env=env)

        def sql() -> None:  # each read, then the same command on an idle store: its start-up cost, now
            for kind, st in (("sql", store), ("sql (idle store)", idle)):
                run_cmd(res, kind, [RW, "sql", "--store", str(st), "--format", "csv", SQL_QUERY], env=env, timeout=120)
            with res.lock:
                a_, b_ = res.kinds["sql"].wall, res.kinds["sql (idle store)"].wall
                res.sql_extra.append(a_[-1] - b_[-1])
            stop.wait(a.sql_pause)

        pages = Pages(url)
        plan = [
            (a.agent_every, run_agent, 5),
            (a.analyze_every, lambda: run_cmd(res, "analyze (manual)", [RW, "analyze", "--store", str(store), "-q"],
                                               env=env), 3),
            (0, sql, 1),
            (a.ingest_every, ingest, 10),
            (120, lambda: run_cmd(res, "canary new", [RW, "canary", "new", "--kind", "aws", "--store", str(store),
                                                      "--label", "soak"], env=env), 30),
            (a.compact_every, lambda: run_cmd(res, "store compact", [RW, "store", "compact", "--store", str(store)], env=env), 45),
            (60, lambda: run_cmd(res, "report", [RW, "report", "--store", str(store), "--format", "json", "-o",
                                                 str(work / "report.json")], env=env), 20),
            (60, lambda: run_cmd(res, "ledger verify", [RW, "ledger", "verify", "--store", str(store)], env=env), 35),
        ]
        for period, fn, first in plan:
            threads.append(every(stop, period, fn, first))
        threads.append(page_loop(pages, res, stop, a.page_every, 8))
        end = started + a.minutes * 60
        while time.monotonic() < end:
            time.sleep(min(30.0, max(0.0, end - time.monotonic())))
            load_avg.append(os.getloadavg())
            with res.lock:
                done = {k: f"{v.run - v.failed}/{v.run}" for k, v in res.kinds.items()}
            print(f"soak: {(time.monotonic() - started) / 60:4.1f} min, load {os.getloadavg()[0]:.1f}, "
                  f"ok/run {done}", file=sys.stderr, flush=True)
    finally:
        if loader is not None:
            loader.send_signal(signal.SIGTERM)
            made, failed_conn = map(int, loader.communicate(timeout=60)[0].split())
            res.load.update(connections=made, connect_errors=failed_conn)
        stop.set()
        for t in threads[1:]:
            t.join(timeout=300)
        # the last agent's finding: give the pipeline its bound and a margin before stopping
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with res.lock:
                if set(res.exchange_seen) <= set(res.finding_seen) and res.exchange_seen:
                    break
            time.sleep(0.5)
        watch_stop.set()
        if threads:
            threads[0].join(timeout=60)
        cpu = children_cpu(up.pid)
        up.send_signal(signal.SIGTERM)
        try:
            up_rc = up.wait(timeout=180)
        except subprocess.TimeoutExpired:
            up.kill()
            up_rc = up.wait()
        up_log.close()
        server.kill()
        server.wait()
        injected = sum(1 for e in router.log if e.get("action") == "injected")
        router.stop()
    out = account(res, store, eve, load_port, router.port, injected, up_rc, (work / "up.log").read_text(), a)
    out["load_average"] = {"start": load_avg[0], "max_1min": max(x[0] for x in load_avg), "end": os.getloadavg()}
    out["workdir"] = str(work)
    out["cpu_s_per_min"] = {k: round(v / max(a.minutes, 1e-9), 1) for k, v in cpu.items()}
    out["dashboard_loads"] = pages.mode if pages is not None else "none"
    if not a.keep:
        shutil.rmtree(work, ignore_errors=True)
    return out


def account(res: Results, store: Path, eve: Path, load_port: int, router_port: int, injected: int, up_rc: int,
            up_log: str, a: argparse.Namespace) -> dict:
    from collector.store import Store

    with Store.open(str(store), read_only=True) as s:
        def one(q: str, p: list | None = None):
            return s.sql(q, p or []).fetchone()

        detail = json.loads(one("SELECT detail FROM collector_stats WHERE host_id = ? ORDER BY ts DESC LIMIT 1",
                                [LIVE_HOST])[0])
        live = {
            "flows": one("SELECT count(*) FROM flows WHERE host_id = ?", [LIVE_HOST])[0],
            "processes": one("SELECT count(*) FROM processes WHERE host_id = ?", [LIVE_HOST])[0],
            "dns": one("SELECT count(*) FROM dns WHERE host_id = ?", [LIVE_HOST])[0],
            "llm_exchanges": one("SELECT count(*) FROM llm_exchanges WHERE host_id = ?", [LIVE_HOST])[0],
            "tool_calls": one("SELECT count(*) FROM tool_calls WHERE exchange_id IN "
                              "(SELECT exchange_id FROM llm_exchanges WHERE host_id = ?)", [LIVE_HOST])[0],
        }
        load_flows = one("SELECT count(*), count(DISTINCT flow_uid) FROM flows WHERE host_id = ? AND dst_port = ? "
                         "AND direction = 'outbound'", [LIVE_HOST, load_port])
        router_ex = one("SELECT count(*), count(DISTINCT exchange_id) FROM llm_exchanges WHERE host_id = ? "
                        "AND host LIKE ?", [LIVE_HOST, f"%:{router_port}"])
        found = one("SELECT count(DISTINCT f.exchange_id), count(*) FROM findings f JOIN llm_exchanges e "
                    "USING (exchange_id) WHERE f.rule_id = 'ac1-download-exec' AND e.host_id = ? AND e.host LIKE ?",
                    [LIVE_HOST, f"%:{router_port}"])
        foreign = one("SELECT count(*) FROM llm_exchanges WHERE host_id = ? AND host NOT LIKE ?",
                      [LIVE_HOST, f"%:{router_port}"])[0]
        per_ingest = s.sql("SELECT host_id, count(*) FROM flows WHERE host_id LIKE 'soak-ingest-%' GROUP BY 1"
                           ).fetchall()
        per_ingest_dns = dict(s.sql("SELECT host_id, count(*) FROM dns WHERE host_id LIKE 'soak-ingest-%' "
                                    "GROUP BY 1").fetchall())
        ingest_runs = dict(s.sql("SELECT host_id, count(*) FROM ingest_runs WHERE host_id LIKE 'soak-ingest-%' "
                                 "AND status = 'ok' GROUP BY 1").fetchall())
        canaries = one("SELECT count(DISTINCT canary_id) FROM canaries")[0]
        dup_findings = one("SELECT count(*) - count(DISTINCT finding_id) FROM findings")[0]
        # ledger v2 chains more than exchanges (tool calls, findings, coverage): count each exchange's own entry
        ledger = one("SELECT count(*), count(DISTINCT seq), count(*) FILTER (WHERE coalesce(kind, 'exchange') = "
                     "'exchange'), count(DISTINCT exchange_id) FILTER (WHERE coalesce(kind, 'exchange') = 'exchange') "
                     "FROM ledger")
        all_ex = one("SELECT count(DISTINCT exchange_id) FROM llm_exchanges")[0]
        # where each router exchange's finding latency went: the analyzer run that first covered it
        # (its start after the exchange, its own duration)
        parts = s.sql(
            "SELECT e.exchange_id, epoch(r.ts) - epoch(e.ts), r.duration_s FROM llm_exchanges e, LATERAL "
            "(SELECT ts, duration_s FROM analyzer_runs WHERE CAST(watermarks->>'llm_exchanges' AS BIGINT) >= e.rowid "
            " ORDER BY ts LIMIT 1) r WHERE e.host_id = ? AND e.host LIKE ? ORDER BY e.ts",
            [LIVE_HOST, f"%:{router_port}"]).fetchall()
    eve_alerts = [e for e in map(json.loads, eve.read_text().splitlines()) if e["event_type"] == "alert"] \
        if eve.exists() else []
    kinds = {k: {"run": v.run, "failed": v.failed, "p50_s": pct(v.wall, 50), "p99_s": pct(v.wall, 99),
                 "max_s": max(v.wall) if v.wall else None, "errors": v.errors[:5]} for k, v in res.kinds.items()}
    lat = [(res.finding_seen[ex] - ts).total_seconds() for ex, (ts, _) in res.exchange_seen.items()
           if ex in res.finding_seen]
    missing = sorted(set(res.exchange_seen) - set(res.finding_seen))
    ok_hosts = [h for h in res.ingest_hosts if ingest_runs.get(h)]
    ingest_flows = dict(per_ingest)
    expected_ingest = ingest_flows.get(ok_hosts[0]) if ok_hosts else None
    rows = {
        "flows (loopback load: connections made vs outbound flows stored, distinct)":
            [res.load["connections"], load_flows[0], load_flows[1]],
        "flows (collector: written vs stored)": [detail.get("flows"), live["flows"]],
        "processes (collector: written vs stored)": [detail.get("processes"), live["processes"]],
        "dns (collector: written, resolver + DoH from plaintext, vs stored)": [
            detail.get("dns", 0) + detail.get("plaintext_dns", 0), live["dns"]],
        "llm_exchanges (agent calls vs stored for the router, distinct)": [res.agent_calls, router_ex[0], router_ex[1]],
        "llm_exchanges of other processes on this shared host (seen by the collector too)": foreign,
        "llm_exchanges (collector: written vs stored)": [detail.get("plaintext_llm_exchanges", 0)
                                                         + detail.get("keylog_llm_exchanges", 0), live["llm_exchanges"]],
        "tool_calls (collector: written vs stored)": [detail.get("plaintext_tool_calls", 0)
                                                      + detail.get("keylog_tool_calls", 0), live["tool_calls"]],
        "findings ac1-download-exec (injected exchanges vs exchanges with the finding, findings)":
            [injected, found[0], found[1]],
        "ingest flows (each ok run vs the first)": [expected_ingest, sorted(set(ingest_flows[h] for h in ok_hosts))],
        "ingest dns (each ok run vs the first)": [per_ingest_dns.get(ok_hosts[0]) if ok_hosts else None,
                                                  sorted(set(per_ingest_dns.get(h, 0) for h in ok_hosts))],
        "ingest runs (commands ok vs ingest_runs 'ok', one each)": [
            res.kinds.get("ingest", Kind()).run - res.kinds.get("ingest", Kind()).failed, len(ok_hosts),
            sorted(set(ingest_runs.values()))],
        "canaries (commands ok vs stored)": [res.kinds.get("canary new", Kind()).run
                                             - res.kinds.get("canary new", Kind()).failed, canaries],
        "ledger (entries vs distinct seq; exchange entries vs distinct vs exchanges)": [ledger[0], ledger[1], ledger[2],
                                                                                 ledger[3], all_ex],
        "EVE alerts from the service (distinct findings)": [len(eve_alerts),
                                                             len({e["routerwatch"]["finding_id"] for e in eve_alerts})],
    }
    failed = sum(v["failed"] for v in kinds.values()) + len(res.reader_errors) + (up_rc != 0)
    sql = kinds.get("sql", {})
    accept = {
        "0 failed commands": failed == 0,
        "every injected exchange has its finding": injected == found[0] == found[1] and not missing,
        "finding latency p99 <= 10 s": (pct(lat, 99) or 1e9) <= 10,
        "sql p99 <= 2 s": (sql.get("p99_s") or 1e9) <= 2,
        "sql not slowed by the store (median difference to an idle store < 1 s)": (pct(res.sql_extra, 50) or 0) < 1,
        "rows exact": (rows["flows (loopback load: connections made vs outbound flows stored, distinct)"][0]
                       == load_flows[0] == load_flows[1]
                       and detail.get("flows") == live["flows"] and detail.get("processes") == live["processes"]
                       and detail.get("dns", 0) + detail.get("plaintext_dns", 0) == live["dns"]
                       and res.agent_calls == router_ex[0] == router_ex[1]
                       and len(set(ingest_flows[h] for h in ok_hosts)) <= 1 and dup_findings == 0
                       and ledger[0] == ledger[1] and ledger[2] == ledger[3] == all_ex),
    }
    return {
        "minutes": a.minutes, "rate": a.rate, "commands": kinds, "rows": rows, "accept": accept,
        "collector_lost_events": detail.get("lost"), "collector_capture_drops": detail.get("capture_drops"),
        "finding_latency_s": {"n": len(lat), "p50": pct(lat, 50), "p99": pct(lat, 99), "max": max(lat) if lat else None,
                              "missing": missing[:10],
                              "run_start_and_duration_s": [[round(b, 2), round(c, 2)] for _, b, c in parts]},
        "reader_query_s": {"n": len(res.reader_latency), "p50": pct(res.reader_latency, 50),
                           "p99": pct(res.reader_latency, 99), "max": max(res.reader_latency or [0]),
                           "max_waiting": max((w - c for w, c in zip(res.reader_latency, res.reader_cpu, strict=True)),
                                              default=0.0),
                           "over_2s": sum(x > 2 for x in res.reader_latency), "errors": res.reader_errors[:5]},
        "sql_minus_idle_s": {"n": len(res.sql_extra), "p50": pct(res.sql_extra, 50), "p90": pct(res.sql_extra, 90),
                             "max": max(res.sql_extra or [0])},
        "up_exit": up_rc, "up_log_tail": up_log[-1500:] if up_rc != 0 or "Traceback" in up_log else "",
        "tracebacks_in_up_log": up_log.count("Traceback"),
        "connect_errors": res.load["connect_errors"],
    }


def _num(x: float | None, width: int = 0) -> str:
    return "-".rjust(width) if x is None else f"{x:{width}.2f}"


def report(out: dict) -> str:
    lines = [f"soak: {out['minutes']} min, {out['rate']} conn/s; load average start {out['load_average']['start'][0]:.1f}, "
             f"max {out['load_average']['max_1min']:.1f}, end {out['load_average']['end'][0]:.1f}; "
             f"dashboard loads: {out['dashboard_loads']}", "", "commands            run  failed  p50 s  p99 s  max s"]
    for k, v in sorted(out["commands"].items()):
        lines.append(f"{k:<18} {v['run']:4d}  {v['failed']:6d} {_num(v['p50_s'], 6)} {_num(v['p99_s'], 6)} "
                     f"{_num(v['max_s'], 6)}")
        for e in v["errors"]:
            lines.append("    error: " + e[-1500:].replace("\n", "\n      "))
    lines += ["", "rows (generated vs stored)"]
    for k, v in out["rows"].items():
        lines.append(f"  {k}: {v}")
    fl, rq = out["finding_latency_s"], out["reader_query_s"]
    fmt = _num
    lines += ["", f"collector lost events: {out['collector_lost_events']}, capture drops: {out['collector_capture_drops']}",
              f"finding latency (exchange -> finding visible): n={fl['n']} p50 {fmt(fl['p50'])} s, "
              f"p99 {fmt(fl['p99'])} s, max {fmt(fl['max'])} s" + (f", missing {fl['missing']}" if fl["missing"] else ""),
              "  per exchange, the analyzer run that covered it (start after the exchange s, run s): "
              + ", ".join(f"{b:.2f}+{c:.2f}" for b, c in fl["run_start_and_duration_s"]),
              f"sql command latency (whole command, start-up included): p50 {fmt(out['commands'].get('sql', {}).get('p50_s'))} s, "
              f"p99 {fmt(out['commands'].get('sql', {}).get('p99_s'))} s; the same command on an idle store: p50 "
              f"{fmt(out['commands'].get('sql (idle store)', {}).get('p50_s'))} s, p99 "
              f"{fmt(out['commands'].get('sql (idle store)', {}).get('p99_s'))} s; difference p50 "
              f"{fmt(out['sql_minus_idle_s']['p50'])} s, p90 {fmt(out['sql_minus_idle_s']['p90'])} s, "
              f"max {fmt(out['sql_minus_idle_s']['max'])} s",
              f"long-lived reader query: n={rq['n']} p50 {fmt(rq['p50'])} s, p99 {fmt(rq['p99'])} s, max {fmt(rq['max'])} s "
              f"(max wall - CPU {fmt(rq['max_waiting'])} s, {rq['over_2s']} over 2 s)"
              + (f", errors {rq['errors']}" if rq["errors"] else ""),
              f"`up` exit status {out['up_exit']}, tracebacks in its log: {out['tracebacks_in_up_log']}; CPU s per minute "
              f"of its processes: {out.get('cpu_s_per_min')}", "",
              "acceptance: " + ", ".join(f"{k}: {'yes' if v else 'NO'}" for k, v in out["accept"].items())]
    if out["up_log_tail"]:
        lines += ["", "up log (tail):", out["up_log_tail"]]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--rate", type=float, default=100.0, help="loopback connections per second")
    ap.add_argument("--agent-every", type=float, default=30.0, help="seconds between agent calls (each injected)")
    ap.add_argument("--analyze-every", type=float, default=10.0)
    ap.add_argument("--ingest-every", type=float, default=60.0)
    ap.add_argument("--page-every", type=float, default=15.0)
    ap.add_argument("--compact-every", type=float, default=180.0, help="seconds between `routerwatch store compact`")
    ap.add_argument("--sql-pause", type=float, default=1.0, help="pause between `routerwatch sql` commands")
    ap.add_argument("--ingest-packets", type=int, default=20000, help="size of the capture ingested each time")
    ap.add_argument("--workdir", help="keep everything here (default: a temp dir, removed unless --keep)")
    ap.add_argument("--keep", action="store_true")
    ap.add_argument("--json", metavar="FILE", help="also write the figures as JSON")
    a = ap.parse_args(argv)
    if os.geteuid() != 0:
        print("soak: needs root (the live collector's eBPF probes)", file=sys.stderr)
        return 2
    out = soak(a)
    print(report(out))
    if a.json:
        Path(a.json).write_text(json.dumps(out, indent=1, default=str))
    return 0 if all(out["accept"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
