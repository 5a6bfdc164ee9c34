"""`routerwatch dashboard` / `routerwatch up` through the real console script."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import signal
import socket
import subprocess
import time
import urllib.request

import pytest

from dashboard import cli
from tests.collector.live.conftest import ebpf_skip_reason
from tests.conftest import BIN, REPO, run_cli
from tests.support.clients import agent_cmd
from tests.support.fixtures import pki_dir, zoo  # noqa: F401


def _args(**kw) -> argparse.Namespace:
    base = dict(store=None, host="127.0.0.1", port=8501, token_file=None, oidc_secrets=None, state_dir=None,
                capture_dir=None)
    base.update(kw)
    return argparse.Namespace(**base)


def test_refuses_exposed_bind_without_auth(seeded_store):
    out = run_cli("dashboard", "--store", str(seeded_store.path), "--host", "0.0.0.0", "--port", "1",
                  env={"ROUTERWATCH_DASHBOARD_TOKEN": ""})
    assert out.returncode == 2 and "refusing to serve" in out.stderr and "without authentication" in out.stderr


def test_auth_modes(tmp_path, monkeypatch):
    monkeypatch.delenv("ROUTERWATCH_DASHBOARD_TOKEN", raising=False)
    assert cli.auth_env(_args())["ROUTERWATCH_DASHBOARD_AUTH"] == "none"
    for host in ("::1", "127.0.0.2", "localhost"):
        assert cli.auth_env(_args(host=host))["ROUTERWATCH_DASHBOARD_AUTH"] == "none"
    tok = tmp_path / "tok"
    tok.write_text("short\n")
    with pytest.raises(cli.UserError, match="at least 16"):
        cli.auth_env(_args(host="0.0.0.0", token_file=str(tok)))
    tok.write_text("a-long-enough-token-value\n")
    env = cli.auth_env(_args(host="0.0.0.0", token_file=str(tok)))
    assert env == {"ROUTERWATCH_DASHBOARD_AUTH": "token", "ROUTERWATCH_DASHBOARD_TOKEN": "a-long-enough-token-value"}
    monkeypatch.setenv("ROUTERWATCH_DASHBOARD_TOKEN", "from-the-environment-123")
    assert cli.auth_env(_args(host="10.1.2.3"))["ROUTERWATCH_DASHBOARD_AUTH"] == "token"
    monkeypatch.delenv("ROUTERWATCH_DASHBOARD_TOKEN")
    secrets = tmp_path / "secrets.toml"
    secrets.write_text('[auth]\nredirect_uri = "https://rw.example/oauth2callback"\ncookie_secret = "x"\n')
    assert cli.auth_env(_args(host="0.0.0.0", oidc_secrets=str(secrets))) == {"ROUTERWATCH_DASHBOARD_AUTH": "oidc"}
    cmd, env = cli.dashboard_command(_args(host="0.0.0.0", oidc_secrets=str(secrets)))
    assert cmd[cmd.index("--secrets.files") + 1] == str(secrets) and "ROUTERWATCH_DASHBOARD_TOKEN" not in env
    # telemetry off and no dev server features, whatever the mode
    assert cmd[cmd.index("--browser.gatherUsageStats") + 1] == "false"
    assert cmd[cmd.index("--server.address") + 1] == "0.0.0.0"


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _healthy(url: str, proc: subprocess.Popen, timeout: float = 60) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            with urllib.request.urlopen(url + "/_stcore/health", timeout=2) as r:
                return r.status == 200
        except OSError:
            time.sleep(0.3)
    return False


def test_dashboard_binds_loopback_and_stops_on_sigterm(seeded_store, tmp_path):
    port = _port()
    proc = subprocess.Popen([str(BIN / "routerwatch"), "dashboard", "--store", str(seeded_store.path), "--port",
                             str(port), "--state-dir", str(tmp_path / "st")], stderr=subprocess.PIPE, text=True)
    try:
        assert _healthy(f"http://127.0.0.1:{port}", proc)
        listening = subprocess.run(["ss", "-Htln", f"sport = :{port}"], capture_output=True, text=True).stdout
        local = [line.split()[3] for line in listening.splitlines() if line.strip()]
        assert local == [f"127.0.0.1:{port}"], listening
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0


def test_up(seeded_store, tmp_path):
    port = _port()
    if not cli.collect_available():
        out = run_cli("up", "--store", str(seeded_store.path), "--port", str(port))
        assert out.returncode == 2 and "routerwatch collect" in out.stderr
        return
    # a collector that cannot start (bad argument) takes the dashboard down with it, and `up` says so
    proc = subprocess.Popen([str(BIN / "routerwatch"), "up", "--store", str(tmp_path / "s"), "--port", str(port),
                             "--state-dir", str(tmp_path / "st"), "--", "--no-such-flag"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=dict(os.environ))
    _out, err = proc.communicate(timeout=90)
    assert proc.returncode != 0 and "collector exited" in err
    with socket.socket() as s:  # the dashboard is gone too
        assert s.connect_ex(("127.0.0.1", port)) != 0


def test_up_runs_both_and_sigterm_stops_both(tmp_path):
    if not cli.collect_available():
        pytest.skip("this build has no `routerwatch collect`")
    port, store = _port(), tmp_path / "store"
    proc = subprocess.Popen([str(BIN / "routerwatch"), "up", "--store", str(store), "--port", str(port),
                             "--state-dir", str(tmp_path / "st"), "--", "--no-ebpf", "--no-capture", "--interval", "1"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        assert _healthy(f"http://127.0.0.1:{port}", proc, timeout=90)
        deadline = time.monotonic() + 60
        stats = 0
        while time.monotonic() < deadline and not stats:  # the collector writes the store the dashboard reads
            out = run_cli("sql", "--store", str(store), "--format", "csv", "SELECT count(*) FROM collector_stats")
            stats = int(out.stdout.splitlines()[-1]) if out.returncode == 0 else 0
            time.sleep(1)
        assert stats > 0
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, out[-2000:]
    children = subprocess.run(["pgrep", "-s", str(proc.pid)], capture_output=True, text=True).stdout.split()
    assert not children  # nothing of the session is left running


@pytest.mark.ebpf
@pytest.mark.skipif(ebpf_skip_reason() is not None, reason=ebpf_skip_reason() or "")
def test_up_detects_an_injected_tool_call_with_nobody_running_analyze(tmp_path, zoo):  # noqa: F811
    """The main job closes the loop: a wrapped SDK agent meets a malicious router; `up` (collector,
    analyzer, dashboard) raises the finding, sends its EVE alert and shows it, and nobody ran analyze."""
    router = zoo("inject")
    port, store, eve = _port(), tmp_path / "store", tmp_path / "alerts.eve.json"
    env = dict(os.environ, ROUTERWATCH_KEYLOG_DIR=str(tmp_path / "keys"))
    log = open(tmp_path / "up.log", "w")
    proc = subprocess.Popen([str(BIN / "routerwatch"), "up", "--store", str(store), "--port", str(port),
                             "--state-dir", str(tmp_path / "st"), "--eve", str(eve), "--analyze-interval", "0.5",
                             "--", "--iface", "lo", "--capture-dir", str(tmp_path / "cap"), "--interval", "2",
                             "--max-delay", "1"], stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    try:
        assert _healthy(f"http://127.0.0.1:{port}", proc, timeout=120), (tmp_path / "up.log").read_text()
        deadline = time.monotonic() + 120
        while "mode=" not in (tmp_path / "up.log").read_text() and time.monotonic() < deadline:
            time.sleep(0.2)  # the probes are attached
        agent_env = dict(env, SSL_CERT_FILE=str(router.ca_path))
        agent_env.pop("SSLKEYLOGFILE", None)
        a = subprocess.run([str(BIN / "routerwatch"), "wrap", "--",
                            *agent_cmd(router.url, "openai", ca=router.ca_path, extra=["--no-exec"])],
                           cwd=REPO, env=agent_env, capture_output=True, text=True, timeout=120)
        assert a.returncode == 0, a.stderr
        seen = None
        deadline = time.monotonic() + 90
        while seen is None and time.monotonic() < deadline:
            out = run_cli("sql", "--store", str(store), "--format", "json",
                          "SELECT f.finding_id, f.exchange_id, e.ts FROM findings f JOIN llm_exchanges e "
                          "USING (exchange_id) WHERE f.rule_id = 'ac1-download-exec'")
            rows = json.loads(out.stdout) if out.returncode == 0 else []
            if rows:
                seen = (dt.datetime.now(dt.UTC).replace(tzinfo=None), rows)
            else:
                time.sleep(0.3)
        assert seen is not None, (tmp_path / "up.log").read_text()[-4000:]
        when, rows = seen
        latency = (when - dt.datetime.fromisoformat(str(rows[0]["ts"]))).total_seconds()
        print(f"finding visible {latency:.1f} s after the exchange (load {os.getloadavg()[0]:.1f})")
        assert latency <= 10, latency  # the bound, under whatever load CI has
        alerts = [json.loads(x) for x in eve.read_text().splitlines()]
        assert [e["routerwatch"]["exchange_id"] for e in alerts
                if e["event_type"] == "alert" and e["routerwatch"]["rule_id"] == "ac1-download-exec"] == \
            [rows[0]["exchange_id"]]
        runs = run_cli("sql", "--store", str(store), "--format", "csv", "SELECT count(*) FROM analyzer_runs")
        assert int(runs.stdout.splitlines()[-1]) >= 1
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=90)
        log.close()
    text = (tmp_path / "up.log").read_text()
    assert proc.returncode == 0, text[-3000:]
    assert "Traceback" not in text, text[-3000:]
    children = subprocess.run(["pgrep", "-s", str(proc.pid)], capture_output=True, text=True).stdout.split()
    assert not children  # collector, analyzer, dashboard and the store's helper processes all ended
