"""HTTP/2 through the intercepting proxy, against the router zoo (hypercorn, h2 + http/1.1 over
TLS): both legs negotiate the same protocol, concurrent streams and server-sent events are relayed
as they arrive, every stream becomes an exchange whose bodies are byte-exact, and HTTP/1.1-only
agents or routers still get HTTP/1.1 on both legs."""

from __future__ import annotations

import asyncio
import json
import shutil
import ssl
import subprocess
import time
from pathlib import Path

import httpx2
import pytest

from collector.proxy.ca import CertificateAuthority
from collector.proxy.server import InterceptingProxy, upstream_context
from tests.collector.proxy.test_proxy import Recorder, wait_for
from tests.support.fixtures import pki_dir, zoo  # noqa: F401

CHAT = {"model": "gpt-4o", "messages": [{"role": "user", "content": "Summarise the repository layout."}]}
HDRS = {"authorization": "Bearer sk-proxy-h2-test-000000000000000000"}


@pytest.fixture
def proxy_ca(tmp_path: Path) -> CertificateAuthority:
    return CertificateAuthority(tmp_path / "proxy-ca")


def _proxy(router, proxy_ca, rec, **kw) -> InterceptingProxy:  # noqa: ANN001
    return InterceptingProxy(proxy_ca, rec, upstream_ssl=upstream_context([router.ca_path]), **kw).start()


def _client(proxy: InterceptingProxy, ca: CertificateAuthority, http2: bool = True, **kw) -> httpx2.AsyncClient:
    return httpx2.AsyncClient(http2=http2, proxy=proxy.url, verify=ssl.create_default_context(cafile=str(ca.cert_path)),
                              trust_env=False, timeout=30, **kw)


def test_h2_concurrent_streams_json_and_sse(zoo, proxy_ca) -> None:  # noqa: ANN001, F811
    """Eight concurrent requests (half streamed) on one h2 connection through the proxy: each is its
    own exchange, bodies byte-exact in both directions, both legs h2."""
    router = zoo("honest")
    rec = Recorder()
    proxy = _proxy(router, proxy_ca, rec)

    async def run() -> list[tuple[str, bytes, bytes, str]]:
        async with _client(proxy, proxy_ca, limits=httpx2.Limits(max_connections=1)) as c:
            async def one(i: int) -> tuple[str, bytes, bytes, str]:
                body = json.dumps({**CHAT, "stream": i % 2 == 1, "user": f"u{i}"}).encode()
                r = await c.post(f"{router.url}/v1/chat/completions", content=body,
                                 headers={**HDRS, "content-type": "application/json"})
                return r.http_version, body, await r.aread(), r.headers.get("content-type", "")
            return await asyncio.gather(*(one(i) for i in range(8)))

    try:
        got = asyncio.run(run())
        wait_for(lambda: len(rec.exchanges) == 8 and rec.closed, timeout=10)
    finally:
        proxy.stop()
    assert {g[0] for g in got} == {"HTTP/2"}
    conn = rec.closed[0]
    assert len(rec.closed) == 1 and conn.alpn == "h2" and conn.extra["agent_alpn"] == "h2"
    assert conn.exchanges == 8 and not conn.extra.get("upstream_reconnect")
    by_req = {ex.request.body: ex for _, ex in rec.exchanges}
    assert len({ex.request.stream_id for ex in by_req.values()}) == 8
    for _version, sent, received, ctype in got:
        ex = by_req[sent]  # the request body byte-exact
        assert ex.request.http_version == "HTTP/2" and ex.request.method == "POST"
        assert ex.request.path == "/v1/chat/completions" and ex.request.authority == f"127.0.0.1:{router.port}"
        assert ("authorization", HDRS["authorization"]) in ex.request.headers
        assert ex.response.status == 200 and ex.response.body == received  # the response body byte-exact
        if "event-stream" in ctype:
            assert received.count(b"data: ") >= 3 and received.endswith(b"data: [DONE]\n\n")
    assert {e["http_version"] for e in router.log} == {"2"}


