"""Event-stream blocks with their byte spans: every byte in exactly one block, however the bytes are
cut, with LF, CRLF and CR line ends; a CR at the end of the input waits for its LF; a block without
its blank line only at the end of the body."""

from __future__ import annotations

import pytest

from collector.proxy.gate.sse import SseSplitter, parse_block

BODY = (b'event: message_start\ndata: {"a":1}\n\n: keep-alive\n\n'
        b'data: line one\ndata: line two\n\n\nevent: x\r\ndata: {"b":2}\r\n\r\ndata: cr\r\r')


@pytest.mark.parametrize("step", [1, 2, 3, 7, len(BODY)])
def test_blocks_cover_the_body_exactly_however_it_is_cut(step: int) -> None:
    sp = SseSplitter()
    blocks = []
    for i in range(0, len(BODY), step):
        blocks += sp.feed(BODY[i : i + step])
    last, rest = sp.finish()  # the body's final CR is a line end once the body has ended
    blocks += last
    assert rest is None
    assert b"".join(b.raw for b in blocks) == BODY
    assert [(b.start, b.end) for b in blocks] == [(b.start, b.start + len(b.raw)) for b in blocks]
    assert all(a.end == b.start for a, b in zip(blocks, blocks[1:], strict=False))
    events = [(b.event, b.data) for b in blocks if b.data is not None]
    assert events == [("message_start", '{"a":1}'), ("message", "line one\nline two"), ("x", '{"b":2}'),
                      ("message", "cr")]


def test_a_cr_at_the_end_waits_and_a_cut_stream_leaves_a_rest() -> None:
    sp = SseSplitter()
    assert sp.feed(b"data: a\r\n\r") == []  # the final CR may be half of CRLF
    (blk,) = sp.feed(b"\n")
    assert blk.raw == b"data: a\r\n\r\n"
    assert sp.feed(b"data: cut sho") == []
    last, rest = sp.finish()
    assert last == []
    assert rest is not None and rest.data == "cut sho" and rest.start == blk.end
    assert parse_block(b": only a comment\n\n") == ("message", None)
