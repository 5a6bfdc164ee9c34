"""`routerwatch wrap`: key logs from real Python (httpx-style SSLContext, the openai SDK) and Node
clients, file modes, sidecars, deletion, exit codes and signals; proxy mode through the CLI."""

from __future__ import annotations

import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from collector.proxy.ca import CertificateAuthority
from collector.store import Store
from collector.wrap import keylog_env, proxy_env, redact_argv
from tests.collector.proxy.tls_router import Router
from tests.conftest import BIN, run_cli

# A Python client that builds its own SSLContext like httpx2 does (no SSLKEYLOGFILE support).
OWN_CONTEXT_CLIENT = """
import json, ssl, sys, http.client
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
ctx.load_verify_locations(sys.argv[1])
c = http.client.HTTPSConnection("127.0.0.1", int(sys.argv[2]), context=ctx)
c.request("POST", "/v1/chat/completions", body=json.dumps({"model": "gpt-4o"}))
print(c.getresponse().status)
"""


@pytest.fixture
def router_ca(tmp_path: Path) -> CertificateAuthority:
    return CertificateAuthority(tmp_path / "router-ca")


@pytest.fixture
def router(router_ca: CertificateAuthority):  # noqa: ANN201
    r = Router(router_ca)
    yield r
    r.stop()


def _sidecars(d: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(d.glob("wrap-*.json"))]


def test_python_own_sslcontext_writes_keys_0600(tmp_path: Path, router, router_ca) -> None:  # noqa: ANN001
    kd = tmp_path / "keys"
    r = run_cli("wrap", "--keylog-dir", str(kd), "--keep-keys", "--", sys.executable, "-c", OWN_CONTEXT_CLIENT,
                str(router_ca.cert_path), str(router.port))
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "200"
    assert stat.S_IMODE(kd.stat().st_mode) == 0o700
    (keylog,) = kd.glob("wrap-*.keylog")
    assert stat.S_IMODE(keylog.stat().st_mode) == 0o600
    text = keylog.read_text()
    assert "CLIENT_TRAFFIC_SECRET_0" in text and "SERVER_HANDSHAKE_TRAFFIC_SECRET" in text
    (meta,) = _sidecars(kd)
    assert meta["status"] == "exited" and meta["exit_code"] == 0 and meta["keylog"] == keylog.name
    assert meta["pid"] > 0 and meta["process_start"] > 0 and meta["delete_after_use"] is False
    assert stat.S_IMODE(keylog.with_suffix(".json").stat().st_mode) == 0o600


