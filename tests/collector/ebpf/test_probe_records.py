"""The compiled probes against the running kernel: records decode to what /proc and the socket say
(pid, ppid, start time, comm, addresses, ports, byte counts, argv), which proves the BTF offsets
and the numpy layouts right."""

from __future__ import annotations

import contextlib
import ipaddress
import os
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator

import numpy as np
import pytest

from collector.capture.community_id import community_id, community_ids
from collector.ebpf import events as ev
from collector.processes import read_proc
from tests.collector.live.conftest import needs_ebpf


@pytest.fixture(scope="module")
def probes():
    if os.geteuid() != 0:
        pytest.skip("eBPF needs root (CI runs as root)")
    from collector.ebpf.loader import ProbeOptions, Probes

    p = Probes(ProbeOptions(ssl=False))
    yield p
    p.close()


def drain_until(probes, pred, timeout=5.0) -> dict[int, list[bytes]]:
    got: dict[int, list[bytes]] = {}
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for k, v in probes.drain().items():
            got.setdefault(k, []).extend(v)
        if pred(got):
            return got
        time.sleep(0.05)
    return got


@needs_ebpf
def test_conn_record_matches_the_socket_and_proc(probes):
    probes.drain()
    srv = socket.socket(socket.AF_INET6)
    srv.bind(("::1", 0))
    srv.listen()
    port = srv.getsockname()[1]
    c = socket.create_connection(("::1", port))
    a, _ = srv.accept()
    c.sendall(b"x" * 1234)
    assert len(a.recv(1234, socket.MSG_WAITALL)) == 1234
    a.sendall(b"y" * 77)
    c.recv(77, socket.MSG_WAITALL)
    cport = c.getsockname()[1]
    c.close()
    a.close()
    srv.close()

    def mine(got):
        arr = ev.stack(got.get(ev.T_CONN, []), ev.CONN)
        return arr[(arr["dport"] == port) | (arr["sport"] == port)]

    got = drain_until(probes, lambda g: len(mine(g)) >= 2)
    recs = mine(got)
    assert len(recs) == 2
    out = recs[recs["outbound"] == 1][0]
    me = read_proc(os.getpid())
    clock = ev.Clock.now()
    assert out["tgid"] == os.getpid() and out["ppid"] == os.getppid() and out["uid"] == os.getuid()
    assert float(clock.process_start(out["start_ns"])) == pytest.approx(me.start_time, abs=0.011)
    assert out["comm"].split(b"\0")[0].decode() == me.comm[:15]
    assert out["family"] == 6 and out["sport"] == cport and out["established"] == 1
    assert (out["app_sent"], out["app_recv"]) == (1234, 77)
    inb = recs[recs["outbound"] == 0][0]
    assert (inb["app_sent"], inb["app_recv"], inb["owned"]) == (77, 1234, 1)
    # addresses and the vectorised Community ID
    src = ev.format_addrs(recs["saddr"][:1], np.array([6]))[0]
    assert src == "::1"
    cid = community_ids(6, ev.addr_rows(recs["saddr"][:1]), recs["sport"][:1], ev.addr_rows(recs["daddr"][:1]),
                        recs["dport"][:1], np.array([True]))[0]
    assert cid == community_id("tcp", "::1", int(recs["sport"][0]), "::1", int(recs["dport"][0]))
    ts = clock.epoch_us(np.array([out["ts_first"], out["ts_end"]]))
    assert abs(ts[1] / 1e6 - time.time()) < 30 and ts[0] <= ts[1]


def live_entries(probes, port: int) -> list[tuple[int, np.void]]:
    """(sk, sock_state) of the open sockets with `port` at either end, read through Probes.socket."""
    out = []
    for sk in probes.sockets():
        raw = probes.socket(sk)
        if raw is None:
            continue
        st = np.frombuffer(raw, dtype=ev.SOCK_STATE)[0]
        if port in (int(st["sport"]), int(st["dport"])):
            out.append((sk, st))
    return out