def test_h2_sse_is_relayed_as_it_arrives(zoo, proxy_ca) -> None:  # noqa: ANN001, F811
    """A paced event stream: the agent sees the first event long before the last one is sent."""
    router = zoo("honest", stream_delay=0.15)
    rec = Recorder()
    proxy = _proxy(router, proxy_ca, rec)

    async def run() -> tuple[float, float, int]:
        async with _client(proxy, proxy_ca) as c:
            t0 = time.monotonic()
            first = None
            n = 0
            async with c.stream("POST", f"{router.url}/v1/chat/completions", headers=HDRS,
                                json={**CHAT, "stream": True}) as r:
                assert r.http_version == "HTTP/2"
                async for chunk in r.aiter_raw():
                    if chunk and first is None:
                        first = time.monotonic() - t0
                    n += chunk.count(b"data: ")
            return first or 0.0, time.monotonic() - t0, n

    try:
        first, total, events = asyncio.run(run())
        wait_for(lambda: rec.exchanges)
    finally:
        proxy.stop()
    assert events >= 4 and total > 0.15 * (events - 1) * 0.8
    assert first < total - 0.3, (first, total)  # streamed through, not buffered
    ex = rec.exchanges[0][1]
    assert ex.response.chunks[-1].ts - ex.response.chunks[0].ts > 0.3


def test_h1_agent_against_h2_router_and_back(zoo, proxy_ca) -> None:  # noqa: ANN001, F811
    """An HTTP/1.1-only agent to a router that prefers h2 gets http/1.1 on both legs (one extra
    upstream handshake the first time, none once the proxy knows this host's agents speak HTTP/1.1);
    an h2 agent after it gets h2 again."""
    router = zoo("honest")
    rec = Recorder()
    proxy = _proxy(router, proxy_ca, rec)

    async def once(http2: bool) -> str:
        async with _client(proxy, proxy_ca, http2=http2) as c:
            r = await c.post(f"{router.url}/v1/chat/completions", headers=HDRS, json=CHAT)
            assert r.status_code == 200
            return r.http_version

    try:
        versions = [asyncio.run(once(h2)) for h2 in (False, False, True, True)]
        wait_for(lambda: len(rec.closed) == 4 and len(rec.exchanges) == 4)
    finally:
        proxy.stop()
    assert versions == ["HTTP/1.1", "HTTP/1.1", "HTTP/2", "HTTP/2"]
    conns = sorted(rec.closed, key=lambda c: c.ts_start)
    assert [c.alpn for c in conns] == ["http/1.1", "http/1.1", "h2", "h2"]
    assert [bool(c.extra.get("upstream_reconnect")) for c in conns] == [True, False, True, False]
    assert [ex.request.http_version for _, ex in sorted(rec.exchanges, key=lambda x: x[1].request.ts)] == \
        ["HTTP/1.1", "HTTP/1.1", "HTTP/2", "HTTP/2"]
    assert [e["http_version"] for e in router.log] == ["1.1", "1.1", "2", "2"]


def test_h2_agent_against_h1_router(zoo, proxy_ca) -> None:  # noqa: ANN001, F811
    """A router that offers only http/1.1: the agent is offered only http/1.1 too (no translation)."""
    router = zoo("honest", alpn=("http/1.1",))
    rec = Recorder()
    proxy = _proxy(router, proxy_ca, rec)

    async def once() -> str:
        async with _client(proxy, proxy_ca) as c:
            r = await c.post(f"{router.url}/v1/chat/completions", headers=HDRS, json=CHAT)
            return r.http_version

    try:
        assert asyncio.run(once()) == "HTTP/1.1"
        wait_for(lambda: rec.closed and rec.exchanges)
    finally:
        proxy.stop()
    assert rec.closed[0].alpn == "http/1.1" and not rec.closed[0].extra.get("upstream_reconnect")


def test_proxy_without_http2_offers_http1_only(zoo, proxy_ca) -> None:  # noqa: ANN001, F811
    router = zoo("honest")
    rec = Recorder()
    proxy = _proxy(router, proxy_ca, rec, http2=False)

    async def once() -> str:
        async with _client(proxy, proxy_ca) as c:
            return (await c.get(f"{router.url}/v1/models", headers=HDRS)).http_version

    try:
        assert asyncio.run(once()) == "HTTP/1.1"
        wait_for(lambda: rec.closed)
    finally:
        proxy.stop()
    assert rec.closed[0].alpn == "http/1.1"


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed (deploy/deps.sh installs it)")
def test_curl_http2_through_the_proxy(zoo, proxy_ca, tmp_path: Path) -> None:  # noqa: ANN001, F811
    router = zoo("honest")
    rec = Recorder()
    proxy = _proxy(router, proxy_ca, rec)
    body = json.dumps({**CHAT, "stream": True})
    try:
        p = subprocess.run(["curl", "-sS", "--http2", "-x", proxy.url, "--cacert", str(proxy_ca.cert_path),
                            "-H", "content-type: application/json", "-H", f"authorization: {HDRS['authorization']}",
                            "--data-binary", body, "-w", "\n%{http_version}", f"{router.url}/v1/chat/completions"],
                           capture_output=True, timeout=60)
        wait_for(lambda: rec.exchanges)
    finally:
        proxy.stop()
    assert p.returncode == 0, p.stderr
    out, _, version = p.stdout.rpartition(b"\n")
    assert version == b"2"
    ex = rec.exchanges[0][1]
    assert ex.request.body == body.encode() and ex.response.body == out


