"""The intercepting proxy against a real loopback TLS router: interception, strict upstream
verification, failure policy, WebSocket summaries, and the CA's file modes."""

from __future__ import annotations

import http.client
import json
import socket
import ssl
import stat
import threading
import time
from pathlib import Path

import pytest

from collector.proxy.ca import CertificateAuthority
from collector.proxy.server import InterceptingProxy, ProxySink, upstream_context
from collector.proxy.tap import websocket_as_http


class Recorder(ProxySink):
    def __init__(self) -> None:
        self.exchanges: list = []
        self.closed: list = []
        self.events: list[tuple[str, str]] = []
        self.done = threading.Event()

    def exchange(self, conn, ex) -> None:  # noqa: ANN001
        self.exchanges.append((conn, ex))

    def connection_closed(self, conn) -> None:  # noqa: ANN001
        self.closed.append(conn)
        self.done.set()

    def event(self, conn, kind: str, detail: str) -> None:  # noqa: ANN001
        self.events.append((kind, detail))


def wait_for(pred, timeout: float = 5.0) -> None:  # noqa: ANN001
    end = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > end:
            raise AssertionError("timed out waiting")
        time.sleep(0.02)


@pytest.fixture
def proxy_ca(tmp_path: Path) -> CertificateAuthority:
    return CertificateAuthority(tmp_path / "proxy-ca")


def _through(proxy: InterceptingProxy, ca: CertificateAuthority, port: int) -> http.client.HTTPSConnection:
    c = http.client.HTTPSConnection("127.0.0.1", proxy.port, context=ssl.create_default_context(cafile=str(ca.cert_path)),
                                    timeout=10)
    c.set_tunnel("127.0.0.1", port)
    return c


def test_ca_created_once_with_private_key_0600(tmp_path: Path) -> None:
    ca = CertificateAuthority(tmp_path / "ca")
    assert stat.S_IMODE(ca.key_path.stat().st_mode) == 0o600
    assert stat.S_IMODE(ca.directory.stat().st_mode) == 0o700
    again = CertificateAuthority(tmp_path / "ca")
    assert again.cert_pem == ca.cert_pem  # generated once, then reused
    # leaf contexts are cached per host and verify against the CA
    assert ca.server_context("api.example") is ca.server_context("API.example")


def test_intercepts_keepalive_json_gzip_and_sse(router, router_ca, proxy_ca) -> None:  # noqa: ANN001
    rec = Recorder()
    proxy = InterceptingProxy(proxy_ca, rec, upstream_ssl=upstream_context([router_ca.cert_path])).start()
    try:
        c = _through(proxy, proxy_ca, router.port)
        bodies = []
        for path in ("/v1/chat/completions", "/v1/messages", "/v1/chat/completions"):
            c.request("POST", path, body=json.dumps({"model": "gpt-4o"}),
                      headers={"content-type": "application/json", "accept-encoding": "gzip"})
            r = c.getresponse()
            bodies.append(r.read())
            assert r.status == 200
        c.close()
        wait_for(lambda: rec.closed)
    finally:
        proxy.stop()
    assert [ex.request.path for _, ex in rec.exchanges] == ["/v1/chat/completions", "/v1/messages", "/v1/chat/completions"]
    chat = rec.exchanges[0][1]
    assert json.loads(chat.request.body) == {"model": "gpt-4o"}
    # the agent received the gzip body unchanged; the tap decoded it
    assert bodies[0] != chat.response.body and json.loads(chat.response.body)["choices"][0]["message"]["tool_calls"]
    sse = rec.exchanges[1][1]
    assert len(sse.response.chunks) == 6 and b"input_json_delta" in sse.response.body
    assert sse.response.ts_end >= sse.response.ts >= sse.request.ts
    conn = rec.closed[0]
    assert conn.tls_version == "TLSv1.3" and conn.upstream_peer.port == router.port
    assert conn.exchanges == 3 and conn.bytes_out > 0 and conn.bytes_in > sum(len(b) for b in bodies)


def test_upstream_is_verified_strictly(router, proxy_ca) -> None:  # noqa: ANN001
    """The router's CA is not trusted by the proxy: the agent gets 502, never the router."""
    rec = Recorder()
    proxy = InterceptingProxy(proxy_ca, rec, fail_open=True).start()  # fail-open does not weaken this
    try:
        c = _through(proxy, proxy_ca, router.port)
        with pytest.raises(OSError, match="502"):
            c.request("GET", "/")
        wait_for(lambda: rec.events)
    finally:
        proxy.stop()
    kind, detail = rec.events[0]
    assert kind == "upstream-failed" and "certificate verify failed" in detail
    assert not rec.exchanges


