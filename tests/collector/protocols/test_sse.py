"""Server-sent events parsing (collector/protocols/sse.py)."""

from __future__ import annotations

from collector.protocols.messages import Chunk
from collector.protocols.sse import parse_sse


def test_line_endings_comments_multiline_and_cut():
    body = b"event: a\ndata: {\"x\":1}\n\n: keep-alive\r\ndata: b\r\ndata:  c\r\n\r\nid: 7\rdata: d\r\rdata: cut"
    ev = parse_sse(body)
    assert [(e.event, e.data, e.id, e.complete) for e in ev] == [
        ("a", '{"x":1}', None, True), ("message", "b\n c", None, True), ("message", "d", "7", True),
        ("message", "cut", "7", False)]


def test_non_ascii_and_timing():
    body = "data: Prüfe 数据 🚀\n\n".encode() * 2
    half = len(body) // 2
    ev = parse_sse(body, [Chunk(1.0, body[:half]), Chunk(2.0, body[half:])])
    assert [e.data for e in ev] == ["Prüfe 数据 🚀"] * 2
    assert [e.ts for e in ev] == [1.0, 2.0]
