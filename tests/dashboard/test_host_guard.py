"""DNS-rebinding defence: the dashboard serves only its own Host names and same-origin websockets.

Raw HTTP requests and websocket upgrades against a real `routerwatch dashboard`, a real Chromium whose
resolver maps an attacker's name to 127.0.0.1 (what DNS rebinding achieves), and TLS serving."""

from __future__ import annotations

import base64
import datetime as dt
import os
import socket
import ssl
import subprocess
import time

import pytest

from dashboard import cli
from dashboard.host_guard import HostPolicy
from tests.conftest import BIN
from tests.dashboard.test_browser import ARGS, CHROMIUM, Server

ATTACKER = "rebind.attacker.test"


def _request(port: int, host: str, path: str = "/_stcore/health", origin: str | None = None,
             websocket: bool = False, tls: bool = False) -> str:
    """The status line of one raw request (headers exactly as given: a browser after rebinding sends these)."""
    lines = [f"GET {path} HTTP/1.1", f"Host: {host}"]
    if websocket:
        key = base64.b64encode(os.urandom(16)).decode()
        lines += ["Upgrade: websocket", "Connection: Upgrade", f"Sec-WebSocket-Key: {key}",
                  "Sec-WebSocket-Version: 13", "Sec-WebSocket-Protocol: streamlit"]
    else:
        lines.append("Connection: close")
    if origin is not None:
        lines.append(f"Origin: {origin}")
    raw = ("\r\n".join(lines) + "\r\n\r\n").encode()
    sock = socket.create_connection(("127.0.0.1", port), timeout=20)
    if tls:
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        sock = ctx.wrap_socket(sock, server_hostname="localhost")
    with sock:
        sock.sendall(raw)
        data = b""
        while b"\r\n" not in data:
            chunk = sock.recv(4096)
            if not chunk:
                break
            data += chunk
    return data.split(b"\r\n")[0].decode("latin-1")


def test_policy():
    p = HostPolicy("127.0.0.1", ["dash.example.test"])
    ok = [("127.0.0.1:8501", None), ("localhost:8501", "http://localhost:8501"), ("[::1]:8501", "http://[::1]:8501"),
          ("dash.example.test", "https://dash.example.test"), ("DASH.example.test.:443", "https://dash.example.test"),
          ("127.0.0.2:8501", None)]
    for host, origin in ok:
        assert p.check(host, origin) is None, (host, origin)
    bad = [(f"{ATTACKER}:8501", None), (f"{ATTACKER}:8501", f"http://{ATTACKER}:8501"), (None, None), ("", None),
           ("127.0.0.1:8501", "http://127.0.0.1:9999"), ("127.0.0.1:8501", "http://localhost:8501"),
           ("127.0.0.1:8501", "null"), ("127.0.0.1:8501", f"http://{ATTACKER}"), ("user@127.0.0.1", None),
           ("127.0.0.1:99999", None), ("127.0.0.1/x", None), ("10.0.0.5:8501", None),
           ("dash.example.test", "http://dash.example.test:8080"), ("127.0.0.1:8501", "file://")]
    for host, origin in bad:
        assert p.check(host, origin) is not None, (host, origin)
    wild = HostPolicy("0.0.0.0")
    assert wild.check("10.0.0.5:8501", "http://10.0.0.5:8501") is None  # an IP literal cannot be rebound
    assert wild.check(f"{ATTACKER}:8501", None) is not None


@pytest.fixture(scope="module")
def server(seeded_store, tmp_path_factory):
    srv = Server(seeded_store.path, tmp_path_factory.mktemp("state"))
    yield srv
    assert srv.stop() == 0


def test_rebinding_refused_raw(server):
    port = server.port
    own = f"127.0.0.1:{port}"
    assert _request(port, own).endswith("200 OK")
    assert _request(port, f"localhost:{port}", "/").endswith("200 OK")
    assert " 101 " in _request(port, own, "/_stcore/stream", f"http://{own}", websocket=True)
    # the observed attack: a websocket upgrade with the attacker's Host and a matching Origin
    for host, origin in ((f"{ATTACKER}:{port}", f"http://{ATTACKER}:{port}"), (f"{ATTACKER}:{port}", None),
                         (own, f"http://{ATTACKER}:{port}"), (own, "http://127.0.0.1:1"), (own, "null")):
        assert " 403 " in _request(port, host, "/_stcore/stream", origin, websocket=True), (host, origin)
    for path in ("/", "/_stcore/health", "/sql", "/static/index.html", "/_stcore/host-config"):
        assert " 403 " in _request(port, f"{ATTACKER}:{port}", path), path
    time.sleep(0.5)
    assert any("refused" in line and ATTACKER in line for line in server.out), "".join(server.out)[-2000:]


def test_rebinding_refused_in_chromium(server):
    """Chromium resolving the attacker's name to 127.0.0.1, as after a rebinding: no app, a refusal."""
    if not os.path.exists(CHROMIUM):
        pytest.skip("Debian's chromium is not installed (deploy/deps.sh --test installs it)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM,
                              args=[*ARGS, f"--host-resolver-rules=MAP {ATTACKER} 127.0.0.1"])
        try:
            page = b.new_page()
            resp = page.goto(f"http://{ATTACKER}:{server.port}/sql")
            assert resp is not None and resp.status == 403
            assert "refused" in page.inner_text("body")
            page.wait_for_timeout(1500)
            assert page.locator('[data-testid="stApp"]').count() == 0
            # the same browser reaching the dashboard by its own name gets the app
            resp = page.goto(f"http://127.0.0.1:{server.port}/")
            assert resp is not None and resp.status == 200
            page.get_by_role("heading", name="Overview").first.wait_for(timeout=60_000)
        finally:
            b.close()


