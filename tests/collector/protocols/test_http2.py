"""HTTP/2 parsing of both directions (collector/protocols/http2.py) on streams made by the h2 library."""

from __future__ import annotations

import json

from collector.protocols.connection import ConnectionParser, parse_connection
from collector.protocols.http2 import PREFACE
from tests.collector.protocols.wire import conn_from, conn_from_conv, h2_connection

REQ = [(":method", "POST"), (":path", "/v1/messages"), (":authority", "router.example"), (":scheme", "https"),
       ("content-type", "application/json"), ("x-api-key", "k")]


def _exchanges(n=3, gzip_response=False):
    ex = []
    for i in range(n):
        body = json.dumps({"model": f"m{i}", "text": "Prüfe 数据 🚀" * (i + 1)}).encode()
        ex.append((REQ, body, [(":status", "200"), ("content-type", "text/event-stream")],
                   f"data: {i}\n\n".encode() * (40 * (i + 1))))
    return ex


def test_streams_bodies_byte_exact_with_gzip():
    ex = _exchanges(3)
    out, p = parse_connection(conn_from_conv(h2_connection(ex, gzip_response=True)))
    assert p.protocol == "h2" and p.error is None
    assert [(q.method, q.authority, q.path, q.body, q.stream_id, r.status, r.body) for q, r in out] == [
        ("POST", "router.example", "/v1/messages", e[1], 1 + 2 * i, 200, e[3]) for i, e in enumerate(ex)]
    assert ("x-api-key", "k") in out[0][0].headers and out[0][0].http_version == "HTTP/2"


def test_bytewise_feed_same_result():
    ex = _exchanges(2)
    p = ConnectionParser()
    out = []
    for from_client, data in h2_connection(ex):
        step = 1 if from_client else 3
        for i in range(0, len(data), step):
            out += p.feed(from_client, data[i : i + step], 1.0)
    out += p.close()
    assert [(q.body, r.body) for q, r in out] == [(e[1], e[3]) for e in ex]


def test_truncated_capture_marks_open_streams():
    ex = _exchanges(2)
    conv = h2_connection(ex)
    last = max(i for i, (c, _) in enumerate(conv) if not c)
    conv[last] = (False, conv[last][1][:-30])
    out, _ = parse_connection(conn_from_conv(conv, truncated=True))
    assert out[0][1] is not None and not out[0][1].truncated
    assert out[1][1] is None or out[1][1].truncated


def test_malformed_frames_and_hpack_do_not_raise():
    # a HEADERS frame with garbage HPACK, then a frame claiming padding larger than itself
    bad = PREFACE + b"\x00\x00\x05\x01\x05\x00\x00\x00\x01" + b"\xff\xff\xff\xff\xff"
    out, p = parse_connection(conn_from(bad, b""))
    assert out == [] and p.error and "HPACK" in p.error
    bad2 = PREFACE + b"\x00\x00\x02\x00\x09\x00\x00\x00\x01" + b"\x09\x00"
    out, p = parse_connection(conn_from(bad2, b""))
    assert out == [] and p.error == "bad DATA padding"
    assert parse_connection(conn_from(PREFACE[:10] + b"xx", b""))[0] == []
