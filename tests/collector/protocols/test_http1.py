"""HTTP/1.x parsing from hand-built byte streams (collector/protocols/http1.py, connection.py)."""

from __future__ import annotations

import gzip
import hashlib
import zlib

import brotli
import zstandard

from collector.protocols.connection import ConnectionParser, parse_connection
from tests.collector.protocols.wire import conn_from, h1_request, h1_response


def feed_bytewise(client: bytes, server: bytes):
    """Every byte in its own chunk: framing must not depend on where the network split the stream."""
    p = ConnectionParser()
    out = []
    for i in range(len(client)):
        out += p.feed(True, client[i : i + 1], 1.0 + i * 1e-6)
    for i in range(len(server)):
        out += p.feed(False, server[i : i + 1], 2.0 + i * 1e-6)
    return out + p.close()


def test_content_length_and_chunked_pipelined():
    client = h1_request("POST", "/v1/messages", "r.example", b'{"a":1}') + h1_request("GET", "/x?y=1", "r.example")
    server = h1_response(200, b"hello world", chunked=True, pieces=3) + h1_response(404, b"nope")
    for out in (parse_connection(conn_from(client, server))[0], feed_bytewise(client, server)):
        assert [(q.method, q.authority, q.path, q.body, r.status, r.body) for q, r in out] == [
            ("POST", "r.example", "/v1/messages", b'{"a":1}', 200, b"hello world"),
            ("GET", "r.example", "/x?y=1", b"", 404, b"nope"),
        ]
        assert not any(q.truncated or r.truncated for q, r in out)


def test_head_ends_at_its_first_blank_line_whatever_the_line_endings():
    """A head whose last header line ends in LF and whose blank line is CRLF ends there, whole or
    byte by byte (it used to end at a later CRLF CRLF when the whole stream was in the buffer)."""
    events = b"data: {}\n\n" * 3
    server = (b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\nContent-Length: %d\n\r\n" % len(events)
              + events + h1_response(404, b"x\r\n\r\ny"))
    client = h1_request("GET", "/a", "h") + h1_request("GET", "/b", "h")
    for out in (parse_connection(conn_from(client, server))[0], feed_bytewise(client, server)):
        assert [(r.status, r.headers, r.body) for _, r in out] == [
            (200, [("Content-Type", "text/event-stream"), ("Content-Length", str(len(events)))], events),
            (404, [("Content-Length", "6")], b"x\r\n\r\ny")]