def test_allowed_host_flag(seeded_store, tmp_path):
    token = tmp_path / "token"
    token.write_text("an-access-token-for-allowed-hosts\n")
    srv = Server(seeded_store.path, tmp_path / "state", "--token-file", str(token), "--allowed-host", "dash.example.test")
    try:
        assert _request(srv.port, "dash.example.test").endswith("200 OK")
        assert " 101 " in _request(srv.port, "dash.example.test", "/_stcore/stream", "https://dash.example.test",
                                   websocket=True)
        assert " 403 " in _request(srv.port, f"{ATTACKER}:{srv.port}")
    finally:
        assert srv.stop() == 0


def _args(**kw):
    import argparse

    base = dict(store=None, host="127.0.0.1", port=8501, token_file=None, oidc_secrets=None, state_dir=None,
                capture_dir=None, allowed_host=None, tls_cert=None, tls_key=None, sql_timeout=None,
                sql_memory_limit=None)
    base.update(kw)
    return argparse.Namespace(**base)


def test_flags(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("ROUTERWATCH_DASHBOARD_TOKEN", raising=False)
    # a non-loopback name served means the dashboard is reachable from elsewhere: authentication required
    with pytest.raises(cli.UserError, match="without authentication"):
        cli.dashboard_command(_args(allowed_host=["dash.example.test"]))
    for bad in ("https://x.test", "x.test:8443", "*.example.test"):
        with pytest.raises(cli.UserError, match="--allowed-host"):
            cli.dashboard_command(_args(allowed_host=[bad]))
    cmd, env = cli.dashboard_command(_args(allowed_host=["localhost"]))
    assert env["ROUTERWATCH_DASHBOARD_BIND"] == "127.0.0.1"
    names = [cmd[i + 1] for i, a in enumerate(cmd) if a == "--server.allowedHosts"]
    assert sorted(names) == ["127.0.0.1", "::1", "localhost"]
    # off loopback without TLS: a warning; with TLS: none, and Streamlit gets the certificate
    monkeypatch.setenv("ROUTERWATCH_DASHBOARD_TOKEN", "a-long-enough-token-value")
    capsys.readouterr()
    cli.dashboard_command(_args(host="0.0.0.0"))
    assert "plain HTTP" in capsys.readouterr().err
    cert, key = _self_signed(tmp_path)
    cmd, _ = cli.dashboard_command(_args(host="0.0.0.0", tls_cert=str(cert), tls_key=str(key)))
    assert cmd[cmd.index("--server.sslCertFile") + 1] == str(cert) and "plain HTTP" not in capsys.readouterr().err
    # what `dashboard` and `up` print as the address to open
    assert cli.dashboard_url(_args(host="0.0.0.0", port=8443), cmd) == "https://0.0.0.0:8443/"
    assert cli.dashboard_url(_args(), cli.dashboard_command(_args())[0]) == "http://127.0.0.1:8501/"
    with pytest.raises(cli.UserError, match="go together"):
        cli.dashboard_command(_args(tls_cert=str(cert)))
    (tmp_path / "not.pem").write_text("x")
    with pytest.raises(cli.UserError, match="not a PEM"):
        cli.dashboard_command(_args(tls_cert=str(tmp_path / "not.pem"), tls_key=str(key)))
    with pytest.raises(cli.UserError, match="--sql-timeout|time limit"):
        cli.dashboard_command(_args(sql_timeout=-1))
    _, env = cli.dashboard_command(_args(sql_timeout=5, sql_memory_limit="256MiB"))
    assert env["ROUTERWATCH_SQL_TIMEOUT"] == "5" and env["ROUTERWATCH_SQL_MEMORY_LIMIT"] == "256MiB"


def _self_signed(d):
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    k = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = dt.datetime.now(dt.UTC)
    c = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(k.public_key())
         .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(days=1))
         .not_valid_after(now + dt.timedelta(days=2))
         .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
         .sign(k, hashes.SHA256()))
    cert, key = d / "cert.pem", d / "key.pem"
    cert.write_bytes(c.public_bytes(serialization.Encoding.PEM))
    key.write_bytes(k.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption()))
    key.chmod(0o600)
    return cert, key


def test_tls(seeded_store, tmp_path):
    cert, key = _self_signed(tmp_path)
    port = _free_port()
    proc = subprocess.Popen([str(BIN / "routerwatch"), "dashboard", "--store", str(seeded_store.path),
                             "--port", str(port), "--tls-cert", str(cert), "--tls-key", str(key)],
                            env={**os.environ, "ROUTERWATCH_DASHBOARD_STATE": str(tmp_path / "state")},
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 60
        status = ""
        while time.monotonic() < deadline:
            try:
                status = _request(port, f"localhost:{port}", tls=True)
                break
            except OSError:
                time.sleep(0.5)
        assert status.endswith("200 OK"), status
        assert " 403 " in _request(port, f"{ATTACKER}:{port}", tls=True)
        with pytest.raises((OSError, IndexError, AssertionError)):  # plain HTTP to a TLS port is not served
            assert _request(port, f"localhost:{port}").endswith("200 OK")
    finally:
        proc.terminate()
        out = proc.communicate(timeout=30)[0]
    assert "https://127.0.0.1" in out


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
