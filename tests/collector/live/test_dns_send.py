"""DNS queries from processes with their own resolver (raw UDP/53, no getaddrinfo) get `dns` rows
with the sending pid, from the send-call tracepoints (sendto, connected send, sendmsg, sendmmsg).

The responder is a real UDP DNS server on 127.0.0.1:53 started here; the client is a separate
Python process, so its pid is the one the kernel saw.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time

import pytest

from collector.live.ebpf_rows import parse_dns_query
from collector.store import Store
from tests.collector.live.conftest import needs_ebpf

CLIENT = r'''
import os, socket, struct, sys
def query(name, qtype, tid):
    q = b"".join(bytes([len(p)]) + p.encode() for p in name.split(".")) + b"\0"
    return struct.pack(">HHHHHH", tid, 0x0100, 1, 0, 0, 0) + q + struct.pack(">HH", qtype, 1)
srv = ("127.0.0.1", 53)
a = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); a.settimeout(5)
a.sendto(query("sendto.rw-test.example", 1, 101), srv); a.recv(512)
b = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); b.settimeout(5); b.connect(srv)
b.send(query("connected.rw-test.example", 28, 102)); b.recv(512)
b.sendmsg([query("sendmsg.rw-test.example", 16, 103)]); b.recv(512)
# sendmmsg (glibc's resolver sends A + AAAA this way); Python has no wrapper, so through libc
import ctypes
class IoVec(ctypes.Structure):
    _fields_ = [("base", ctypes.c_void_p), ("len", ctypes.c_size_t)]
class MsgHdr(ctypes.Structure):
    _fields_ = [("name", ctypes.c_void_p), ("namelen", ctypes.c_uint32), ("iov", ctypes.POINTER(IoVec)),
                ("iovlen", ctypes.c_size_t), ("control", ctypes.c_void_p), ("controllen", ctypes.c_size_t),
                ("flags", ctypes.c_int)]
class MMsgHdr(ctypes.Structure):
    _fields_ = [("hdr", MsgHdr), ("len", ctypes.c_uint)]
bufs = [ctypes.create_string_buffer(query("mmsg.rw-test.example", t, tid)) for t, tid in ((1, 104), (28, 105))]
iovs = [IoVec(ctypes.cast(x, ctypes.c_void_p), len(x.raw) - 1) for x in bufs]
msgs = (MMsgHdr * 2)(*[MMsgHdr(MsgHdr(None, 0, ctypes.pointer(v), 1, None, 0, 0), 0) for v in iovs])
assert ctypes.CDLL(None, use_errno=True).sendmmsg(b.fileno(), msgs, 2, 0) == 2
b.recv(512); b.recv(512)
print(os.getpid(), flush=True)
'''


def _responder(sock: socket.socket, stop: threading.Event) -> None:
    """Answers every query with 10.0.0.53 (an A record pointing back at the question by pointer)."""
    sock.settimeout(0.2)
    while not stop.is_set():
        try:
            data, peer = sock.recvfrom(512)
        except TimeoutError:
            continue
        end = data.index(b"\0", 12) + 5
        answer = b"\xc0\x0c" + (1).to_bytes(2, "big") + b"\x00\x01" + (60).to_bytes(4, "big") + b"\x00\x04" + bytes([10, 0, 0, 53])
        sock.sendto(data[:2] + b"\x81\x80" + b"\x00\x01\x00\x01\x00\x00\x00\x00" + data[12:end] + answer, peer)


def test_parse_dns_query_udp_and_tcp_framing():
    msg = bytes.fromhex("abcd01000001000000000000") + b"\x03api\x06openai\x03com\x00" + b"\x00\x41\x00\x01"
    assert parse_dns_query(msg) == ("api.openai.com", 65, 0xABCD)
    assert parse_dns_query(len(msg).to_bytes(2, "big") + msg) == ("api.openai.com", 65, 0xABCD)
    assert parse_dns_query(msg[:2] + b"\x81\x80" + msg[4:]) is None  # a response
    assert parse_dns_query(b"GET / HTTP/1.1\r\n\r\n") is None


@needs_ebpf
def test_own_resolver_queries_are_attributed(live):
    srv = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        srv.bind(("127.0.0.1", 53))
    except OSError as exc:
        pytest.fail(f"127.0.0.1:53 is taken on this machine ({exc}); the test needs it for the responder")
    stop = threading.Event()
    t = threading.Thread(target=_responder, args=(srv, stop), daemon=True)
    t.start()
    try:
        c = live("--no-capture", "--no-ssl", "--interval", "1", "--max-delay", "1")
        out = subprocess.run([sys.executable, "-c", CLIENT], capture_output=True, text=True, timeout=60, check=True)
        pid = int(out.stdout.split()[0])
        time.sleep(1.5)
        assert c.stop() == 0, c.output()
    finally:
        stop.set()
        t.join()
        srv.close()
    with Store.open(str(c.store), read_only=True) as s:
        rows = s.sql("SELECT query, qtype, trans_id, is_response, pid FROM dns WHERE source = 'ebpf-udp53' "
                     "AND query LIKE '%.rw-test.example' ORDER BY trans_id").fetchall()
        exe = s.sql("SELECT exe FROM processes WHERE pid = ?", [pid]).fetchall()
        lost = s.sql("SELECT max(json_extract(detail, '$.kernel_dnsq_lost')::INT) FROM collector_stats").fetchone()[0]
    assert rows == [
        ("sendto.rw-test.example", "A", 101, False, pid),
        ("connected.rw-test.example", "AAAA", 102, False, pid),
        ("sendmsg.rw-test.example", "TXT", 103, False, pid),
        ("mmsg.rw-test.example", "A", 104, False, pid),
        ("mmsg.rw-test.example", "AAAA", 105, False, pid),
    ], rows
    assert exe and "python" in exe[0][0], exe
    assert lost == 0


def test_dns_queries_batch_parses_each_question_once_and_keeps_every_id():
    """RowBuilder.dns_queries on records as the probe emits them (cut after the query's bytes):
    repeated questions with different ids, a TCP-framed query, and a non-DNS payload to port 53."""
    import numpy as np

    from collector.ebpf import events as ev
    from collector.live.ebpf_rows import RowBuilder
    from collector.processes import ProcessTable
    from collector.secrets import Fingerprinter

    def query(name, qtype, tid):
        q = b"".join(bytes([len(p)]) + p.encode() for p in name.split(".")) + b"\0"
        return tid.to_bytes(2, "big") + b"\x01\x00\x00\x01" + bytes(6) + q + qtype.to_bytes(2, "big") + b"\x00\x01"

    payloads = [query("a.example", 1, 7), query("a.example", 1, 8), query("b.example", 28, 7)]
    tcp = query("tcp.example", 1, 9)
    payloads += [len(tcp).to_bytes(2, "big") + tcp, b"GET / HTTP/1.1\r\n\r\n", query("a.example", 1, 10)]
    records = []
    for i, data in enumerate(payloads):
        r = np.zeros(1, ev.DNSQ)
        r["type"], r["len"], r["tgid"], r["ts"], r["start_ns"] = ev.T_DNSQ, len(data), os.getpid(), 10**9 + i, 1
        raw = r.tobytes()
        base = ev.DNSQ.fields["data"][1]
        records.append(raw[:base] + data)  # the probe outputs only the query's bytes
    clock = ev.Clock.now()
    rb = RowBuilder("h", ProcessTable("h", Fingerprinter(b"k" * 32), btime=clock.boot_epoch), clock)
    for _ in range(2):  # the second batch hits the parse cache
        rows = rb.dns_queries(records).select(["query", "qtype", "trans_id", "pid", "source"]).to_pylist()
        assert [(r["query"], r["qtype"], r["trans_id"]) for r in rows] == [
            ("a.example", "A", 7), ("a.example", "A", 8), ("b.example", "AAAA", 7), ("tcp.example", "A", 9),
            ("a.example", "A", 10)]
        assert {r["pid"] for r in rows} == {os.getpid()} and {r["source"] for r in rows} == {"ebpf-udp53"}
