"""Benchmark: decrypt + decode 10k LLM exchanges from a loopback capture, against tshark's own
decrypt-only pass over the same capture.

    .venv/bin/python bench/decode.py [--exchanges 10000] [--keep DIR]

For HTTP/1.1 and for HTTP/2 it (1) runs a TLS 1.3 server and a fast client on loopback that write a
key log, captured with tcpdump: chat-completions requests with an Authorization key, answered half
by an SSE stream with a tool call and half by JSON; (2) times `tshark` with exactly the decrypt-only
arguments routerwatch's fallback uses (output discarded) and the native decryptor alone; (3) times
`decode_capture` (native decryption + streams + HTTP + SSE + LLM + secrets + rows; a capture this big
is split by connection between the process and a forked child). Targets: >= 1,500 exchanges/s and
total <= 1.5x tshark's decrypt-only time. `--repeat N` runs the three passes N times in turn (one line
each, with the load average before it): on a shared machine CPU seconds are the steadier figure.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import h2.config
import h2.connection
import h2.events

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from analyzer.demo.pki import ensure_pki  # noqa: E402
from collector.protocols.http1 import Http1Parser  # noqa: E402
from collector.tls.native_decrypt import NativeDecrypt  # noqa: E402
from collector.tls.pipeline import decode_capture  # noqa: E402
from collector.tls.tshark_decrypt import tshark_args  # noqa: E402

PER_CONN = {"h1": 5, "h2": 20}  # exchanges per TLS connection (agents keep connections alive)
AUTH = "Bearer sk-R0ut3rIssu3dK3y0123456789abcdefXYZ"


def _request_body(i: int) -> bytes:
    return json.dumps({"model": "gpt-4o-mini", "stream": i % 2 == 0, "messages": [
        {"role": "system", "content": "You are a coding agent. Use the run_shell tool."},
        {"role": "user", "content": f"Task {i}: list the files in the working directory, then Prüfe die Daten ✓"}],
        "tools": [{"type": "function", "function": {"name": "run_shell", "parameters": {"type": "object"}}}]}).encode()


def _response(i: int) -> tuple[bytes, str]:
    args = json.dumps({"command": f"ls -la /tmp/{i}", "reason": "Prüfe die Daten — 数据 🚀"}, ensure_ascii=False)
    if i % 2:
        body = {"id": f"c{i}", "object": "chat.completion", "model": "gpt-4o-mini-2024-07-18",
                "usage": {"prompt_tokens": 50, "completion_tokens": 20},
                "choices": [{"index": 0, "message": {"role": "assistant", "tool_calls": [
                    {"id": f"call_{i}", "type": "function", "function": {"name": "run_shell", "arguments": args}}]}}]}
        return json.dumps(body).encode(), "application/json"
    chunks = [{"id": f"c{i}", "object": "chat.completion.chunk", "model": "gpt-4o-mini-2024-07-18", "choices": [
        {"index": 0, "delta": {"tool_calls": [{"index": 0, "id": f"call_{i}", "function": {"name": "run_shell",
                                                                                         "arguments": ""}}]}}]}]
    for k in range(0, len(args), 12):
        chunks.append({"id": f"c{i}", "object": "chat.completion.chunk", "model": "gpt-4o-mini-2024-07-18",
                       "choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0, "function": {
                           "arguments": args[k : k + 12]}}]}}]})
    chunks.append({"id": f"c{i}", "object": "chat.completion.chunk", "model": "gpt-4o-mini-2024-07-18", "choices": [],
                   "usage": {"prompt_tokens": 50, "completion_tokens": 20}})
    sse = b"".join(b"data: " + json.dumps(c).encode() + b"\n\n" for c in chunks) + b"data: [DONE]\n\n"
    return sse, "text/event-stream"


# -- server ----------------------------------------------------------------------------------------
def _serve_h1(conn: ssl.SSLSocket) -> None:
    p = Http1Parser("request")
    n = 0
    while True:
        data = conn.recv(65536)
        if not data:
            return
        for _req in p.feed(data, 0.0):
            body, ctype = _response(n)
            n += 1
            if ctype == "text/event-stream":  # streamed: chunked, one chunk per event group
                out = [f"HTTP/1.1 200 OK\r\ncontent-type: {ctype}\r\ntransfer-encoding: chunked\r\n"
                       "x-litellm-call-id: bench\r\n\r\n".encode()]
                for k in range(0, len(body), 700):
                    piece = body[k : k + 700]
                    out.append(b"%x\r\n" % len(piece) + piece + b"\r\n")
                out.append(b"0\r\n\r\n")
                conn.sendall(b"".join(out))
            else:
                conn.sendall(f"HTTP/1.1 200 OK\r\ncontent-type: {ctype}\r\ncontent-length: {len(body)}\r\n\r\n".encode()
                             + body)


def _serve_h2(conn: ssl.SSLSocket) -> None:
    h = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False))
    h.initiate_connection()
    conn.sendall(h.data_to_send())
    n = 0
    while True:
        data = conn.recv(65536)
        if not data:
            return
        for ev in h.receive_data(data):
            if isinstance(ev, h2.events.StreamEnded):
                body, ctype = _response(n)
                n += 1
                h.send_headers(ev.stream_id, [(":status", "200"), ("content-type", ctype), ("x-litellm-call-id", "b")])
                for k in range(0, len(body), 700):
                    h.send_data(ev.stream_id, body[k : k + 700], end_stream=k + 700 >= len(body))
            elif isinstance(ev, h2.events.DataReceived):
                h.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
        out = h.data_to_send()
        if out:
            conn.sendall(out)


def start_server(pki, proto: str) -> tuple[socket.socket, int]:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(pki.cert, pki.key)
    ctx.set_alpn_protocols(["h2" if proto == "h2" else "http/1.1"])
    lsock = socket.create_server(("127.0.0.1", 0), backlog=256)
    handler = _serve_h2 if proto == "h2" else _serve_h1

    def accept() -> None:
        while True:
            try:
                raw, _ = lsock.accept()
            except OSError:
                return

            def run(raw=raw) -> None:
                try:
                    with ctx.wrap_socket(raw, server_side=True) as c:
                        handler(c)
                except (OSError, ssl.SSLError, h2.exceptions.ProtocolError):
                    pass

            threading.Thread(target=run, daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    return lsock, lsock.getsockname()[1]


# -- client ----------------------------------------------------------------------------------------
def _client_h1(ctx, port: int, start: int, n: int) -> int:
    done = 0
    with socket.create_connection(("127.0.0.1", port)) as raw, ctx.wrap_socket(raw, server_hostname="127.0.0.1") as c:
        p = Http1Parser("response", request_methods=["POST"] * n)
        for i in range(start, start + n):
            body = _request_body(i)
            c.sendall(f"POST /v1/chat/completions HTTP/1.1\r\nhost: 127.0.0.1:{port}\r\nauthorization: {AUTH}\r\n"
                      f"content-type: application/json\r\ncontent-length: {len(body)}\r\n\r\n".encode() + body)
            got = 0
            while not got:
                data = c.recv(65536)
                if not data:
                    return done
                got = len(p.feed(data, 0.0))
            done += got
    return done


def _client_h2(ctx, port: int, start: int, n: int) -> int:
    with socket.create_connection(("127.0.0.1", port)) as raw, ctx.wrap_socket(raw, server_hostname="127.0.0.1") as c:
        h = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
        h.initiate_connection()
        for i in range(start, start + n):
            sid = h.get_next_available_stream_id()
            h.send_headers(sid, [(":method", "POST"), (":path", "/v1/chat/completions"),
                                 (":authority", f"127.0.0.1:{port}"), (":scheme", "https"),
                                 ("authorization", AUTH), ("content-type", "application/json")])
            h.send_data(sid, _request_body(i), end_stream=True)
        c.sendall(h.data_to_send())
        ended = 0
        while ended < n:
            data = c.recv(65536)
            if not data:
                break
            for ev in h.receive_data(data):
                if isinstance(ev, h2.events.StreamEnded):
                    ended += 1
                elif isinstance(ev, h2.events.DataReceived):
                    h.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
            out = h.data_to_send()
            if out:
                c.sendall(out)
        return ended


def generate(workdir: Path, proto: str, exchanges: int) -> tuple[Path, Path]:
    pki = ensure_pki(workdir / "pki")
    lsock, port = start_server(pki, proto)
    keylog = workdir / f"{proto}.keys"
    keylog.unlink(missing_ok=True)
    ctx = ssl.create_default_context(cafile=str(pki.ca))
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.keylog_filename = str(keylog)
    ctx.set_alpn_protocols(["h2" if proto == "h2" else "http/1.1"])
    pcap = workdir / f"{proto}.pcap"
    dump = subprocess.Popen(["tcpdump", "-i", "lo", "-B", "262144", "-U", "--immediate-mode", "-s", "0", "-n", "-Z",
                             "root", "-w", str(pcap), f"tcp port {port}"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    assert dump.stderr is not None
    while "listening on" not in (dump.stderr.readline() or "listening on"):
        pass
    time.sleep(0.3)
    per = PER_CONN[proto]
    client = _client_h2 if proto == "h2" else _client_h1
    jobs = list(range(0, exchanges, per))
    results: list[int] = []
    lock = threading.Lock()

    def worker() -> None:
        while True:
            with lock:
                if not jobs:
                    return
                start = jobs.pop(0)
            got = client(ctx, port, start, min(per, exchanges - start))
            with lock:
                results.append(got)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    size = -1
    while pcap.stat().st_size != size:  # until the last FIN/ACKs are on disk
        size = pcap.stat().st_size
        time.sleep(1.0)
    os.kill(dump.pid, signal.SIGINT)
    err = dump.communicate(timeout=30)[1]
    with contextlib.suppress(OSError):
        lsock.shutdown(socket.SHUT_RDWR)  # wakes the accept thread
    lsock.close()
    # decode_capture splits a big capture with a forked child only in a process without other threads
    deadline = time.monotonic() + 10
    while threading.active_count() > 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    if sum(results) != exchanges:
        raise SystemExit(f"client completed {sum(results)} of {exchanges} exchanges")
    print(f"  generated {exchanges} exchanges over {proto}: {err.strip().splitlines()[-3:]}")
    return pcap, keylog


def _children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def time_tshark(pcap: Path, keylog: Path) -> tuple[float, float]:
    """(wall, cpu) of tshark's decrypt-only pass with routerwatch's exact arguments, output discarded."""
    c = _children_cpu()
    t = time.perf_counter()
    subprocess.run(tshark_args(pcap, keylog), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    return time.perf_counter() - t, _children_cpu() - c


def time_native(pcap: Path, keylog: Path) -> float:
    """Wall time of the native decryptor alone (capture read, TCP reassembly, TLS records -> Segments)."""
    t = time.perf_counter()
    for _ in NativeDecrypt(pcap, keylog):
        pass
    return time.perf_counter() - t


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--exchanges", type=int, default=10_000)
    ap.add_argument("--keep", help="keep captures and key logs in this directory")
    ap.add_argument("--reuse", action="store_true", help="with --keep: reuse captures already there")
    ap.add_argument("--proto", choices=["h1", "h2", "both"], default="both")
    ap.add_argument("--per-conn", type=int, help="exchanges per TLS connection (default: h1 5, h2 20)")
    ap.add_argument("--repeat", type=int, default=1, help="time the passes this many times per capture")
    args = ap.parse_args()
    if args.per_conn:
        PER_CONN.update(h1=args.per_conn, h2=args.per_conn)
    if not shutil.which("tshark") or not shutil.which("tcpdump"):
        raise SystemExit("needs tshark and tcpdump")
    work = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="rw-bench-decode-"))
    work.mkdir(parents=True, exist_ok=True)
    rows = []
    for proto in (["h1", "h2"] if args.proto == "both" else [args.proto]):
        pcap, keylog = work / f"{proto}.pcap", work / f"{proto}.keys"
        if not (args.reuse and pcap.exists() and keylog.exists()):
            pcap, keylog = generate(work, proto, args.exchanges)
        packets = int(subprocess.run(["capinfos", "-c", "-M", str(pcap)], capture_output=True, text=True)
                      .stdout.split()[-1]) if shutil.which("capinfos") else -1
        for _ in range(args.repeat):
            load = os.getloadavg()[0]
            t_tshark, c_tshark = time_tshark(pcap, keylog)
            t_native = time_native(pcap, keylog)
            c_child, c_self = _children_cpu(), time.process_time()
            t = time.perf_counter()
            r = decode_capture(pcap, keylog, host_id="bench", secret_key=b"b" * 32, run_id="bench")
            t_total = time.perf_counter() - t
            c_py, c_ch = time.process_time() - c_self, _children_cpu() - c_child
            s = r.stats
            ok = (s["exchanges"] == args.exchanges and s["llm_exchanges"] == args.exchanges
                  and s["tool_calls"] == args.exchanges and s["capture_gaps"] == 0)
            ok = ok and s["decryptor"] == "native"
            rows.append((proto, packets, s["exchanges"], s["tool_calls"], s["capture_gaps"], t_tshark, t_native,
                         t_total, c_tshark, c_ch, c_py, load, "split" if s["split"] else "worker", ok))
    print(f"{'proto':6} {'packets':>8} {'exch':>6} {'tools':>6} {'gaps':>5} {'load':>5} | {'tshark s':>9} "
          f"{'native s':>9} {'total s':>8} {'exch/s':>7} {'ratio':>6} | {'cpu: tshark':>11} {'ours: main':>10} "
          f"{'child':>6} {'ratio':>6} {'mode':>6} {'ok':>3}")
    for proto, packets, n, tools, gaps, tt, tn, tot, ct, cch, cpy, load, mode, ok in rows:
        print(f"{proto:6} {packets:>8} {n:>6} {tools:>6} {gaps:>5} {load:>5.1f} | {tt:>9.2f} {tn:>9.2f} {tot:>8.2f} "
              f"{n / tot:>7.0f} {tot / tt:>6.2f} | {ct:>11.2f} {cpy:>10.2f} {cch:>6.2f} {(cpy + cch) / ct:>6.2f} "
              f"{mode:>6} {'yes' if ok else 'NO':>3}")
    print("wall (s): tshark's decrypt-only pass, the native decryptor's decrypt-only pass, decode_capture end to end;")
    print("exch/s and ratio (decode_capture / tshark wall) are the targets: >= 1500 exchanges/s, ratio <= 1.5")
    print("cpu (s): tshark alone; decode_capture's own process and its child (mode 'split': a forked child")
    print("taking chunks of connections from a queue shared with this process; 'worker': the decode worker);")
    print("ratio = ours / tshark's;")
    print("load: 1-minute load average before the run (other jobs on the machine inflate wall times)")
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    return 0 if all(r[-1] for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