def test_openai_sdk_key_log(tmp_path: Path, router, router_ca) -> None:  # noqa: ANN001
    """The real openai SDK (httpx2 builds `ssl.SSLContext(PROTOCOL_TLS_CLIENT)` itself, and never
    reads SSLKEYLOGFILE): it writes a key log only thanks to the sitecustomize hook."""
    client = (
        "import openai, ssl, sys\n"
        "ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT); ctx.load_verify_locations(sys.argv[2])\n"
        "c = openai.OpenAI(base_url=sys.argv[1] + '/v1', api_key='sk-test',"
        " http_client=openai.DefaultHttpxClient(verify=ctx))\n"
        "r = c.chat.completions.create(model='gpt-4o', messages=[{'role': 'user', 'content': 'hi'}])\n"
        "print(r.choices[0].message.tool_calls[0].function.name)\n"
    )
    kd = tmp_path / "keys"
    r = run_cli("wrap", "--keylog-dir", str(kd), "--keep-keys", "--", sys.executable, "-c", client, router.url,
                str(router_ca.cert_path))
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.strip() == "bash"
    (keylog,) = kd.glob("wrap-*.keylog")
    assert "CLIENT_TRAFFIC_SECRET_0" in keylog.read_text()
    # without the hook (plain SSLKEYLOGFILE), the same client writes nothing
    bare = kd / "bare.keylog"
    e = dict(os.environ, SSLKEYLOGFILE=str(bare))
    p = subprocess.run([sys.executable, "-c", client, router.url, str(router_ca.cert_path)], env=e,
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr[-2000:]
    assert not bare.exists() or "CLIENT_TRAFFIC_SECRET_0" not in bare.read_text()


@pytest.mark.skipif(not shutil.which("node"), reason="node is not installed (deploy/deps.sh --test installs it)")
def test_node_tls_keylog(tmp_path: Path, router, router_ca) -> None:  # noqa: ANN001
    js = (
        "const https = require('https');"
        "const r = https.request({host: '127.0.0.1', port: +process.argv[1], path: '/v1/chat/completions', method: 'POST',"
        " headers: {'content-type': 'application/json'}}, res => { res.resume(); res.on('end', () => console.log(res.statusCode)); });"
        "r.end('{\"model\":\"gpt-4o\"}');"
    )
    kd = tmp_path / "keys"
    r = run_cli("wrap", "--keylog-dir", str(kd), "--keep-keys", "--", "node", "-e", js, str(router.port),
                env={"NODE_EXTRA_CA_CERTS": str(router_ca.cert_path), "NODE_OPTIONS": "--no-warnings"})
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "200"
    (keylog,) = kd.glob("wrap-*.keylog")
    assert stat.S_IMODE(keylog.stat().st_mode) == 0o600
    assert "CLIENT_TRAFFIC_SECRET_0" in keylog.read_text()


def test_keys_deleted_unless_kept_or_claimed(tmp_path: Path) -> None:
    kd = tmp_path / "keys"
    r = run_cli("wrap", "--keylog-dir", str(kd), "--", sys.executable, "-c", "import sys; sys.exit(7)")
    assert r.returncode == 7  # exit status passes through
    assert not list(kd.iterdir())  # nobody claimed the run: wrap deleted the key log and sidecar
    # a collector that claims the run takes over deletion
    claim = (
        "import glob, os, pathlib; d = os.environ['D'];"
        "[pathlib.Path(p[:-5] + '.claimed').touch() for p in glob.glob(d + '/wrap-*.json')]"
    )
    r = run_cli("wrap", "--keylog-dir", str(kd), "--", sys.executable, "-c", claim, env={"D": str(kd)})
    assert r.returncode == 0, r.stderr
    (meta,) = _sidecars(kd)
    assert meta["delete_after_use"] is True and (kd / meta["keylog"]).exists()


def test_signals_are_forwarded(tmp_path: Path) -> None:
    marker = tmp_path / "got"
    child = (
        "import signal, sys, time, pathlib\n"
        "def h(n, f):\n"
        f"    pathlib.Path({str(marker)!r}).write_text(str(n)); sys.exit(42)\n"
        "signal.signal(signal.SIGTERM, h)\n"
        f"pathlib.Path({str(marker)!r} + '.ready').touch()\n"
        "time.sleep(60)\n"
    )
    p = subprocess.Popen([str(BIN / "routerwatch"), "wrap", "--keylog-dir", str(tmp_path / "k"), "--",
                          sys.executable, "-c", child])
    try:
        deadline = time.monotonic() + 30
        while not Path(str(marker) + ".ready").exists():
            assert time.monotonic() < deadline and p.poll() is None
            time.sleep(0.05)
        p.send_signal(signal.SIGTERM)
        assert p.wait(30) == 42
    finally:
        if p.poll() is None:
            p.kill()
    assert marker.read_text() == str(int(signal.SIGTERM))
    # killed by a signal: 128 + N
    r = run_cli("wrap", "--keylog-dir", str(tmp_path / "k"), "--", "sh", "-c", "kill -KILL $$")
    assert r.returncode == 128 + 9


def test_missing_command_is_a_user_error(tmp_path: Path) -> None:
    r = run_cli("wrap", "--keylog-dir", str(tmp_path), "--", "no-such-agent-xyz")
    assert r.returncode == 2 and "command not found" in r.stderr
    assert not list(tmp_path.glob("wrap-*"))


def test_env_builders() -> None:
    env = keylog_env({"NODE_OPTIONS": "--max-old-space-size=100 --tls-keylog=/old", "PYTHONPATH": "/x"}, Path("/k"))
    assert env["NODE_OPTIONS"] == "--max-old-space-size=100 --tls-keylog=/k"
    assert env["PYTHONPATH"].endswith(":/x") and env["SSLKEYLOGFILE"] == "/k"
    penv = proxy_env({"NO_PROXY": "localhost,127.0.0.1,internal.corp,::1"}, "http://127.0.0.1:9", Path("/ca"), Path("/b"))
    assert penv["HTTPS_PROXY"] == penv["http_proxy"] == "http://127.0.0.1:9"
    assert penv["NO_PROXY"] == "internal.corp"
    assert penv["NODE_EXTRA_CA_CERTS"] == "/ca" and penv["CODEX_CA_CERTIFICATE"] == penv["SSL_CERT_FILE"] == "/b"
    assert redact_argv(["agent", "--api-key", "sk-1", "--token=abc", "-v"]) == \
        ["agent", "--api-key", "<redacted>", "--token=<redacted>", "-v"]


def test_wrap_proxy_python_agent_into_store(tmp_path: Path, router, router_ca) -> None:  # noqa: ANN001
    """A Python agent through `wrap --proxy`: exchange, flows with the agent's pid, credentials as
    fingerprints only."""
    client = (
        "import json, urllib.request, sys\n"
        "req = urllib.request.Request(sys.argv[1] + '/v1/chat/completions', data=json.dumps({'model': 'gpt-4o',"
        " 'messages': []}).encode(), headers={'content-type': 'application/json',"
        " 'authorization': 'Bearer sk-proj-abcdefghijklmnopqrstuvwxyz0123456789'})\n"
        "print(json.loads(urllib.request.urlopen(req).read())['model'])\n"
        "import os; print(os.getpid())\n"
    )
    store = tmp_path / "store"
    r = run_cli("wrap", "--proxy", "--store", str(store), "--", sys.executable, "-c", client, router.url,
                env={"NODE_EXTRA_CA_CERTS": str(router_ca.cert_path), "ROUTERWATCH_PROXY_CA_DIR": str(tmp_path / "pca")})
    assert r.returncode == 0, r.stderr
    model, pid = r.stdout.split()
    assert model == "gpt-4o"

    def q(sql: str) -> list[dict]:
        with Store.open(str(store), read_only=True) as st:
            cur = st.sql(sql)
            cols = [d[0] for d in cur.description]
            return [dict(zip(cols, row, strict=True)) for row in cur.fetchall()]

    (http,) = q("SELECT * FROM http")
    assert http["path"] == "/v1/chat/completions" and http["status"] == 200 and http["source"] == "proxy"
    assert "sk-proj" not in json.dumps(http, default=str)
    flows = q("SELECT * FROM flows ORDER BY proxy_leg")
    assert [(f["proxy_leg"], f["proxy_scheme"], f["history"]) for f in flows] == [
        ("agent", "https", None), ("upstream", "https", None)]
    assert all(f["pid"] == int(pid) and f["community_id"].startswith("1:") for f in flows)
    assert flows[1]["dst_port"] == router.port and flows[1]["flow_uid"] == http["flow_uid"]
    procs = q(f"SELECT * FROM processes WHERE pid = {int(pid)}")
    assert procs and "python" in procs[0]["exe"] and procs[0]["start_time"] == flows[0]["process_start"]
    assert q(f"SELECT count(*) AS n FROM processes WHERE pid = {procs[0]['ppid']}")[0]["n"] == 1  # its parent too
    (sec,) = q("SELECT * FROM secrets_seen WHERE direction = 'request'")
    assert sec["last4"] == "6789" and sec["direction"] == "request"
    assert "sk-proj-abcdefghijklmnopqrstuvwxyz0123456789" not in "".join(
        p.read_bytes().decode("latin-1") for p in store.rglob("*") if p.is_file() and p.name != "secret.key")


def test_wrap_proxy_exit_code_and_unusable_store(tmp_path: Path) -> None:
    env = {"ROUTERWATCH_PROXY_CA_DIR": str(tmp_path / "pca")}
    r = run_cli("wrap", "--proxy", "--store", str(tmp_path / "store"), "--", sys.executable, "-c", "import sys; sys.exit(3)",
                env=env)
    assert r.returncode == 3, r.stderr
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    r = run_cli("wrap", "--proxy", "--store", str(blocker / "store"), "--", "true", env=env)
    assert r.returncode == 2 and "store" in r.stderr  # fails closed: the agent never starts unrecorded