@needs_ebpf
def test_conn_record_ipv4_tuple_and_cookie(probes):
    """tcp_destroy_sock is a raw tracepoint: the IPv4 tuple comes from BTF offsets. A socket tracked
    from its connect/accept is named by the id its `socks` entry got then (readable while it is open:
    collector.live.plaintext names an open connection's exchanges by it), distinct per socket, even
    when the kernel's cookie is generated later (here the client reads SO_COOKIE after connecting)."""
    probes.drain()
    srv = socket.socket()
    srv.bind(("127.0.0.3", 0))
    srv.listen()
    port = srv.getsockname()[1]
    c = socket.create_connection(("127.0.0.3", port), source_address=("127.0.0.2", 0))
    a, _ = srv.accept()
    c.sendall(b"x")
    a.recv(1)
    kernel_cookie = int.from_bytes(c.getsockopt(socket.SOL_SOCKET, 57, 8), "little")  # SO_COOKIE
    cport = c.getsockname()[1]
    live = {int(st["outbound"]): (sk, st) for sk, st in live_entries(probes, port)}
    assert set(live) == {0, 1}
    assert probes.socket(0x1234) is None  # not a tracked socket
    c.close()
    a.close()
    srv.close()

    def mine(got):
        arr = ev.stack(got.get(ev.T_CONN, []), ev.CONN)
        return arr[(arr["dport"] == port) | (arr["sport"] == port)]

    recs = mine(drain_until(probes, lambda g: len(mine(g)) >= 2))
    assert len(recs) == 2
    out, inb = recs[recs["outbound"] == 1][0], recs[recs["outbound"] == 0][0]
    assert (out["family"], out["sport"], out["dport"]) == (4, cport, port)
    assert (inb["family"], inb["sport"], inb["dport"]) == (4, port, cport)
    assert bytes(out["saddr"])[:4] == bytes(inb["daddr"])[:4] == bytes([127, 0, 0, 2])
    assert bytes(out["daddr"])[:4] == bytes([127, 0, 0, 3])
    assert kernel_cookie and int(out["cookie"]) != kernel_cookie
    assert int(out["cookie"]) >> 63 == 1 and int(inb["cookie"]) >> 63 == 1 and out["cookie"] != inb["cookie"]
    # what the entries said while the sockets were open is what their destroy records say
    for rec, (sk, st) in ((out, live[1]), (inb, live[0])):
        assert int(rec["sk"]) == sk and int(rec["cookie"]) == int(st["cookie"])
        assert (int(st["sport"]), int(st["dport"]), bytes(st["saddr"]), bytes(st["daddr"])) == (
            int(rec["sport"]), int(rec["dport"]), bytes(rec["saddr"]), bytes(rec["daddr"]))
        assert int(st["ts_first"]) == int(rec["ts_first"]) and int(st["family"]) == 2


@needs_ebpf
def test_untracked_socket_keeps_the_kernel_cookie():
    """A socket opened before the probes loaded has no entry: its record carries the kernel's
    cookie when one was generated (as the classic tracepoint would report it)."""
    from collector.ebpf.loader import ProbeOptions, Probes

    srv = socket.socket()
    srv.bind(("127.0.0.4", 0))
    srv.listen()
    port = srv.getsockname()[1]
    c = socket.create_connection(("127.0.0.4", port))
    a, _ = srv.accept()
    kernel_cookie = int.from_bytes(c.getsockopt(socket.SOL_SOCKET, 57, 8), "little")  # SO_COOKIE
    p = Probes(ProbeOptions(ssl=False, dns=False, dns_send=False))
    try:
        assert live_entries(p, port) == []
        c.close()
        a.close()
        srv.close()

        def mine(got):
            arr = ev.stack(got.get(ev.T_CONN, []), ev.CONN)
            return arr[(arr["dport"] == port) & (arr["sport"] != port)]

        recs = mine(drain_until(p, lambda g: len(mine(g)) >= 1))
        assert kernel_cookie and [int(x) for x in recs["cookie"]] == [kernel_cookie]
    finally:
        p.close()


@needs_ebpf
def test_exec_record_carries_filename_argv_and_parent(probes):
    probes.drain()
    p = subprocess.run(["/bin/sh", "-c", "exit 0", "marker-arg-ü"], check=True)
    assert p.returncode == 0

    def mine(got):
        arr = ev.stack(got.get(ev.T_EXEC, []), ev.EXEC)
        return [r for r in arr if b"marker-arg" in bytes(r["args"])]

    recs = mine(drain_until(probes, lambda g: bool(mine(g))))
    assert recs
    r = recs[0]
    assert r["filename"].split(b"\0")[0] == b"/bin/sh"
    argv = bytes(r["args"])[: int(r["args_len"])].rstrip(b"\0").split(b"\0")
    assert argv == [b"/bin/sh", b"-c", b"exit 0", "marker-arg-ü".encode()]
    assert r["ppid"] == os.getpid()