def test_fail_closed_and_fail_open_when_the_agent_rejects_our_ca(router, router_ca, proxy_ca) -> None:  # noqa: ANN001
    """An agent that does not trust the proxy CA (pinning): closed keeps failing; open tunnels the
    host untouched from then on."""
    untrusting = ssl.create_default_context(cafile=str(router_ca.cert_path))  # trusts the router only

    def attempt(proxy: InterceptingProxy) -> int | str:
        c = http.client.HTTPSConnection("127.0.0.1", proxy.port, context=untrusting, timeout=10)
        c.set_tunnel("127.0.0.1", router.port)
        try:
            c.request("GET", "/")
            return c.getresponse().status
        except ssl.SSLError as exc:
            return type(exc).__name__
        finally:
            c.close()

    for fail_open in (False, True):
        rec = Recorder()
        proxy = InterceptingProxy(proxy_ca, rec, upstream_ssl=upstream_context([router_ca.cert_path]),
                                  fail_open=fail_open).start()
        try:
            first, second = attempt(proxy), attempt(proxy)
            wait_for(lambda: len(rec.closed) >= 2)  # noqa: B023
        finally:
            proxy.stop()
        kinds = [k for k, _ in rec.events]
        assert first == "SSLCertVerificationError" and "client-tls-failed" in kinds
        if fail_open:
            assert second == 200 and "passthrough" in kinds
            assert rec.closed[-1].scheme == "tunnel" and not rec.exchanges
        else:
            assert second == "SSLCertVerificationError"


def test_fail_closed_refuses_when_the_sink_is_unhealthy(router, router_ca, proxy_ca) -> None:  # noqa: ANN001
    rec = Recorder()
    rec.healthy = False
    proxy = InterceptingProxy(proxy_ca, rec, upstream_ssl=upstream_context([router_ca.cert_path])).start()
    try:
        with pytest.raises(OSError, match="503"):
            _through(proxy, proxy_ca, router.port).request("GET", "/")
    finally:
        proxy.stop()


def test_plain_http_absolute_form(proxy_ca) -> None:  # noqa: ANN001
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class H(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *a: object) -> None:
            pass

        def do_GET(self) -> None:  # noqa: N802
            body = f"path={self.path} conn={self.headers.get('connection')}".encode()
            self.send_response(200)
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    srv = ThreadingHTTPServer(("127.0.0.1", 0), H)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    rec = Recorder()
    proxy = InterceptingProxy(proxy_ca, rec).start()
    try:
        c = http.client.HTTPConnection("127.0.0.1", proxy.port, timeout=10)
        c.request("GET", f"http://127.0.0.1:{srv.server_address[1]}/v1/models?x=1")
        r = c.getresponse()
        assert r.read() == b"path=/v1/models?x=1 conn=close"
        c.close()
        wait_for(lambda: rec.exchanges)
    finally:
        proxy.stop()
        srv.shutdown()
    assert rec.exchanges[0][1].request.path == "/v1/models?x=1"


