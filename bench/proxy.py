"""Latency the intercepting proxy adds per exchange, and exchanges/s, against a direct connection
to the same loopback TLS router in the same run.

    .venv/bin/python bench/proxy.py [--http2] [--exchanges 2000] [--concurrency 8] [--body 2000]

The router is a minimal asyncio HTTPS server answering every POST with a fixed JSON chat
completion (so its own time is small and the proxy's share shows): HTTP/1.1 read by hand, or with
`--http2` HTTP/2 through the h2 library (the router then offers only h2, the client is httpx2 with
http2=True, as the openai SDK's client; both legs through the proxy are h2). The proxy runs exactly as
`routerwatch wrap --proxy` runs it: the h11 tap on the relay, and every exchange decoded by the
shared LLM pipeline and written to a real store by the sink thread (same process, same GIL).
Three measurements, each direct then through the proxy:
  1. sequential exchanges on one keep-alive connection: per-exchange latency (median, p90, p99);
  2. a new TLS connection per exchange (connection setup through the proxy is two handshakes);
  3. throughput with N concurrent keep-alive clients (threads).
Target: under 5 ms added at the median (1).
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import ssl
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from collector.proxy.ca import CertificateAuthority  # noqa: E402
from collector.proxy.server import InterceptingProxy, upstream_context  # noqa: E402
from collector.proxy.sink import ProcessSink  # noqa: E402
from collector.store import Store  # noqa: E402


def start_router(ca: CertificateAuthority, body_size: int, http2: bool = False) -> tuple[int, asyncio.AbstractEventLoop]:
    body = json.dumps({
        "id": "chatcmpl-bench", "object": "chat.completion", "model": "gpt-4o",
        "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant",
                                                      "content": ("The module parses the input. " * 99)[:body_size]}}],
        "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}}).encode()
    head = (b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: " + str(len(body)).encode()
            + b"\r\n\r\n")

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                hdr = await reader.readuntil(b"\r\n\r\n")
                n = 0
                for line in hdr.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        n = int(line.split(b":")[1])
                if n:
                    await reader.readexactly(n)
                writer.write(head + body)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    async def handle_h2(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        import h2.config
        import h2.connection
        import h2.events
        import h2.exceptions

        conn = h2.connection.H2Connection(config=h2.config.H2Configuration(client_side=False))
        conn.initiate_connection()
        writer.write(conn.data_to_send())
        hdrs = [(":status", "200"), ("content-type", "application/json"), ("content-length", str(len(body)))]
        try:
            while data := await reader.read(65536):
                for ev in conn.receive_data(data):
                    if isinstance(ev, h2.events.DataReceived):
                        conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
                    elif isinstance(ev, h2.events.StreamEnded):
                        conn.send_headers(ev.stream_id, hdrs)
                        step = conn.max_outbound_frame_size
                        for i in range(0, len(body), step):  # fits the initial 64 KiB window at bench sizes
                            conn.send_data(ev.stream_id, body[i:i + step], end_stream=i + step >= len(body))
                writer.write(conn.data_to_send())
                await writer.drain()
        except (ConnectionError, h2.exceptions.ProtocolError):
            pass
        finally:
            writer.close()

    loop = asyncio.new_event_loop()
    ready = threading.Event()
    port: list[int] = []

    def run() -> None:
        asyncio.set_event_loop(loop)
        ctx = ca.server_context("127.0.0.1", alpn=("h2",) if http2 else ("http/1.1",))
        srv = loop.run_until_complete(asyncio.start_server(handle_h2 if http2 else handle, "127.0.0.1", 0, ssl=ctx,
                                                           backlog=512))
        port.append(srv.sockets[0].getsockname()[1])
        ready.set()
        loop.run_forever()

    threading.Thread(target=run, daemon=True).start()
    ready.wait(10)
    return port[0], loop


REQ = json.dumps({"model": "gpt-4o", "messages": [
    {"role": "system", "content": "You are a coding agent. Use the tools to inspect the repository."},
    {"role": "user", "content": "List the Python files under src/ and summarise what each module does; "
                                "then propose a refactoring plan for the largest one."}]})
HDRS = {"content-type": "application/json", "authorization": "Bearer sk-bench-not-a-real-key-000000000000"}


class H2Client:
    """One httpx2 HTTP/2 client (one connection), directly or through the proxy."""

    def __init__(self, port: int, ctx: ssl.SSLContext, proxy_port: int | None):
        import httpx2

        self.url = f"https://127.0.0.1:{port}/v1/chat/completions"
        self.c = httpx2.Client(http1=False, http2=True, verify=ctx, trust_env=False, timeout=30,
                               proxy=f"http://127.0.0.1:{proxy_port}" if proxy_port else None)

    def post(self) -> None:
        r = self.c.post(self.url, content=REQ, headers=HDRS)
        assert r.status_code == 200 and r.http_version == "HTTP/2", (r.status_code, r.http_version)

    def close(self) -> None:
        self.c.close()


HTTP2 = False  # set by main(): which client connect() makes


def connect(port: int, ctx: ssl.SSLContext, proxy_port: int | None):  # noqa: ANN201
    if HTTP2:
        return H2Client(port, ctx, proxy_port)
    if proxy_port is None:
        return http.client.HTTPSConnection("127.0.0.1", port, context=ctx, timeout=30)
    c = http.client.HTTPSConnection("127.0.0.1", proxy_port, context=ctx, timeout=30)
    c.set_tunnel("127.0.0.1", port)
    return c


def one(c) -> float:  # noqa: ANN001 - http.client.HTTPSConnection | H2Client
    t = time.perf_counter()
    if isinstance(c, H2Client):
        c.post()
        return time.perf_counter() - t
    c.request("POST", "/v1/chat/completions", body=REQ, headers=HDRS)
    r = c.getresponse()
    r.read()
    assert r.status == 200
    return time.perf_counter() - t


def sequential(port: int, ctx: ssl.SSLContext, proxy_port: int | None, n: int) -> list[float]:
    c = connect(port, ctx, proxy_port)
    for _ in range(20):  # warm-up: handshakes, leaf certificate, caches
        one(c)
    out = [one(c) for _ in range(n)]
    c.close()
    return out


def fresh_connections(port: int, ctx: ssl.SSLContext, proxy_port: int | None, n: int) -> list[float]:
    out = []
    for _ in range(n):
        t = time.perf_counter()
        c = connect(port, ctx, proxy_port)
        one(c)
        c.close()
        out.append(time.perf_counter() - t)
    return out


def throughput(port: int, ctx: ssl.SSLContext, proxy_port: int | None, n: int, conc: int) -> float:
    per = n // conc
    barrier = threading.Barrier(conc + 1)

    def worker() -> None:
        c = connect(port, ctx, proxy_port)
        one(c)
        barrier.wait()
        for _ in range(per):
            one(c)
        c.close()

    threads = [threading.Thread(target=worker) for _ in range(conc)]
    for t in threads:
        t.start()
    barrier.wait()
    t0 = time.perf_counter()
    for t in threads:
        t.join()
    return per * conc / (time.perf_counter() - t0)


def pct(xs: list[float], p: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, int(p * len(s)))] * 1000


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--exchanges", type=int, default=2000)
    ap.add_argument("--connections", type=int, default=200, help="exchanges on fresh connections")
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--body", type=int, default=2000, help="response content characters")
    ap.add_argument("--http2", action="store_true", help="HTTP/2 on both legs (router and client speak only h2)")
    a = ap.parse_args()
    global HTTP2
    HTTP2 = a.http2

    tmp = Path(tempfile.mkdtemp(prefix="rw-bench-proxy-"))
    router_ca = CertificateAuthority(tmp / "router-ca")
    port, _ = start_router(router_ca, a.body, a.http2)
    proxy_ca = CertificateAuthority(tmp / "proxy-ca")
    sink = ProcessSink(str(tmp / "store"), "bench")
    proxy = InterceptingProxy(proxy_ca, sink, upstream_ssl=upstream_context([router_ca.cert_path])).start()
    direct_ctx = ssl.create_default_context(cafile=str(router_ca.cert_path))
    proxy_ctx = ssl.create_default_context(cafile=str(proxy_ca.cert_path))

    print(f"bench/proxy.py ({'HTTP/2' if a.http2 else 'HTTP/1.1'}): {a.exchanges} sequential exchanges, {a.connections} fresh connections, "
          f"{a.concurrency} concurrent clients; response ~{a.body} chars")
    rows = []
    d = sequential(port, direct_ctx, None, a.exchanges)
    p = sequential(port, proxy_ctx, proxy.port, a.exchanges)
    rows.append(("keep-alive exchange", d, p))
    d2 = fresh_connections(port, direct_ctx, None, a.connections)
    p2 = fresh_connections(port, proxy_ctx, proxy.port, a.connections)
    rows.append(("new connection + exchange", d2, p2))
    print(f"{'latency (ms)':<28}{'direct p50':>11}{'proxy p50':>11}{'added p50':>11}{'direct p90':>11}"
          f"{'proxy p90':>11}{'proxy p99':>11}")
    for name, dd, pp in rows:
        print(f"{name:<28}{pct(dd, .5):>11.3f}{pct(pp, .5):>11.3f}{pct(pp, .5) - pct(dd, .5):>11.3f}"
              f"{pct(dd, .9):>11.3f}{pct(pp, .9):>11.3f}{pct(pp, .99):>11.3f}")
    n_tp = max(a.exchanges, a.concurrency * 50)
    tp_d = throughput(port, direct_ctx, None, n_tp, a.concurrency)
    tp_p = throughput(port, proxy_ctx, proxy.port, n_tp, a.concurrency)
    print(f"throughput ({a.concurrency} clients): direct {tp_d:,.0f} exchanges/s, proxy {tp_p:,.0f} exchanges/s "
          f"(ratio {tp_p / tp_d:.2f})")
    time.sleep(0.5)
    print(f"connections still open in the proxy after the clients closed theirs: {proxy.active}")
    proxy.stop()
    t_drain = time.perf_counter()
    sink.close()
    t_drain = time.perf_counter() - t_drain
    store = Store.open(str(tmp / "store"), read_only=True)
    n_http = store.sql("SELECT count(*) FROM http").fetchone()[0]
    n_llm = store.sql("SELECT count(*) FROM llm_exchanges").fetchone()[0]
    store.close()
    expected = a.exchanges + 20 + a.connections + n_tp // a.concurrency * a.concurrency + a.concurrency
    print(f"recorded: {n_http} http rows, {n_llm} llm_exchanges (expected {expected}); dropped {sink.dropped}; "
          f"the recording process finished {t_drain:.1f} s after the proxy stopped")
    added = pct(p, .5) - pct(d, .5)
    print(f"RESULT added median latency per exchange: {added:.3f} ms (target < 5 ms): {'PASS' if added < 5 else 'FAIL'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