@needs_ebpf
def test_getaddrinfo_becomes_a_dns_record(probes):
    probes.drain()
    socket.getaddrinfo("localhost", 80)

    def mine(got):
        arr = ev.stack(got.get(ev.T_DNS, []), ev.DNS)
        return arr[(arr["tgid"] == os.getpid()) & (arr["name"] == b"localhost")]

    recs = mine(drain_until(probes, lambda g: len(mine(g)) > 0))
    assert len(recs) >= 1 and recs[0]["ret"] == 0 and recs[0]["naddrs"] >= 1
    addrs = {ipaddress.ip_address(bytes(a["addr"])[: 4 if a["family"] == 4 else 16])
             for a in recs[0]["addrs"][: recs[0]["naddrs"]]}
    assert ipaddress.ip_address("127.0.0.1") in addrs or ipaddress.ip_address("::1") in addrs


@needs_ebpf
@pytest.mark.parametrize("aborter", ["responder", "originator"])
def test_resets_sent_and_received_give_one_zeek_state_to_both_ends(probes, aborter):
    """A real loopback connection closed with SO_LINGER 0 (an abortive close sends RST): the aborting
    socket's record says it sent the reset (tcp:tcp_send_reset, a raw tracepoint), the
    peer's that it received one (tcp:tcp_receive_reset), and both rows get the same conn_state (RSTR / RSTO) and history."""
    import struct

    from collector.live.ebpf_rows import conn_state

    probes.drain()
    assert {("raw_tracepoint", t) for t in ("tcp_send_reset", "tcp_receive_reset", "tcp_destroy_sock")} <= set(probes.links)
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen()
    port = srv.getsockname()[1]
    c = socket.create_connection(("127.0.0.1", port))
    cport = c.getsockname()[1]
    a, _ = srv.accept()
    c.sendall(b"hello")
    a.recv(5)
    abort, other = (a, c) if aborter == "responder" else (c, a)
    abort.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    abort.close()
    with pytest.raises(ConnectionResetError):
        other.recv(1)
    other.close()
    srv.close()

    def mine(got):
        arr = ev.stack(got.get(ev.T_CONN, []), ev.CONN)
        return arr[(arr["dport"] == port) | (arr["sport"] == port)]

    recs = mine(drain_until(probes, lambda g: len(mine(g)) >= 2))
    assert len(recs) == 2
    out, inb = recs[recs["outbound"] == 1][0], recs[recs["outbound"] == 0][0]
    sender, receiver = (inb, out) if aborter == "responder" else (out, inb)
    assert sender["rst"] & 2 and sender["rst"] & 4 and not sender["rst"] & 1
    assert receiver["rst"] & 1 and not receiver["rst"] & 2
    # the bytes and the tuple of a connection closed by a reset (the record built from the entry)
    assert (int(out["app_sent"]), int(out["app_recv"]), int(inb["app_sent"]), int(inb["app_recv"])) == (5, 0, 0, 5)
    assert (int(out["sport"]), int(out["dport"]), int(inb["sport"]), int(inb["dport"])) == (cport, port, port, cport)
    assert bytes(out["daddr"])[:4] == bytes(inb["saddr"])[:4] == bytes([127, 0, 0, 1])
    state, history = conn_state(recs["outbound"] == 1, recs["established"] == 1, recs["rst"],
                                np.array([True, True]), np.array([False, False]))
    want = ("RSTR", "ShDr") if aborter == "responder" else ("RSTO", "ShDR")
    assert list(zip(state.tolist(), history.tolist(), strict=True)) == [want, want]


