"""Latency the intercepting proxy adds per exchange, and exchanges/s, against a direct connection
to the same loopback TLS router in the same run.

    .venv/bin/python bench/proxy.py [--http2] [--exchanges 2000] [--concurrency 8] [--body 2000]

The router is a minimal asyncio HTTPS server answering every POST with a fixed JSON chat
completion (so its own time is small and the proxy's share shows): HTTP/1.1 read by hand, or with
`--http2` HTTP/2 through the h2 library (the router then offers only h2, the client is httpx2 with
http2=True, as the openai SDK's client; both legs through the proxy are h2). The proxy runs exactly as
`routerwatch wrap --proxy` runs it: the tap (collector.protocols parsers) on the relay, and every exchange decoded by the
shared LLM pipeline and written to a real store by the sink thread (same process, same GIL).
Three measurements, each direct then through the proxy:
  1. sequential exchanges on one keep-alive connection: per-exchange latency (median, p90, p99);
  2. a new TLS connection per exchange (connection setup through the proxy is two handshakes);
  3. throughput with N concurrent keep-alive clients (threads).
Target: under 5 ms added at the median (1).
Then the policy gate (`wrap --proxy --enforce`, builtin policy and catalog) beside the same proxy
without it, exchange by exchange in turn on two keep-alive connections: a JSON answer carrying a
(benign) tool call, judged every time (added latency; target <= 5 ms at p99), a streamed answer (text,
a pause, a tool call: time to the first text token; target within 5 ms of the plain proxy), and the
CPU time per exchange (load-independent; the machine is shared, so the load average is printed).
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import os
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

TOOL_PATH = "/v1/tool/chat/completions"  # a JSON answer with a (benign) tool call: the gate judges every one
STREAM_PATH = "/v1/stream/chat/completions"  # SSE: text deltas, a pause, then a tool call
STREAM_PAUSE = 0.02  # seconds between the text and the tool call: a gate holding text would show it in TTFT


def _chunk(delta: dict, finish: str | None = None) -> bytes:
    return ("data: " + json.dumps({"id": "chatcmpl-bench", "object": "chat.completion.chunk", "model": "gpt-4o",
                                   "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}) + "\n\n").encode()


def stream_events() -> tuple[list[bytes], list[bytes]]:
    """(events before the pause, events after it) of the streamed answer."""
    text = [_chunk({"role": "assistant", "content": ""})] + [_chunk({"content": w}) for w in
                                                            ("The ", "tests ", "pass; ", "listing ", "files.")]
    args = json.dumps({"command": "ls -la src/"})
    call = [_chunk({"tool_calls": [{"index": 0, "id": "call_1", "type": "function",
                                    "function": {"name": "shell", "arguments": ""}}]})]
    call += [_chunk({"tool_calls": [{"index": 0, "function": {"arguments": args[i:i + 8]}}]}) for i in range(0, len(args), 8)]
    return text, [*call, _chunk({}, "tool_calls"), b"data: [DONE]\n\n"]


def start_router(ca: CertificateAuthority, body_size: int, http2: bool = False) -> tuple[int, asyncio.AbstractEventLoop]:
    served = [0]

    def tool_body() -> bytes:
        """A different command every time, so the screening's cache never answers for the judge."""
        served[0] += 1
        return json.dumps({
            "id": "chatcmpl-bench", "object": "chat.completion", "model": "gpt-4o",
            "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {
                "role": "assistant", "content": ("I will look at the sources first. " * 40)[:body_size // 2],
                "tool_calls": [{"id": "call_1", "type": "function", "function": {"name": "shell", "arguments": json.dumps(
                    {"command": f"ls -la src/pkg{served[0]}/ && git status --short && grep -rn TODO src/pkg{served[0]}"})}}]}}],
            "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}}).encode()

    def tool_answer() -> bytes:
        b = tool_body()
        return b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: " + str(len(b)).encode() + b"\r\n\r\n" + b
    first, rest = stream_events()
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
                path = hdr.split(b" ", 2)[1].decode()
                if path == TOOL_PATH:
                    writer.write(tool_answer())
                elif path == STREAM_PATH:
                    writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n")
                    for i, ev in enumerate([*first, None, *rest]):
                        if ev is None:
                            await writer.drain()
                            await asyncio.sleep(STREAM_PAUSE)
                            continue
                        writer.write(f"{len(ev):x}\r\n".encode() + ev + b"\r\n")
                        if i < len(first):
                            await writer.drain()
                    writer.write(b"0\r\n\r\n")
                else:
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
        paths: dict[int, str] = {}

        def send_json(sid: int, data: bytes) -> None:
            conn.send_headers(sid, [(":status", "200"), ("content-type", "application/json"),
                                    ("content-length", str(len(data)))])
            step = conn.max_outbound_frame_size
            for i in range(0, len(data), step):  # fits the initial 64 KiB window at bench sizes
                conn.send_data(sid, data[i:i + step], end_stream=i + step >= len(data))

        async def send_stream(sid: int) -> None:
            conn.send_headers(sid, [(":status", "200"), ("content-type", "text/event-stream")])
            for ev in first:
                conn.send_data(sid, ev)
            writer.write(conn.data_to_send())
            await writer.drain()
            await asyncio.sleep(STREAM_PAUSE)
            for i, ev in enumerate(rest):
                conn.send_data(sid, ev, end_stream=i == len(rest) - 1)
            writer.write(conn.data_to_send())
            await writer.drain()

        try:
            while data := await reader.read(65536):
                for ev in conn.receive_data(data):
                    if isinstance(ev, h2.events.RequestReceived):
                        paths[ev.stream_id] = dict(ev.headers).get(b":path", b"").decode()
                    elif isinstance(ev, h2.events.DataReceived):
                        conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
                    elif isinstance(ev, h2.events.StreamEnded):
                        path = paths.pop(ev.stream_id, "")
                        if path == STREAM_PATH:
                            asyncio.ensure_future(send_stream(ev.stream_id))
                        else:
                            send_json(ev.stream_id, tool_body() if path == TOOL_PATH else body)
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


