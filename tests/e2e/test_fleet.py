"""The fleet, live, on this machine: three hosts (network namespaces, each with its own router, DNS
server and traffic), three `routerwatch collect` processes scoped to them writing one store (DuckLake
catalog in a real PostgreSQL, Parquet on a local S3 server), the analyzer running all along and the
dashboard's queries reading, for about a minute under load. Mid-run: one collector is killed (-9) and
restarted, PostgreSQL restarts, the object store is paused and resumed. Afterwards every connection,
DNS lookup and LLM exchange made in a namespace while its collector ran is in the store exactly once
under that host's id, the cross-host findings are there, and no credential is anywhere it must not be.

ROUTERWATCH_FLEET_SECONDS sets the traffic duration (default 66; the CI variant)."""

from __future__ import annotations

import collections
import json
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from collector.store import Store
from tests.collector.live.conftest import ebpf_skip_reason
from tests.conftest import BIN, REPO, run_cli
from tests.support.fleet import PostgresServer, S3Server, needs_postgres
from tests.support.netns import Netns, netns_skip_reason

pytestmark = [
    pytest.mark.ebpf, pytest.mark.slow, needs_postgres,
    pytest.mark.skipif(ebpf_skip_reason() is not None, reason=ebpf_skip_reason() or ""),
    pytest.mark.skipif(netns_skip_reason() is not None, reason=netns_skip_reason() or ""),
]
DURATION = float(os.environ.get("ROUTERWATCH_FLEET_SECONDS", "66"))
HOSTS = ("fleet-h1", "fleet-h2", "fleet-h3")
ROUTER_PORT = 8443
API_KEY = "sk-routerwatch-fleet-test-0000"


class Collector:
    def __init__(self, host: str, ns: Netns, env: dict, workdir: Path, run: int):
        self.host, self.ns, self.env = host, ns, env
        self.log = workdir / f"collect-{host}-{run}.log"
        self._f = open(self.log, "w")
        self.spawned = time.time()  # probes attach some time after this, before `ready`
        self.proc = subprocess.Popen(
            [str(BIN / "routerwatch"), "collect", "--netns", ns.name, "--host-id", host, "--no-capture",
             "--interval", "2", "--max-delay", "1", "--buffer-dir", str(workdir / "buffer")],
            stdout=self._f, stderr=subprocess.STDOUT, env=env, text=True)
        self.ready = None

    def wait_ready(self, timeout: float = 180) -> float:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if "mode=" in self.log.read_text():
                self.ready = time.time()
                return self.ready
            if self.proc.poll() is not None:
                raise AssertionError(f"collector {self.host} exited: {self.log.read_text()}")
            time.sleep(0.2)
        raise AssertionError(f"collector {self.host} did not start: {self.log.read_text()}")

    def stop(self, sig: int = signal.SIGTERM) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        rc = self.proc.wait(timeout=120)
        self._f.close()
        return rc


def _events(log: Path) -> list[dict]:
    return [json.loads(line) for line in log.read_text().splitlines() if line.strip()]


def q(sql: str, params: list | None = None) -> list[tuple]:
    with Store.open(read_only=True) as s:
        return s.sql(sql, params).fetchall()