@needs_ebpf
def test_ring_reader_keeps_every_record_across_wraps(probes):
    """collector.ebpf.ringbuf reads the ring buffer's mapping directly: 3 x 50k DNS-query records
    (~20 MB through the 64 MiB ring: the consumer position wraps every few runs of this module),
    each drained whole and in order. The wrap itself: test_ring_reader_joins_a_record_that_wraps."""
    probes.drain()
    sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)  # bound, never read: no ICMP per datagram
    sink.bind(("127.0.0.99", 53))
    tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    lost0 = probes.counters()["dnsq_lost"]
    name = b"\x04ring\x04test\x00\x00\x01\x00\x01"
    for batch in range(3):
        for i in range(50_000):
            tx.sendto(i.to_bytes(2, "big") + b"\x01\x00\x00\x01" + bytes(6) + name, ("127.0.0.99", 53))
        arr = ev.stack(probes.drain().get(ev.T_DNSQ, []), ev.DNSQ)
        ids = arr.view(ev.DNSQ_ID)["id"][(arr["tgid"] == os.getpid()) & (arr["len"] == 12 + len(name))]
        assert ids.tolist() == list(range(50_000)), batch
    sink.close()
    tx.close()
    assert probes.counters()["dnsq_lost"] == lost0


@needs_ebpf
def test_refused_connect_keeps_its_local_port(probes):
    """connect() enters SYN_SENT before it picks the local port, and a refused socket is disconnected
    before it is destroyed: the record must still carry the client's port (and so the right
    Community ID), blocking and non-blocking alike."""
    probes.drain()
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))  # bound, never listening: connects are refused
    port = closed.getsockname()[1]
    blocking = socket.socket()
    assert blocking.connect_ex(("127.0.0.1", port)) != 0
    ports = {blocking.getsockname()[1]}
    blocking.close()
    nb = socket.socket()
    nb.setblocking(False)
    nb.connect_ex(("127.0.0.1", port))
    ports.add(nb.getsockname()[1])
    time.sleep(0.2)
    nb.close()
    closed.close()

    def mine(got):
        arr = ev.stack(got.get(ev.T_CONN, []), ev.CONN)
        return arr[arr["dport"] == port]

    recs = mine(drain_until(probes, lambda g: len(mine(g)) >= 2))
    assert {int(r["sport"]) for r in recs} == ports
    assert all(r["rst"] & 1 and r["outbound"] == 1 and r["established"] == 0 for r in recs)


def _query(tid: int, name: bytes = b"\x07example\x03com\x00") -> bytes:
    return tid.to_bytes(2, "big") + b"\x01\x00\x00\x01" + bytes(6) + name + b"\x00\x01\x00\x01"


def _my_queries(got) -> list[tuple[bytes, int, bytes]]:
    """(payload, dport, first 4 bytes of daddr) of this process's DNS-query records."""
    arr = ev.stack(got.get(ev.T_DNSQ, []), ev.DNSQ)
    arr = arr[arr["tgid"] == os.getpid()]
    return [(bytes(r["data"])[: int(r["len"])], int(r["dport"]), bytes(r["daddr"])[:4]) for r in arr]


@needs_ebpf
def test_dns_queries_are_read_at_the_socket_send_without_syscall_tracepoints(probes):
    """The queries are read at sock:sock_send_length (the syscall's registers give the call and its
    user arguments), so no syscalls:* tracepoint is attached: any one of them sends every syscall on
    the host through the tracing entry path. Each way of sending is read once, with its own bytes:
    sendto with an address, write() and send() on a connected socket, a query on a TCP connection to
    port 53 (length-prefixed), and a UDP datagram to another port is not a query."""
    assert not any(tp.startswith("syscalls:") for _kind, tp in probes.links)
    probes.drain()
    sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    ip = f"127.0.{os.getpid() % 200 + 20}.98"  # a run's TIME_WAIT on port 53 must not block the next
    sink.bind((ip, 53))
    tcp_srv = socket.socket()
    tcp_srv.bind((ip, 53))
    tcp_srv.listen()
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    u.sendto(_query(201), (ip, 53))
    u.sendto(_query(202), (ip, 5353))  # not port 53: nothing
    c = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    c.connect((ip, 53))
    os.write(c.fileno(), _query(203))
    c.send(_query(204))
    t = socket.create_connection((ip, 53))
    a, _ = tcp_srv.accept()
    tq = _query(205)
    t.sendall(len(tq).to_bytes(2, "big") + tq)
    assert len(a.recv(len(tq) + 2, socket.MSG_WAITALL)) == len(tq) + 2
    for x in (u, c, t, a, tcp_srv, sink):
        x.close()
    want = [(_query(201), 53, socket.inet_aton(ip)), (_query(203), 53, socket.inet_aton(ip)),
            (_query(204), 53, socket.inet_aton(ip)),
            (len(tq).to_bytes(2, "big") + tq, 53, socket.inet_aton(ip))]
    got = drain_until(probes, lambda g: len(_my_queries(g)) >= len(want))
    assert _my_queries(got) == want