def test_head_1xx_204_and_until_close():
    client = (h1_request("HEAD", "/a", "h") + h1_request("POST", "/b", "h", b"x", headers=[("Expect", "100-continue")])
              + h1_request("GET", "/c", "h") + h1_request("GET", "/d", "h"))
    server = (b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n"  # HEAD: no body despite the length
              b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok"
              b"HTTP/1.1 204 No Content\r\n\r\n"
              b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil the end")
    out, _ = parse_connection(conn_from(client, server))
    assert [(q.path, r.status, r.body) for q, r in out] == [
        ("/a", 200, b""), ("/b", 201, b"ok"), ("/c", 204, b""), ("/d", 200, b"until the end")]


def test_content_encodings_and_digests():
    body = "Grüße, 世界 🚀".encode() * 50
    for name, enc in (("gzip", gzip.compress), ("deflate", zlib.compress), ("br", brotli.compress),
                      ("zstd", zstandard.ZstdCompressor().compress),
                      ("deflate", lambda b: zlib.compress(b)[2:-4])):  # raw deflate, as some servers send
        server = h1_response(200, enc(body), headers=[("Content-Encoding", name)], chunked=True, pieces=5)
        (q, r), = parse_connection(conn_from(h1_request("GET", "/", "h"), server))[0]
        assert r.body == body and r.body_sha256 == hashlib.sha256(body).hexdigest() and r.error is None, name
    # gzip then br (applied in order, undone in reverse)
    server = h1_response(200, brotli.compress(gzip.compress(body)), headers=[("Content-Encoding", "gzip, br")])
    (q, r), = parse_connection(conn_from(h1_request("GET", "/", "h"), server))[0]
    assert r.body == body


def test_body_cap_keeps_prefix_and_digest_of_whole():
    body = b"a" * 100_000
    (q, r), = parse_connection(conn_from(h1_request("GET", "/", "h"), h1_response(200, body)), keep=1000)[0]
    assert r.body == b"a" * 1000 and r.body_capped and r.body_size == 100_000
    assert r.body_sha256 == hashlib.sha256(body).hexdigest()


def test_truncated_mid_body_and_unanswered_request():
    client = h1_request("POST", "/v1/chat/completions", "h", b"{}") + h1_request("GET", "/2", "h")
    server = h1_response(200, b"0123456789")[:-4]
    out, _ = parse_connection(conn_from(client, server, truncated=True))
    assert [(q.path, r.body if r else None, (r.truncated if r else q.truncated)) for q, r in out] == [
        ("/v1/chat/completions", b"012345", True), ("/2", None, True)]


def test_broken_chunking_and_garbage_do_not_raise():
    server = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\nZZZ\r\nmore"
    (q, r), = parse_connection(conn_from(h1_request("GET", "/", "h"), server))[0]
    assert r.truncated and r.error == "invalid chunk size" and r.body == b"hello"
    out, p = parse_connection(conn_from(b"\x16\x03\x01garbage", b"\x00" * 100))
    assert out == [] and p.protocol == "other"
    bad = h1_response(200, b"x" * 10, headers=[("Content-Encoding", "gzip")])
    (q, r), = parse_connection(conn_from(h1_request("GET", "/", "h"), bad))[0]
    assert r.error and "content decoding failed" in r.error


def test_huge_bodies_bounded_memory():
    """A 256 MiB chunked response and a 64 MiB gzip bomb cost a digest and the kept prefix, not their size."""
    import tracemalloc

    from collector.protocols.http1 import Http1Parser

    piece = bytes(range(256)) * 4096  # 1 MiB
    sha = hashlib.sha256()
    bomb = gzip.compress(b"\0" * (64 << 20))
    tracemalloc.start()
    p = Http1Parser("response", keep=1 << 20, request_methods=["GET"])
    p.feed(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", 0.0)
    for _ in range(256):
        p.feed(b"100000\r\n" + piece + b"\r\n", 0.0)
        sha.update(piece)
    (r,) = p.feed(b"0\r\n\r\n", 0.0)
    p2 = Http1Parser("response", keep=1 << 20, request_methods=["GET"])
    (r2,) = p2.feed(b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: %d\r\n\r\n" % len(bomb) + bomb, 0.0)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert r.body_size == 256 << 20 and r.body_capped and len(r.body) == 1 << 20
    assert r.body_sha256 == sha.hexdigest()
    assert r2.body_size == 64 << 20 and len(r2.body) == 1 << 20
    assert peak < 24 << 20, peak


def test_decoders_hand_on_bounded_pieces():
    from collector.protocols.encoding import PIECE, BodyDecoder

    raw = b"\0" * (24 << 20)
    for name, enc in (("br", brotli.compress(raw, quality=1)), ("zstd", zstandard.ZstdCompressor().compress(raw)),
                      ("gzip", gzip.compress(raw, 1)), ("gzip, zstd", zstandard.ZstdCompressor().compress(gzip.compress(raw, 1)))):
        sizes: list[int] = []
        d = BodyDecoder(name, sink=lambda b, sizes=sizes: sizes.append(len(b)))
        for i in range(0, len(enc), 4096):
            d.feed(enc[i : i + 4096])
        d.flush()
        assert d.error is None and sum(sizes) == len(raw) and max(sizes) <= 2 * PIECE + 65536, name