def test_h2_flow_control_large_bodies(zoo, proxy_ca) -> None:  # noqa: ANN001, F811
    """Request bodies far above HTTP/2's initial 64 KiB windows, on concurrent streams: they only get
    through if WINDOW_UPDATEs pass end to end, and arrive byte-exact."""
    router = zoo("honest")
    rec = Recorder()
    proxy = _proxy(router, proxy_ca, rec)
    bodies = [json.dumps({**CHAT, "messages": [{"role": "user", "content": ch * 600_000}]}).encode() for ch in "ab"]

    async def run() -> list[int]:
        async with _client(proxy, proxy_ca, limits=httpx2.Limits(max_connections=1)) as c:
            async def one(body: bytes) -> int:
                r = await c.post(f"{router.url}/v1/chat/completions", content=body,
                                 headers={**HDRS, "content-type": "application/json"})
                assert r.http_version == "HTTP/2"
                return r.status_code
            return await asyncio.gather(*(one(b) for b in bodies))

    try:
        assert asyncio.run(run()) == [200, 200]
        wait_for(lambda: len(rec.exchanges) == 2, timeout=20)
    finally:
        proxy.stop()
    assert sorted(ex.request.body for _, ex in rec.exchanges) == sorted(bodies)
    assert len({ex.request.stream_id for _, ex in rec.exchanges}) == 2


def test_grpc_client_through_the_proxy(proxy_ca, router_ca) -> None:  # noqa: ANN001
    """A gRPC client (h2-only, the reason the proxy needs HTTP/2) through the proxy (gRPC's
    `grpc.http_proxy` CONNECT) to a TLS gRPC server: the call works and is one exchange, messages
    byte-exact with gRPC's length-prefixed framing."""
    import re
    from concurrent import futures

    grpc = pytest.importorskip("grpc", reason="grpcio is a test extra: `bash deploy/deps.sh --test` installs it")
    pem = router_ca.leaf_pem("127.0.0.1").decode()
    chain = "".join(re.findall(r"-----BEGIN CERTIFICATE-----.*?-----END CERTIFICATE-----\n", pem, re.S))
    key = re.search(r"-----BEGIN [A-Z ]*PRIVATE KEY-----.*?-----END [A-Z ]*PRIVATE KEY-----\n", pem, re.S).group(0)
    server = grpc.server(futures.ThreadPoolExecutor(2))
    server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler("llm.Router", {
        "Complete": grpc.unary_unary_rpc_method_handler(lambda req, ctx: b"answer:" + req)})])
    port = server.add_secure_port("127.0.0.1:0", grpc.ssl_server_credentials([(key.encode(), chain.encode())]))
    server.start()
    rec = Recorder()
    proxy = InterceptingProxy(proxy_ca, rec, upstream_ssl=upstream_context([router_ca.cert_path])).start()
    try:
        with grpc.secure_channel(f"127.0.0.1:{port}", grpc.ssl_channel_credentials(root_certificates=proxy_ca.cert_pem),
                                 options=[("grpc.http_proxy", proxy.url)]) as ch:
            assert ch.unary_unary("/llm.Router/Complete")(b'{"model": "gpt-4o"}', timeout=20) == b'answer:{"model": "gpt-4o"}'
        wait_for(lambda: rec.exchanges, timeout=10)
    finally:
        proxy.stop()
        server.stop(0)
    wait_for(lambda: rec.closed, timeout=10)
    ex = rec.exchanges[0][1]
    assert rec.closed[0].alpn == "h2" and ex.request.http_version == "HTTP/2"
    assert ex.request.path == "/llm.Router/Complete" and ex.request.method == "POST"
    assert ex.request.body == b"\x00\x00\x00\x00\x13" + b'{"model": "gpt-4o"}'
    assert ex.response.status == 200 and ex.response.body == b"\x00\x00\x00\x00\x1a" + b'answer:{"model": "gpt-4o"}'
    assert ("content-type", "application/grpc") in ex.response.headers