def test_websocket_permessage_deflate_is_summarised(proxy_ca, tmp_path: Path) -> None:  # noqa: ANN001
    """Codex can speak the Responses API over wss:// with permessage-deflate."""
    from websockets.sync.client import connect
    from websockets.sync.server import serve

    server_ca = CertificateAuthority(tmp_path / "ws-ca")

    def handler(ws) -> None:  # noqa: ANN001
        msg = json.loads(ws.recv())
        assert msg["type"] == "response.create"
        for ev in ({"type": "response.created", "response": {"id": "r1", "model": msg["model"]}},
                   {"type": "response.output_item.done", "item": {"type": "function_call", "name": "shell",
                                                                 "call_id": "c1", "arguments": "{\"command\": [\"ls\"]}"}},
                   {"type": "response.completed", "response": {"id": "r1", "model": msg["model"], "output": [],
                                                               "usage": {"input_tokens": 3, "output_tokens": 4}}}):
            ws.send(json.dumps(ev) + " " * 200)  # compressible
        ws.close()

    server = serve(handler, "127.0.0.1", 0, ssl=server_ca.server_context("127.0.0.1"))
    port = server.socket.getsockname()[1]
    threading.Thread(target=server.serve_forever, daemon=True).start()
    rec = Recorder()
    proxy = InterceptingProxy(proxy_ca, rec, upstream_ssl=upstream_context([server_ca.cert_path])).start()
    try:
        sock = socket.create_connection(("127.0.0.1", proxy.port))
        sock.sendall(f"CONNECT 127.0.0.1:{port} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode())
        assert sock.recv(1024).startswith(b"HTTP/1.1 200")
        ctx = ssl.create_default_context(cafile=str(proxy_ca.cert_path))
        with connect(f"wss://127.0.0.1:{port}/v1/responses", sock=sock, ssl=ctx, server_hostname="127.0.0.1") as ws:
            ws.send(json.dumps({"type": "response.create", "model": "gpt-5-codex", "input": "hi"}))
            got = []
            try:
                while True:
                    got.append(ws.recv(timeout=5))
            except Exception:
                pass
        assert len(got) == 3
        wait_for(lambda: rec.exchanges)
    finally:
        proxy.stop()
        server.shutdown()
    ex = rec.exchanges[0][1]
    assert ex.response.status == 101 and ex.websocket is not None
    ws = ex.websocket
    assert "permessage-deflate" in ws.extensions and ws.error is None
    assert (ws.messages_out, ws.messages_in) == (1, 3)
    req, resp = websocket_as_http(ex)
    assert json.loads(req.body)["model"] == "gpt-5-codex" and req.path == "/v1/responses"
    assert resp.body.count(b"data: ") == 3 and b"function_call" in resp.body


def test_proxy_adds_no_bytes(router, router_ca, proxy_ca) -> None:  # noqa: ANN001
    """A 1 MB body arrives byte-identical and the tap keeps it whole."""
    rec = Recorder()
    proxy = InterceptingProxy(proxy_ca, rec, upstream_ssl=upstream_context([router_ca.cert_path])).start()
    try:
        c = _through(proxy, proxy_ca, router.port)
        c.request("GET", "/big")
        assert c.getresponse().read() == b"x" * 1_000_000
        c.close()
        wait_for(lambda: rec.exchanges)
    finally:
        proxy.stop()
    assert rec.exchanges[0][1].response.body == b"x" * 1_000_000


def test_chains_to_the_agents_own_upstream_proxy(router, router_ca, proxy_ca) -> None:  # noqa: ANN001
    """An agent that already used a proxy (corporate egress) keeps using it: the intercepting proxy
    CONNECTs through it, still verifying the router's certificate end to end."""
    import asyncio

    seen: list[bytes] = []
    ready = threading.Event()
    port: list[int] = []

    async def handle(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        head = await r.readuntil(b"\r\n\r\n")
        seen.append(head.split(b"\r\n", 1)[0])
        host, _, p = head.split()[1].decode().rpartition(":")
        ur, uw = await asyncio.open_connection(host, int(p))
        w.write(b"HTTP/1.1 200 OK\r\n\r\n")

        async def pipe(a: asyncio.StreamReader, b: asyncio.StreamWriter) -> None:
            while data := await a.read(65536):
                b.write(data)
                await b.drain()
            b.close()

        await asyncio.gather(pipe(r, uw), pipe(ur, w), return_exceptions=True)

    def run() -> None:
        loop = asyncio.new_event_loop()
        srv = loop.run_until_complete(asyncio.start_server(handle, "127.0.0.1", 0))
        port.append(srv.sockets[0].getsockname()[1])
        ready.set()
        loop.run_forever()

    threading.Thread(target=run, daemon=True).start()
    ready.wait(10)
    rec = Recorder()
    proxy = InterceptingProxy(proxy_ca, rec, upstream_ssl=upstream_context([router_ca.cert_path]),
                              upstream_proxy=f"http://127.0.0.1:{port[0]}").start()
    try:
        c = _through(proxy, proxy_ca, router.port)
        c.request("POST", "/v1/chat/completions", body="{}", headers={"content-type": "application/json"})
        assert c.getresponse().status == 200
        c.close()
        wait_for(lambda: rec.exchanges)
    finally:
        proxy.stop()
    assert seen == [f"CONNECT 127.0.0.1:{router.port} HTTP/1.1".encode()]


def test_ipv6_loopback_router(router_ca, proxy_ca) -> None:  # noqa: ANN001
    """An agent configured for https://[::1]:PORT: CONNECT [::1]:PORT, a leaf with an IP SAN, flows in IPv6."""
    from tests.collector.proxy.tls_router import Router

    try:
        r6 = Router(router_ca, host="::1")
    except OSError as exc:
        pytest.skip(f"no IPv6 loopback here: {exc}")
    rec = Recorder()
    proxy = InterceptingProxy(proxy_ca, rec, upstream_ssl=upstream_context([router_ca.cert_path])).start()
    try:
        c = http.client.HTTPSConnection("127.0.0.1", proxy.port, timeout=10,
                                        context=ssl.create_default_context(cafile=str(proxy_ca.cert_path)))
        c.set_tunnel("::1", r6.port)
        c.request("GET", "/")
        assert c.getresponse().status == 200
        c.close()
        wait_for(lambda: rec.closed)
    finally:
        proxy.stop()
        r6.stop()
    conn = rec.closed[0]
    assert conn.target_host == "::1" and conn.upstream_peer.ip == "::1" and conn.exchanges == 1