def post(c, path: str) -> float:  # noqa: ANN001
    """One exchange on `path`; its latency (s)."""
    t = time.perf_counter()
    if isinstance(c, H2Client):
        r = c.c.post(c.url.replace("/v1/chat/completions", path), content=REQ, headers=HDRS)
        assert r.status_code == 200
        return time.perf_counter() - t
    c.request("POST", path, body=REQ, headers=HDRS)
    r = c.getresponse()
    data = r.read()
    assert r.status == 200 and data
    return time.perf_counter() - t


def first_token(c) -> tuple[float, float]:  # noqa: ANN001
    """A streamed answer: (time to the first text delta, time to the end of the stream), in s."""
    t = time.perf_counter()
    first = None
    if isinstance(c, H2Client):
        with c.c.stream("POST", c.url.replace("/v1/chat/completions", STREAM_PATH), content=REQ, headers=HDRS) as r:
            for line in r.iter_lines():
                if first is None and '"content": "The ' in line:
                    first = time.perf_counter() - t
        return first or 0.0, time.perf_counter() - t
    c.request("POST", STREAM_PATH, body=REQ, headers=HDRS)
    r = c.getresponse()
    while line := r.readline():
        if first is None and b'"content": "The ' in line:
            first = time.perf_counter() - t
    return first or 0.0, time.perf_counter() - t