def test_fleet_of_three_live_collectors(postgres: PostgresServer, s3: S3Server, tmp_path: Path, monkeypatch):
    work = tmp_path
    os.chmod(work, 0o755)
    db = f"fleet{secrets.token_hex(3)}"
    postgres.psql(f"CREATE DATABASE {db} OWNER routerwatch")
    pgpass = work / "pgpass"
    pgpass.write_text(f"127.0.0.1:{postgres.port}:{db}:routerwatch:{postgres.password}\n")
    pgpass.chmod(0o600)
    key = work / "fleet-secret.key"
    key.write_bytes(os.urandom(32))
    key.chmod(0o600)
    fleet = {**s3.env(), "ROUTERWATCH_DATA_PATH": f"s3://{s3.bucket}/{db}/", "PGPASSFILE": str(pgpass),
             "ROUTERWATCH_SECRET_FILE": str(key), "ROUTERWATCH_S3_TIMEOUT_S": "1",
             "ROUTERWATCH_STORE": f"ducklake:postgres:dbname={db} host=127.0.0.1 port={postgres.port} user=routerwatch"}
    for k, v in fleet.items():
        monkeypatch.setenv(k, v)
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO)
    assert Store.open().close() is None  # create and migrate the store once, before the writers race

    from analyzer.demo.pki import ensure_pki

    pki = ensure_pki(work / "pki")
    nss = {h: Netns("rwf") for h in HOSTS}
    procs: list[subprocess.Popen] = []
    collectors: dict[str, Collector] = {}
    try:
        for h, ns in nss.items():
            ns.use_resolver()
            mode = "inject" if h == HOSTS[0] else "honest"  # the same router name everywhere; it attacks h1 only
            r = ns.popen(sys.executable, "-m", "analyzer.demo.zoo", "--mode", mode, "--port", str(ROUTER_PORT),
                         "--certdir", str(work / "pki"), "--alpn", "http/1.1", stdout=subprocess.PIPE,
                         stderr=subprocess.DEVNULL, text=True, env=env)
            procs.append(r)
            assert json.loads(r.stdout.readline())["ready"]
            threading.Thread(target=lambda p=r: [None for _ in p.stdout], daemon=True).start()
        for h, ns in nss.items():
            collectors[h] = Collector(h, ns, env, work, 0)
        for c in collectors.values():
            c.wait_ready()
            # no credential in the collector's process title
            cmdline = Path(f"/proc/{c.proc.pid}/cmdline").read_bytes()
            assert postgres.password.encode() not in cmdline and s3.secret.encode() not in cmdline

        # the analyzer, all along (one at a time on the fleet store: the lease), and the dashboard's queries
        stop = threading.Event()
        analyzer_runs: list[tuple[float, int, str]] = []

        def analyzer() -> None:
            while not stop.is_set():
                t0 = time.monotonic()
                r = run_cli("analyze", "-q", env={"PYTHONPATH": str(REPO)}, timeout=300)
                analyzer_runs.append((time.monotonic() - t0, r.returncode, r.stderr[-300:]))
                stop.wait(4)

        dash_reads: list[tuple[bool, str]] = []

        def dashboard() -> None:
            from dashboard import queries as dq

            reader = dq.Reader(None)
            while not stop.is_set():
                try:
                    dq.hosts_report(reader, dq.Window.last(1))
                    dq.overview_kpis(reader, dq.Window.last(1))
                    dash_reads.append((True, ""))
                except Exception as exc:  # noqa: BLE001 - counted: outages make some reads fail
                    dash_reads.append((False, str(exc)[:200]))
                    reader.reconnect()
                stop.wait(3)
            reader.close()

        bg = [threading.Thread(target=analyzer, daemon=True), threading.Thread(target=dashboard, daemon=True)]
        for t in bg:
            t.start()

        logs = {h: work / f"traffic-{h}.jsonl" for h in HOSTS}
        drivers = {h: ns.popen(sys.executable, "-m", "tests.support.fleet_traffic", "--host", h, "--duration",
                               str(DURATION), "--log", str(logs[h]), "--router", f"https://127.0.0.1:{ROUTER_PORT}",
                               "--ca", str(pki.ca), "--conn-every", "0.05", env=env, cwd=str(REPO))
                   for h, ns in nss.items()}
        procs += drivers.values()
        t_start = time.time()

        def at(s: float) -> None:
            time.sleep(max(0.0, t_start + s * DURATION / 66 - time.time()))

        # kill -9 one collector, restart it
        at(12)
        victim = HOSTS[1]
        kill_t = time.time()
        assert collectors[victim].stop(signal.SIGKILL) == -signal.SIGKILL
        at(16)
        collectors[victim] = Collector(victim, nss[victim], env, work, 1)
        respawn_t = collectors[victim].spawned
        restart_t = collectors[victim].wait_ready()
        # PostgreSQL restarts
        at(28)
        postgres.restart()
        # the object store stops answering (longer than a commit's timeouts and retries), then comes back
        at(38)
        s3.pause()
        at(54)
        s3.resume()
        for h, d in drivers.items():
            assert d.wait(timeout=DURATION + 120) == 0, h
        time.sleep(4)  # the last connections drain and commit
        for c in collectors.values():
            assert c.stop() == 0, c.log.read_text()[-2000:]
        stop.set()
        for t in bg:
            t.join(300)
    finally:
        for c in collectors.values():
            if c.proc.poll() is None:
                c.proc.kill()
                c.proc.wait()
        for p in procs:
            if p.poll() is None:
                p.terminate()
                try:
                    p.wait(10)
                except subprocess.TimeoutExpired:
                    p.kill()
        for ns in nss.values():
            ns.close()
        s3.resume()

    # every buffered batch has been replayed: the final analysis sees everything
    for _ in range(2):
        r = run_cli("analyze", "-q", env={"PYTHONPATH": str(REPO)})
        assert r.returncode == 0, r.stderr

    # -- exactly once, per host ----------------------------------------------------------------------
    report: dict[str, dict] = {}
    for h in HOSTS:
        ev = _events(logs[h])

        def recorded(t0: float, t1: float, h=h) -> bool | None:
            """True: made while the collector ran; False: while it was down; None: too close to call."""
            if h == victim:
                if t1 < kill_t - 3 and t0 > t_start:
                    return True
                if kill_t <= t0 and t1 < respawn_t:
                    return False
                if t0 > restart_t + 1:
                    return True
                return None
            return True
        conns = [e for e in ev if e["kind"] == "conn"]
        assert not [e for e in ev if e["kind"] == "conn-error"]
        out = collections.Counter(b for (b,) in q(
            "SELECT bytes_out FROM flows WHERE host_id = ? AND dst_port = 9000 AND direction = 'outbound'", [h]))
        inb = collections.Counter(b for (b,) in q(
            "SELECT bytes_out FROM flows WHERE host_id = ? AND dst_port = 9000 AND direction = 'inbound'", [h]))  # client view
        must = [e["bytes"] for e in conns if recorded(e["t0"], e["t1"])]
        never = [e["bytes"] for e in conns if recorded(e["t0"], e["t1"]) is False]
        assert must and all(out[b] == 1 for b in must), (h, [b for b in must if out[b] != 1][:20])
        assert all(inb[b] == 1 for b in must), (h, [b for b in must if inb[b] != 1][:20])
        assert max(out.values()) == 1 and max(inb.values()) == 1  # nothing twice, ever
        assert set(out) <= {e["bytes"] for e in conns}  # nothing from another host under this id
        assert not [b for b in never if out[b]], "connections while the collector was down"
        lookups = [e for e in ev if e["kind"] == "dns"]
        assert all(e["ok"] for e in lookups)
        dns = collections.Counter(n for (n,) in q(
            "SELECT query FROM dns WHERE host_id = ? AND source = 'ebpf-getaddrinfo' AND query LIKE '%.fleet.test'", [h]))
        want = [e["name"] for e in lookups if recorded(e["t0"], e["t1"])]
        assert want and all(dns[n] == 1 for n in want), (h, [n for n in want if dns[n] != 1][:20])
        assert max(dns.values()) == 1 and all(n.endswith(f".{h}.fleet.test") for n in dns)
        calls = [e for e in ev if e["kind"] == "exchange"]
        assert not [e for e in ev if e["kind"] == "exchange-error"], [e for e in ev if e["kind"] == "exchange-error"][:3]
        n_ex, n_ids = q("SELECT count(*), count(DISTINCT exchange_id) FROM llm_exchanges WHERE host_id = ?", [h])[0]
        expected = sum(e["calls"] for e in calls if recorded(e["t0"], e["t1"]))
        made = sum(e["calls"] for e in calls)
        assert n_ex == n_ids
        if h == victim:
            assert expected <= n_ex <= made, (h, expected, n_ex, made)
        else:
            assert n_ex == made, (h, n_ex, made)
        report[h] = {"connections": len(conns), "recorded": len(out), "dns": len(lookups), "exchanges": made}

    # -- what collector_stats says: the restart, the buffering, the recovery -----------------------
    starts = dict(q("SELECT host_id, count(DISTINCT json_extract_string(detail, '$.started_at')) FROM collector_stats "
                    "GROUP BY ALL"))
    assert starts == {HOSTS[0]: 1, HOSTS[1]: 2, HOSTS[2]: 1}, starts
    buffering = dict(q("SELECT host_id, max(json_extract(detail, '$.store_spilled_batches')::INT) FROM collector_stats "
                       "GROUP BY ALL"))
    reconnects = dict(q("SELECT host_id, max(json_extract(detail, '$.store_reconnects')::INT) FROM collector_stats "
                        "GROUP BY ALL"))
    # each one buffered through the object store's pause (batches of 20 connections/s are written as
    # Parquet, not inlined into the catalog) and came back on its own
    assert all(buffering[h] >= 1 for h in HOSTS), buffering
    assert all(reconnects[h] >= 1 for h in HOSTS), reconnects
    dropped = q("SELECT max(json_extract(detail, '$.store_dropped_rows')::INT) FROM collector_stats")[0][0]
    assert dropped == 0

    # -- cross-host findings --------------------------------------------------------------------------
    found = {r[0]: r[1:] for r in q("SELECT rule_id, host_id, router, evidence FROM findings WHERE rule_id LIKE 'fleet-%' "
                                    "ORDER BY ts")}
    spread = [json.loads(e)["host_count"] for (e,) in q(
        "SELECT evidence FROM findings WHERE rule_id = 'fleet-router-multi-host' ORDER BY ts")]
    assert spread and spread[-1] == 3 and len(spread) == len(set(spread)), spread  # once per host count passed
    assert found["fleet-router-divergence"][0] == HOSTS[0], found
    # exchanges reach the store while their connection is open (collector.live.plaintext), so the finding
    # fires as soon as h1's first tampered answer and another host's clean ones are in: it names the
    # clean hosts seen by then (one or both, by timing), never h1
    clean = {c["host_id"] for c in json.loads(found["fleet-router-divergence"][2])["clean_hosts"]}
    assert clean and clean <= set(HOSTS[1:]), clean
    # the dashboard's Hosts page over the fleet store: every host, the restart, no loss
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("ROUTERWATCH_DASHBOARD_STATE", str(work / "dashboard-state"))
    monkeypatch.delenv("ROUTERWATCH_DASHBOARD_AUTH", raising=False)
    at = AppTest.from_file(str(REPO / "dashboard" / "app.py"), default_timeout=180)
    at.session_state["rw_window"] = "last 24 hours"
    at.run()
    at.switch_page("views/hosts.py").run()
    assert not at.exception, [e.value for e in at.exception]
    hosts = at.dataframe[0].value.set_index("host_id")
    assert set(hosts.index) == set(HOSTS)
    assert hosts.loc[victim, "collector_starts"] == 2 and hosts.loc[HOSTS[0], "collector_starts"] == 1
    assert int(hosts["lost_events"].sum()) == 0 and hosts["version"].notna().all()
    ok_runs = [r for r in analyzer_runs if r[1] == 0]
    assert len(ok_runs) >= 3, analyzer_runs
    assert sum(ok for ok, _ in dash_reads) >= 3 and dash_reads[-1][0], dash_reads[-5:]

    # -- no credential where it must not be ------------------------------------------------------------
    leaks = [postgres.password, s3.secret, API_KEY]
    texts = [c.log.read_text() for c in collectors.values()]
    texts += [Path(w).read_text() for w in work.glob("collect-*.log")]
    texts += [run_cli("collect", "--help").stdout, run_cli("store", "maintain", "--help").stdout]
    texts += [r[2] for r in analyzer_runs] + [e for ok, e in dash_reads if not ok]
    with Store.open(read_only=True) as s:
        for table, column in s.sql("SELECT table_name, column_name FROM information_schema.columns "
                                   "WHERE table_catalog = 'lake' AND data_type IN ('VARCHAR', 'JSON')").fetchall():
            for secret in leaks:
                n = s.sql(f'SELECT count(*) FROM "{table}" WHERE CAST("{column}" AS VARCHAR) LIKE ?',
                          [f"%{secret}%"]).fetchone()[0]
                assert n == 0, (table, column)
    for t in texts:
        for secret in leaks:
            assert secret not in t
    print(json.dumps({"hosts": report, "analyzer_runs": len(analyzer_runs),
                      "analyzer_s": sorted(round(r[0], 2) for r in ok_runs)}))