@needs_ebpf
def test_no_dns_send_compiles_out_the_query_reader(probes):
    """`collect --no-dns-send`: a UDP query to port 53 gives no query record, and connection records
    still come."""
    from collector.ebpf.loader import ProbeOptions, Probes

    p = Probes(ProbeOptions(ssl=False, dns=False, dns_send=False))
    try:
        assert "no DNS send-call probes" in p.attached[0]
        p.drain()
        u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        u.sendto(_query(0x1234), ("127.0.0.1", 53))
        u.close()
        srv = socket.socket()
        srv.bind(("127.0.0.1", 0))
        srv.listen()
        c = socket.create_connection(srv.getsockname())
        a, _ = srv.accept()
        c.close()
        a.close()
        srv.close()
        got = drain_until(p, lambda g: ev.T_CONN in g)
        assert ev.T_CONN in got and ev.T_DNSQ not in got
    finally:
        p.close()


SSL_SIZES = (1, 128, 129, 300, 1024, 2048, 2049, 4096, 4097, 70_000)


def _tls_contexts(tmp_path):
    """A server context with a fresh self-signed key and a client context that trusts anything."""
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                    "-keyout", str(tmp_path / "k"), "-out", str(tmp_path / "c"), "-days", "1", "-subj", "/CN=x"],
                   check=True, capture_output=True)
    sctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    sctx.load_cert_chain(tmp_path / "c", tmp_path / "k")
    cctx = ssl.create_default_context()
    cctx.check_hostname, cctx.verify_mode = False, ssl.CERT_NONE
    return sctx, cctx


@contextlib.contextmanager
def _tls_pair(tmp_path, addr: str, serve) -> Iterator[tuple[ssl.SSLSocket, int, int]]:  # noqa: ANN001
    """(client TLS socket, client port, server port) of a loopback connection to `addr`, whose
    server side runs `serve(its TLS socket)` in a thread (joined, and the listener closed, after)."""
    sctx, cctx = _tls_contexts(tmp_path)
    lsock = socket.create_server((addr, 0))
    port = lsock.getsockname()[1]

    def run() -> None:
        c, _ = lsock.accept()
        with sctx.wrap_socket(c, server_side=True) as t:
            serve(t)

    th = threading.Thread(target=run)
    th.start()
    try:
        with cctx.wrap_socket(socket.create_connection((addr, port))) as t:
            yield t, t.getsockname()[1], port
    finally:
        th.join(10)
        lsock.close()


@needs_ebpf
def test_ssl_records_of_small_calls_equal_the_chunked_path(tmp_path):
    """A call of at most one 4 KiB chunk is read straight into a ring record of a size class (one
    copy), a larger one through the per-CPU scratch, chunk by chunk: both give the same header
    fields (call total, chunk offset and length, direction, socket, pid) and exactly the bytes
    written, at every class boundary; the socket is the one the destroy record names, and a socket
    tracked from its connect says CLOSE as its last state."""
    from collector.ebpf.loader import ProbeOptions, Probes

    payloads = [bytes((i * 7 + n) & 0xFF for i in range(n)) for n in SSL_SIZES]
    p = Probes(ProbeOptions(dns=False, dns_send=False, discover_ssl=False, go_tls=False))
    try:
        def serve(t: ssl.SSLSocket) -> None:
            want = sum(SSL_SIZES)
            while want > 0:
                want -= len(t.recv(65536))
            t.sendall(b"ok")

        p.drain()
        with _tls_pair(tmp_path, "127.0.0.5", serve) as (t, cport, port):
            for data in payloads:
                t.sendall(data)  # one SSL_write_ex each (blocking socket, no partial writes)
            assert t.recv(2) == b"ok"

        def conn(got):
            arr = ev.stack(got.get(ev.T_CONN, []), ev.CONN)
            return arr[(arr["sport"] == cport) & (arr["dport"] == port)]

        got = drain_until(p, lambda g: len(conn(g)) >= 1)
    finally:
        p.close()
    rec = conn(got)[0]
    assert rec["last_state"] == 7 and rec["established"] == 1  # TCP_CLOSE
    sk = int(rec["sk"])
    heads = [(np.frombuffer(r[: ev.SSL_HEADER.itemsize], dtype=ev.SSL_HEADER)[0], r) for r in got.get(ev.T_SSL, [])]
    mine = [(h, r) for h, r in heads if int(h["sk"]) == sk and h["dir"] == 0]
    calls: list[tuple[int, bytes]] = []
    for h, r in mine:
        assert h["tgid"] == os.getpid() and h["truncated"] == 0 and int(h["ssl"]) != 0
        assert int(h["len"]) == min(4096, int(h["total"]) - int(h["offset"]))
        if int(h["offset"]) == 0:
            calls.append((int(h["total"]), b""))
        total, data = calls[-1]
        assert int(h["total"]) == total and int(h["offset"]) == len(data)
        calls[-1] = (total, data + r[ev.SSL_HEADER.itemsize : ev.SSL_HEADER.itemsize + int(h["len"])])
    assert [t for t, _ in calls] == list(SSL_SIZES)
    assert [d for _, d in calls] == payloads
    read = [r[ev.SSL_HEADER.itemsize : ev.SSL_HEADER.itemsize + int(h["len"])]
            for h, r in heads if int(h["sk"]) == sk and h["dir"] == 1]
    assert read == [b"ok"]


