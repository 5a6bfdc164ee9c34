"""DNS over HTTPS becomes `dns` rows (source 'doh'): a real DoH server (hypercorn) on loopback, real curl
clients (its built-in --doh-url resolver over TLS h2, GET ?dns= over HTTP/1.1 TLS, GET and POST over
h2c with prior knowledge, the JSON flavour), captured with tcpdump and ingested with curl's key log."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import shutil
import socket
import subprocess
import threading
from collections.abc import Callable
from pathlib import Path
from urllib.parse import parse_qs

import pytest
from hypercorn.asyncio import serve
from hypercorn.config import Config
from scapy.layers.dns import DNS, DNSQR, DNSRR

from analyzer.demo.pki import ensure_pki
from tests.conftest import run_cli
from tests.support.capture import capture_loopback

pytestmark = pytest.mark.skipif(shutil.which("tcpdump") is None or os.geteuid() != 0 or shutil.which("curl") is None,
                                reason="needs tcpdump, curl and root to capture loopback (CI has them)")

ANSWER = "127.0.0.1"


async def doh_app(scope, receive, send):  # noqa: ANN001 - ASGI
    if scope["type"] == "lifespan":
        while True:
            msg = await receive()
            if msg["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif msg["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    body = b""
    while True:
        msg = await receive()
        body += msg.get("body", b"")
        if not msg.get("more_body"):
            break
    params = parse_qs(scope["query_string"].decode())
    if "name" in params:  # the JSON flavour
        name = params["name"][0]
        out = json.dumps({"Status": 0, "Question": [{"name": name, "type": 1}],
                          "Answer": [{"name": name, "type": 1, "TTL": 30, "data": ANSWER}]}).encode()
        ctype = b"application/dns-json"
    else:
        raw = body if scope["method"] == "POST" else base64.urlsafe_b64decode(params["dns"][0] + "==")
        q = DNS(raw)
        qd = q.qd[0] if isinstance(q.qd, list) else q.qd
        an = [DNSRR(rrname=qd.qname, type="A", rdata=ANSWER)] if qd.qtype == 1 else []
        out = bytes(DNS(id=q.id, qr=1, rd=1, ra=1, qd=qd, an=an))
        ctype = b"application/dns-message"
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", ctype), (b"content-length", str(len(out)).encode())]})
    await send({"type": "http.response.body", "body": out})


def start_server(tls: Path | None) -> tuple[int, Callable[[], None]]:
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    port = sock.getsockname()[1]
    cfg = Config()
    cfg.bind = [f"fd://{sock.fileno()}"]
    cfg.accesslog = cfg.errorlog = None
    cfg.graceful_timeout = 0.5
    if tls is not None:
        pki = ensure_pki(tls)
        cfg.certfile, cfg.keyfile = str(pki.cert), str(pki.key)
        cfg.alpn_protocols = ["h2", "http/1.1"]
    loop = asyncio.new_event_loop()
    stop = asyncio.Event()
    ready = threading.Event()

    def run() -> None:
        asyncio.set_event_loop(loop)
        loop.call_soon(ready.set)
        loop.run_until_complete(serve(doh_app, cfg, shutdown_trigger=stop.wait))

    t = threading.Thread(target=run, daemon=True)
    t.start()
    ready.wait(10)
    sock.detach()

    def halt() -> None:
        loop.call_soon_threadsafe(stop.set)
        t.join(10)

    return port, halt


def curl(*args: str, keylog: Path, ca: Path | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "SSLKEYLOGFILE": str(keylog)}
    cmd = ["curl", "-sS", "--max-time", "20", *(["--cacert", str(ca)] if ca else []), *args]
    return subprocess.run(cmd, capture_output=True, env=env, timeout=40)


def dns_param(name: str) -> str:
    return base64.urlsafe_b64encode(bytes(DNS(id=7, rd=1, qd=DNSQR(qname=name)))).rstrip(b"=").decode()


def test_doh_lookups_become_dns_rows(tmp_path: Path, store_dir: Path) -> None:
    tls_port, stop_tls = start_server(tmp_path / "pki")
    clear_port, stop_clear = start_server(None)
    ca = ensure_pki(tmp_path / "pki").ca
    keylog = tmp_path / "curl.keys"
    qfile = tmp_path / "q.bin"
    qfile.write_bytes(bytes(DNS(id=9, rd=1, qd=DNSQR(qname="post-h2c.doh.example"))))
    try:
        with capture_loopback(tmp_path / "doh.pcap", ports=[tls_port, clear_port]) as cap:
            # curl's own DoH resolver (POST over TLS, h2), then a fetch of the name it resolved
            r1 = curl("--doh-url", f"https://127.0.0.1:{tls_port}/dns-query", "-o", "/dev/null",
                      f"http://payload.doh.example:{clear_port}/x.sh", keylog=keylog, ca=ca)
            r2 = curl("--http1.1", "-H", "accept: application/dns-message",
                      f"https://127.0.0.1:{tls_port}/dns-query?dns={dns_param('get-h1.doh.example')}",
                      "-o", "/dev/null", keylog=keylog, ca=ca)
            r3 = curl("--http2-prior-knowledge", "-H", "accept: application/dns-message", "-o", "/dev/null",
                      f"http://127.0.0.1:{clear_port}/dns-query?dns={dns_param('get-h2c.doh.example')}", keylog=keylog)
            r4 = curl("--http2-prior-knowledge", "-H", "content-type: application/dns-message",
                      "--data-binary", f"@{qfile}", "-o", "/dev/null", f"http://127.0.0.1:{clear_port}/dns-query",
                      keylog=keylog)
            r5 = curl("-H", "accept: application/dns-json", "-o", "/dev/null",
                      f"http://127.0.0.1:{clear_port}/resolve?name=json.doh.example&type=A", keylog=keylog)
    finally:
        stop_tls()
        stop_clear()
    for r in (r1, r2, r3, r4, r5):
        assert r.returncode == 0, r.stderr
    assert cap.stats.get("dropped", 0) == 0
    p = run_cli("ingest", "--store", str(store_dir), "--keylog", str(keylog), str(cap.path))
    assert p.returncode == 0, p.stderr
    q = run_cli("sql", "--store", str(store_dir), "--format", "json",
                "SELECT d.query, d.qtype, d.is_response, d.rcode, d.answers, d.flow_uid IS NOT NULL AS linked, "
                "(SELECT any_value(h.http_version) FROM http h WHERE h.flow_uid = d.flow_uid) AS http_version "
                "FROM dns d WHERE d.source = 'doh' ORDER BY d.query, d.is_response, d.qtype")
    assert q.returncode == 0, q.stderr
    rows = json.loads(q.stdout)
    names = {(r["query"], r["is_response"]) for r in rows}
    for name in ("payload.doh.example", "get-h1.doh.example", "get-h2c.doh.example", "post-h2c.doh.example",
                 "json.doh.example"):
        assert (name, False) in names and (name, True) in names, (name, rows)
    answered = {r["query"]: r["answers"] for r in rows if r["is_response"] and r["qtype"] == "A"}
    assert answered["payload.doh.example"] == [ANSWER] and answered["json.doh.example"] == [ANSWER]
    assert all(r["linked"] for r in rows)
    versions = {r["query"]: r["http_version"] for r in rows if r["http_version"]}
    assert versions["get-h1.doh.example"] == "HTTP/1.1" and versions["get-h2c.doh.example"] == "HTTP/2"

    # the key log given only later (ingest's 'rekeyed' run): the lookups inside TLS, which are not tied
    # to an exchange of their own, are added then, once; the plaintext ones stay as the first run stored them
    later = tmp_path / "later"
    assert run_cli("ingest", "--store", str(later), str(cap.path)).returncode == 0
    p = run_cli("ingest", "--store", str(later), "--keylog", str(keylog), str(cap.path))
    assert p.returncode == 0 and "already ingested" in p.stdout, p.stderr
    all_doh = ("SELECT flow_uid, query, qtype, is_response, rcode, answers FROM dns WHERE source = 'doh' "
               "ORDER BY ALL")
    q1, q2 = (run_cli("sql", "--store", str(s), "--format", "json", all_doh) for s in (store_dir, later))
    assert q1.returncode == 0 and q2.returncode == 0, (q1.stderr, q2.stderr)
    assert json.loads(q2.stdout) == json.loads(q1.stdout) and len(json.loads(q1.stdout)) == len(rows)
    # a key log with a line more (a new digest): nothing decrypts anew, no lookup is stored twice
    more = tmp_path / "more.keys"
    more.write_text(keylog.read_text() + "CLIENT_RANDOM " + "00" * 32 + " " + "11" * 48 + "\n")
    p = run_cli("ingest", "--store", str(later), "--keylog", str(more), str(cap.path))
    assert p.returncode == 0 and "0 more TLS connections decrypted" in p.stdout, p.stdout
    q3 = run_cli("sql", "--store", str(later), "--format", "json", all_doh)
    assert json.loads(q3.stdout) == json.loads(q1.stdout)
