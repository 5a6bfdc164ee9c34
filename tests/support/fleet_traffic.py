"""One fleet "host"'s traffic, run inside its network namespace: `python -m tests.support.fleet_traffic`.

For `--duration` seconds it makes, at a steady rate and each one recorded in a JSON-lines log with its
time: TCP connections to a local echo server (connection i sends 1000 + i bytes, so each one is
recognisable in `flows` by its size), DNS lookups of names unique to the host through getaddrinfo
(answered by a small DNS server of its own on 127.0.0.1:53, which `ip netns exec` makes the
namespace's resolver through /etc/netns/NAME/resolv.conf), and LLM exchanges through the real
`openai` SDK to the router at `--router` (TLS, plaintext seen by the libssl uprobes).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import struct
import threading
import time

ECHO_PORT = 9000
DOMAIN = "fleet.test"


def dns_server(stop: threading.Event) -> None:
    """Answer every A query for *.fleet.test with 127.0.0.1 and everything else with no data."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 53))
    s.settimeout(0.5)
    while not stop.is_set():
        try:
            q, addr = s.recvfrom(512)
        except TimeoutError:
            continue
        if len(q) < 12:
            continue
        tid = q[:2]
        i, labels = 12, []
        while i < len(q) and q[i]:
            labels.append(q[i + 1:i + 1 + q[i]].decode("ascii", "replace"))
            i += 1 + q[i]
        qtype = struct.unpack_from("!H", q, i + 1)[0] if i + 3 <= len(q) else 0
        question = q[12:i + 5]
        name = ".".join(labels).lower()
        answers = b""
        if name.endswith(DOMAIN) and qtype == 1:
            answers = b"\xc0\x0c" + struct.pack("!HHIH", 1, 1, 60, 4) + socket.inet_aton("127.0.0.1")
        flags = 0x8180 if name.endswith(DOMAIN) else 0x8183
        header = tid + struct.pack("!HHHHH", flags, 1, 1 if answers else 0, 0, 0)
        s.sendto(header + question + answers, addr)


def echo_server(stop: threading.Event) -> None:
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", ECHO_PORT))
    srv.listen(128)
    srv.settimeout(0.5)

    def handle(c: socket.socket) -> None:
        with c:
            want = struct.unpack("!I", c.recv(4, socket.MSG_WAITALL))[0]
            got = 4
            while got < want:
                d = c.recv(65536)
                if not d:
                    break
                got += len(d)
            c.sendall(b"k" * 200)

    while not stop.is_set():
        try:
            c, _ = srv.accept()
        except TimeoutError:
            continue
        threading.Thread(target=handle, args=(c,), daemon=True).start()


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--host", required=True, help="this host's id (names and the log)")
    ap.add_argument("--duration", type=float, required=True)
    ap.add_argument("--log", required=True)
    ap.add_argument("--router", required=True, help="https://127.0.0.1:PORT")
    ap.add_argument("--ca", required=True)
    ap.add_argument("--conn-every", type=float, default=0.25)
    ap.add_argument("--dns-every", type=float, default=1.0)
    ap.add_argument("--exchange-every", type=float, default=3.0)
    args = ap.parse_args()
    os.environ["SSL_CERT_FILE"] = args.ca
    stop = threading.Event()
    for fn in (dns_server, echo_server):
        threading.Thread(target=fn, args=(stop,), daemon=True).start()
    time.sleep(0.3)
    from analyzer.demo.agent import Agent

    agent = Agent(args.router, "openai", api_key="sk-routerwatch-fleet-test-0000", http2=False, cafile=args.ca)
    log = open(args.log, "w", buffering=1)

    def emit(**kw) -> None:
        log.write(json.dumps(kw) + "\n")

    lock = threading.Lock()

    def conns() -> None:
        i = 0
        while not stop.is_set():
            n = 1000 + i
            t0 = time.time()
            try:
                with socket.create_connection(("127.0.0.1", ECHO_PORT), timeout=10) as c:
                    c.sendall(struct.pack("!I", n) + b"x" * (n - 4))
                    while c.recv(65536):
                        pass
                with lock:
                    emit(kind="conn", i=i, bytes=n, t0=t0, t1=time.time())
            except OSError as exc:
                with lock:
                    emit(kind="conn-error", i=i, error=str(exc), t0=t0)
            i += 1
            stop.wait(args.conn_every)

    def lookups() -> None:
        i = 0
        while not stop.is_set():
            name = f"c{i}.{args.host}.{DOMAIN}"
            t0 = time.time()
            try:
                socket.getaddrinfo(name, 443, socket.AF_INET, socket.SOCK_STREAM)
                ok = True
            except OSError:
                ok = False
            with lock:
                emit(kind="dns", name=name, ok=ok, t0=t0, t1=time.time())
            i += 1
            stop.wait(args.dns_every)

    def exchanges() -> None:
        i = 0
        while not stop.is_set():
            t0 = time.time()
            try:
                turns = agent.task(f"Task {i} on {args.host}: list the files.\nrun: ls -la", execute=False,
                                   follow_up=False)
                with lock:
                    emit(kind="exchange", i=i, calls=len(turns), t0=t0, t1=time.time(),
                         tool_calls=[c for t in turns for c in t.tool_calls])
            except Exception as exc:  # noqa: BLE001 - logged: the test decides
                with lock:
                    emit(kind="exchange-error", i=i, error=f"{type(exc).__name__}: {exc}"[:300], t0=t0)
            i += 1
            stop.wait(args.exchange_every)

    threads = [threading.Thread(target=f, daemon=True) for f in (conns, lookups, exchanges)]
    for t in threads:
        t.start()
    time.sleep(args.duration)
    stop.set()
    for t in threads:
        t.join(30)
    agent.close()
    emit(kind="done", t=time.time())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