@needs_ebpf
def test_ssl_reads_without_socket_io_name_the_socket_and_want_read_calls_leave_no_record(tmp_path):
    """A read served from OpenSSL's buffer (one 3,000-byte record read 1,000 bytes at a time: the
    second and third calls make no socket I/O) names the socket the SSL* was last seen on, and a
    non-blocking read that finds nothing ("want read", ~0.9 of the ~4.9 SSL calls a request of
    bench/tls_probe_cost.py's client) leaves no record and does not disturb the next one. Any
    cheaper binding of an SSL* to its socket (docs/performance.md) must keep both."""
    from collector.ebpf.loader import ProbeOptions, Probes

    payload = bytes((i * 13) & 0xFF for i in range(3000))
    p = Probes(ProbeOptions(dns=False, dns_send=False, discover_ssl=False, go_tls=False))
    try:
        parts: list[bytes] = []
        sent = threading.Event()

        def serve(t: ssl.SSLSocket) -> None:
            while sum(map(len, parts)) < len(payload):
                parts.append(t.recv(1000))
            sent.wait(10)
            t.sendall(b"ok")

        p.drain()
        with _tls_pair(tmp_path, "127.0.0.6", serve) as (t, cport, port):
            t.setblocking(False)
            with pytest.raises(ssl.SSLWantReadError):
                t.recv(10)
            t.setblocking(True)
            t.sendall(payload)  # one record
            sent.set()
            assert t.recv(2) == b"ok"

        def conns(got):
            arr = ev.stack(got.get(ev.T_CONN, []), ev.CONN)
            return arr[((arr["sport"] == cport) & (arr["dport"] == port)) | ((arr["sport"] == port) & (arr["dport"] == cport))]

        got = drain_until(p, lambda g: len(conns(g)) >= 2)
    finally:
        p.close()
    assert parts == [payload[:1000], payload[1000:2000], payload[2000:]]
    recs = conns(got)
    client = int(recs[recs["sport"] == cport][0]["sk"])
    server = int(recs[recs["sport"] == port][0]["sk"])
    heads = [(np.frombuffer(r[: ev.SSL_HEADER.itemsize], dtype=ev.SSL_HEADER)[0], r) for r in got.get(ev.T_SSL, [])]
    heads = [(h, r) for h, r in heads if int(h["tgid"]) == os.getpid()]

    def calls(sk: int, direction: int) -> list[bytes]:
        return [r[ev.SSL_HEADER.itemsize : ev.SSL_HEADER.itemsize + int(h["len"])]
                for h, r in heads if int(h["sk"]) == sk and h["dir"] == direction]

    assert calls(server, 1) == parts  # the second and third read made no socket I/O
    assert calls(client, 0) == [payload]
    assert calls(client, 1) == [b"ok"]  # the "want read" call made none
    assert all(int(h["sk"]) in (client, server) for h, _ in heads)
