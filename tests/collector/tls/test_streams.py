"""Per-connection stream rebuild from tshark segments (collector/tls/streams.py): orientation,
retransmissions, capture gaps, close on FIN/RST, truncation at the end of a capture."""

from __future__ import annotations

from collector.tls.streams import StreamAssembler
from collector.tls.tshark_decrypt import Segment, parse_line
from tests.collector.protocols.wire import h1_request, h1_response

C, S = ("10.0.0.1", 40000), ("10.0.0.2", 443)


def seg(frm, seq, data=b"", *, stream=0, syn=False, ack=True, fin=False, rst=False, hs="", ts=1.0):
    src, dst = (C, S) if frm == "c" else (S, C)
    return Segment(ts, stream, src[0], src[1], dst[0], dst[1], seq, seq + len(data) + (1 if syn or fin else 0),
                   syn, ack, fin, rst, "23" if data else "", hs, None, None, None, data)


def _run(segments):
    got = []
    asm = StreamAssembler(lambda meta, ex: got.extend((meta, q, r) for q, r in ex))
    for s in segments:
        asm.add(s)
    asm.finish()
    return got, asm


def test_retransmission_dropped_and_fin_closes():
    req = h1_request("POST", "/v1/messages", "r", b'{"a":1}')
    resp = h1_response(200, b"hello")
    got, asm = _run([
        seg("s", 0, hs="2"),  # ServerHello first: the other side is the client
        seg("c", 1, req[:10]), seg("c", 1, req[:10]),  # a retransmitted segment
        seg("c", 11, req[10:]),
        seg("s", 1, resp),
        seg("c", 1 + len(req), fin=True), seg("s", 1 + len(resp), fin=True),
    ])
    ((meta, q, r),) = got
    assert (q.path, q.body, r.body, q.truncated, r.truncated) == ("/v1/messages", b'{"a":1}', b"hello", False, False)
    assert (meta.src_ip, meta.src_port, meta.retransmissions, meta.gaps, meta.closed) == ("10.0.0.1", 40000, 1, 0, True)


def test_gap_counted_and_end_of_capture_truncates():
    req = h1_request("GET", "/", "r")
    resp = h1_response(200, b"0123456789")
    got, asm = _run([seg("c", 0, syn=True, ack=False), seg("c", 1, req), seg("s", 1, resp[:20]),
                     seg("s", 1 + 30, resp[30:])])  # bytes 20..30 never captured
    ((meta, q, r),) = got
    assert meta.gaps == 1 and r.truncated


def test_port_reuse_is_two_connections():
    a = h1_request("GET", "/a", "r")
    b = h1_request("GET", "/b", "r")
    ok = h1_response(200, b"x")
    got, _ = _run([seg("c", 0, syn=True, ack=False, stream=0), seg("c", 1, a, stream=0), seg("s", 1, ok, stream=0),
                   seg("c", 1 + len(a), rst=True, stream=0),
                   seg("c", 0, syn=True, ack=False, stream=1), seg("c", 1, b, stream=1), seg("s", 1, ok, stream=1)])
    assert [(m.stream, q.path) for m, q, _ in got] == [(0, "/a"), (1, "/b")]


def test_parse_line_tolerates_junk():
    assert parse_line("") is None and parse_line("a\tb\n") is None
    fields = ["1.5", "3", "10.0.0.1,192.168.0.1", "", "1", "192.168.0.2", "", "2", "5", "9", "0", "1", "0", "0",
              "23,23", "", "", "", "", "6869,zz"]
    s = parse_line("\t".join(fields))
    assert s is not None and s.src == "192.168.0.1" and s.data == b""  # bad hex: no payload, no exception