def gate_rows(port: int, plain: tuple[ssl.SSLContext, int], gated: tuple[ssl.SSLContext, int], n: int,
              n_stream: int) -> dict[str, tuple[list[float], list[float]]]:
    """The same exchanges through the proxy without and with the gate, alternating one by one (so the
    shared machine's load hits both alike)."""
    cp, cg = connect(port, plain[0], plain[1]), connect(port, gated[0], gated[1])
    for _ in range(20):
        post(cp, TOOL_PATH)
        post(cg, TOOL_PATH)
    out: dict[str, tuple[list[float], list[float]]] = {"tool": ([], []), "ttft": ([], []), "stream": ([], []),
                                                        "cpu": ([], [])}
    for _ in range(n):
        for i, c in enumerate((cp, cg)):
            cpu = time.process_time()  # client + proxy (same process): the client's share is the same for both
            out["tool"][i].append(post(c, TOOL_PATH))
            out["cpu"][i].append(time.process_time() - cpu)
    for _ in range(n_stream):
        for i, c in enumerate((cp, cg)):
            f, total = first_token(c)
            out["ttft"][i].append(f)
            out["stream"][i].append(total)
    cp.close()
    cg.close()
    return out


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
    ap.add_argument("--streams", type=int, default=200, help="streamed answers for the gate's time to first token")
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

    # -- the policy gate (wrap --proxy --enforce) beside the same proxy without it ---------------------
    from collector.catalog import load_catalog
    from collector.policy.policy import Policy
    from collector.proxy.gate.relay import build_gate

    load0, cpu0 = os.getloadavg(), time.process_time()
    gate_sink = ProcessSink(str(tmp / "gate-store"), "bench")
    gate_ca = CertificateAuthority(tmp / "gate-ca")
    gated = InterceptingProxy(gate_ca, gate_sink, upstream_ssl=upstream_context([router_ca.cert_path]),
                              gate=build_gate(Policy(), catalog=load_catalog())).start()
    g = gate_rows(port, (proxy_ctx, proxy.port), (ssl.create_default_context(cafile=str(gate_ca.cert_path)), gated.port),
                  a.exchanges, a.streams)
    load1 = os.getloadavg()
    print(f"policy gate: {a.exchanges} JSON answers with a tool call and {a.streams} streamed answers (text, "
          f"{STREAM_PAUSE * 1000:.0f} ms pause, tool call), alternating proxy / proxy + gate; load average "
          f"{load0[0]:.1f} before, {load1[0]:.1f} after; {time.process_time() - cpu0:.1f} s CPU in this process")
    print(f"{'latency (ms)':<28}{'proxy p50':>11}{'gate p50':>11}{'added p50':>11}{'proxy p99':>11}{'gate p99':>11}"
          f"{'added p99':>11}")
    for name, key in (("tool-call exchange", "tool"), ("first text token", "ttft"), ("whole stream", "stream"),
                      ("CPU per exchange", "cpu")):
        pp, gg = g[key]
        print(f"{name:<28}{pct(pp, .5):>11.3f}{pct(gg, .5):>11.3f}{pct(gg, .5) - pct(pp, .5):>11.3f}"
              f"{pct(pp, .99):>11.3f}{pct(gg, .99):>11.3f}{pct(gg, .99) - pct(pp, .99):>11.3f}")
    gated.stop()
    gate_sink.close()
    gs = Store.open(str(tmp / "gate-store"), read_only=True)
    decided = gs.sql("SELECT action, count(*), quantile_cont(held_ms, 0.5), quantile_cont(held_ms, 0.99) "
                     "FROM gate_decisions GROUP BY 1").fetchall()
    gs.close()
    print("gate decisions recorded: " + ", ".join(f"{act} {n:,} (held p50 {h50:.2f} ms, p99 {h99:.2f} ms)"
                                                 for act, n, h50, h99 in decided))
    added99 = pct(g["tool"][1], .99) - pct(g["tool"][0], .99)
    ttft50 = pct(g["ttft"][1], .5) - pct(g["ttft"][0], .5)
    cpu_add = (sum(g["cpu"][1]) - sum(g["cpu"][0])) / len(g["cpu"][0]) * 1000
    print(f"gate CPU per exchange (process time, proxy and client in this process): +{cpu_add:.3f} ms")
    print(f"RESULT gate added p99 latency per exchange: {added99:.3f} ms (target <= 5 ms): {'PASS' if added99 <= 5 else 'FAIL'}")
    print(f"RESULT gate added median time to first text token: {ttft50:.3f} ms (target <= 5 ms): "
          f"{'PASS' if ttft50 <= 5 else 'FAIL'}")
    proxy.stop()
    t_drain = time.perf_counter()
    sink.close()
    t_drain = time.perf_counter() - t_drain
    store = Store.open(str(tmp / "store"), read_only=True)
    n_http = store.sql("SELECT count(*) FROM http").fetchone()[0]
    n_llm = store.sql("SELECT count(*) FROM llm_exchanges").fetchone()[0]
    store.close()
    expected = (a.exchanges + 20 + a.connections + n_tp // a.concurrency * a.concurrency + a.concurrency
                + a.exchanges + 20 + a.streams)  # the gate section's exchanges through the plain proxy
    print(f"recorded: {n_http} http rows, {n_llm} llm_exchanges (expected {expected}); dropped {sink.dropped}; "
          f"the recording process finished {t_drain:.1f} s after the proxy stopped")
    added = pct(p, .5) - pct(d, .5)
    print(f"RESULT added median latency per exchange: {added:.3f} ms (target < 5 ms): {'PASS' if added < 5 else 'FAIL'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
