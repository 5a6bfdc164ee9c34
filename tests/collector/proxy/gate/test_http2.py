"""The HTTP/2 gate between a real h2 client and a real h2 server (the h2 library's state machines on
both sides): honest streams pass frame for frame, a blocked call is replaced within the stream's
flow-control bytes (the server is credited exactly what it sent), Content-Length bodies keep their
length (identity and gzip), header blocks keep their order, and other streams are not held up."""

from __future__ import annotations

import json

import h2.config
import h2.connection
import h2.events
import h2.exceptions
import pytest

from analyzer.demo import formats
from collector.proxy.gate import judge_pending_sync
from collector.proxy.gate.http2 import H2Gate, data_frames
from tests.collector.proxy.gate.test_body import CTX, INJECTED, JUDGE, answer, decoded, json_body

PATHS = {"anthropic.messages": "/v1/messages", "openai.chat": "/v1/chat/completions", "openai.responses": "/v1/responses"}


class Pair:
    """An h2 client and server joined through an H2Gate (server -> client passes the gate)."""

    def __init__(self) -> None:
        self.client = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
        self.server = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False))
        self.gate = H2Gate(JUDGE, CTX)
        self.client.initiate_connection()
        self.server.initiate_connection()
        self.events: list = []
        self.raw_to_client = b""
        self.server_fc = 0  # flow-controlled bytes the server sent (DATA frame lengths)
        self.flush()

    def flush(self) -> None:
        for _ in range(20):
            c = self.client.data_to_send()
            if c:
                self.gate.client_data(c)
                self.server.receive_data(c)
            s = self.server.data_to_send()
            if s:
                self.server_fc += _data_lengths(s)
                self.gate.server_data(s)
                judge_pending_sync(self.gate)
            out = self.gate.take_out()
            if out:
                self.raw_to_client += out
                for ev in self.client.receive_data(out):
                    self.events.append(ev)
                    if isinstance(ev, h2.events.DataReceived):
                        self.client.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
            if not (c or s or out):
                return

    def request(self, path: str, body: bytes = b'{"model":"m","stream":true}') -> int:
        sid = self.client.get_next_available_stream_id()
        self.client.send_headers(sid, [(":method", "POST"), (":path", path), (":scheme", "https"),
                                       (":authority", "r.example"), ("content-type", "application/json")])
        self.client.send_data(sid, body, end_stream=True)
        self.flush()
        return sid

    def respond(self, sid: int, headers: list[tuple[str, str]], pieces: list[bytes], pad: int = 0) -> None:
        self.server.send_headers(sid, [(":status", "200"), *headers])
        for i, p in enumerate(pieces):
            self.server.send_data(sid, p, end_stream=i == len(pieces) - 1, pad_length=pad or None)
            self.flush()

    @property
    def client_fc(self) -> int:
        return sum(e.flow_controlled_length for e in self.events if isinstance(e, h2.events.DataReceived))

    def body(self, sid: int) -> bytes:
        return b"".join(e.data for e in self.events if isinstance(e, h2.events.DataReceived) and e.stream_id == sid)

    def ended(self, sid: int) -> bool:
        return any(isinstance(e, h2.events.StreamEnded) and e.stream_id == sid for e in self.events)


def _data_lengths(raw: bytes) -> int:
    total, pos = 0, 0
    while pos + 9 <= len(raw):
        ln = int.from_bytes(raw[pos : pos + 3], "big")
        if raw[pos + 3] == 0:
            total += ln
        pos += 9 + ln
    return total


def sse_pieces(api: str, command: str) -> list[bytes]:
    return [formats.sse(e, d) for e, d in formats.events_for(api, answer(api, command), include_usage=True)]


@pytest.mark.parametrize("api", list(PATHS))
def test_stream_honest_passes_blocked_is_replaced_within_flow_control(api: str) -> None:
    p = Pair()
    honest = p.request(PATHS[api])
    p.respond(honest, [("content-type", "text/event-stream")], sse_pieces(api, "ls -la"), pad=3)
    bad = p.request(PATHS[api])
    p.respond(bad, [("content-type", "text/event-stream")], sse_pieces(api, INJECTED))
    assert p.body(honest) == b"".join(sse_pieces(api, "ls -la")) and p.ended(honest)
    out = p.body(bad)
    assert p.ended(bad) and b"x.sh" not in out
    res = decoded(api, out, True)
    assert res.tool_calls == [] and "routerwatch blocked a tool call" in res.text
    # the client is charged (and credits back) exactly the flow-control bytes the server sent
    assert p.client_fc == p.server_fc > 0
    assert [j.decision.verdict.action for j in p.gate.take_judged()] == ["allow", "block"]


@pytest.mark.parametrize("encoding", [None, "gzip", "deflate", "br", "zstd"])
def test_content_length_body_keeps_its_length(encoding: str | None) -> None:
    p = Pair()
    sid = p.request(PATHS["openai.chat"], b'{"model":"gpt-5"}')
    raw = json_body("openai.chat", answer("openai.chat", INJECTED))
    from collector.proxy.gate.encoding import encode_all

    body = encode_all(raw, encoding)
    headers = [("content-type", "application/json"), ("content-length", str(len(body)))]
    if encoding:
        headers.append(("content-encoding", encoding))
    p.respond(sid, headers, [body[: len(body) // 2], body[len(body) // 2 :]])
    got = p.body(sid)
    assert p.ended(sid) and len(got) == len(body)  # what the Content-Length header promised
    from collector.protocols.encoding import decode_all

    plain, err = decode_all(got, encoding)
    assert err is None
    msg = json.loads(plain)["choices"][0]["message"]
    assert "tool_calls" not in msg and "routerwatch blocked" in msg["content"]


def test_other_streams_are_not_held_behind_a_judged_one() -> None:
    """A gated stream waiting for its verdict does not hold up another stream's frames."""
    p = Pair()
    s1 = p.request(PATHS["anthropic.messages"])
    s2 = p.request("/v1/models", b"")
    pieces = sse_pieces("anthropic.messages", INJECTED)
    stop = next(i for i, x in enumerate(pieces) if b"content_block_stop" in x and b'"index":1' in x)
    p.server.send_headers(s1, [(":status", "200"), ("content-type", "text/event-stream")])
    for x in pieces[:stop]:  # the tool call is open: its events are held
        p.server.send_data(s1, x)
    p.server.send_headers(s2, [(":status", "200"), ("content-type", "application/json")])
    p.server.send_data(s2, b'{"data":[]}', end_stream=True)
    p.flush()
    assert p.body(s2) == b'{"data":[]}' and p.ended(s2)
    assert b"tool_use" not in p.body(s1) and b'"text":"that."' in p.body(s1)  # text released, the call held
    for x in pieces[stop:]:
        p.server.send_data(s1, x, end_stream=x is pieces[-1])
    p.flush()
    assert p.ended(s1) and b"routerwatch blocked" in p.body(s1)


def test_gzip_stream_blocked_ends_with_padding_only() -> None:
    import zlib

    p = Pair()
    sid = p.request(PATHS["anthropic.messages"])
    c = zlib.compressobj(9, zlib.DEFLATED, 31)
    pieces = [c.compress(e) + c.flush(zlib.Z_SYNC_FLUSH) for e in sse_pieces("anthropic.messages", INJECTED)]
    pieces.append(c.flush())
    p.respond(sid, [("content-type", "text/event-stream"), ("content-encoding", "gzip")], pieces)
    assert p.ended(sid) and p.client_fc == p.server_fc
    got = zlib.decompressobj(31).decompress(p.body(sid))
    assert b"x.sh" not in got and b"tool_use" not in got  # the call never arrived; the answer is cut short
    assert p.gate.error and "content-encoded" in p.gate.error


def test_data_frames_spend_exactly_the_budget() -> None:
    for n, budget in ((0, 0), (0, 1), (10, 10), (10, 11), (10, 300), (40000, 40000), (40000, 41000), (5, 5000)):
        raw = data_frames(7, b"x" * n, budget, end_stream=True)
        total, pos, payload, frames = 0, 0, b"", 0
        while pos < len(raw):
            ln = int.from_bytes(raw[pos : pos + 3], "big")
            flags, f = raw[pos + 4], raw[pos + 9 : pos + 9 + ln]
            total += ln
            frames += 1
            assert ln <= 16384
            payload += f[1 : len(f) - f[0]] if flags & 0x8 else f
            pos += 9 + ln
        assert total == budget and payload == b"x" * n and raw[pos - 9 - ln + 4] & 0x1


def test_agent_reset_while_a_call_is_held() -> None:
    """The agent gives up on a stream whose call is being held: nothing of the call reaches it, the
    connection's flow control still balances, and the next stream works."""
    p = Pair()
    sid = p.request(PATHS["anthropic.messages"])
    pieces = sse_pieces("anthropic.messages", INJECTED)
    start = next(i for i, x in enumerate(pieces) if b'"type":"tool_use"' in x)
    p.server.send_headers(sid, [(":status", "200"), ("content-type", "text/event-stream")])
    for x in pieces[: start + 2]:
        p.server.send_data(sid, x)
    p.flush()
    p.client.reset_stream(sid)
    p.flush()
    for x in pieces[start + 2 :]:
        try:
            p.server.send_data(sid, x, end_stream=x is pieces[-1])
        except h2.exceptions.StreamClosedError:
            break
    p.flush()
    assert b"tool_use" not in p.body(sid) and b"x.sh" not in p.raw_to_client
    nxt = p.request(PATHS["openai.chat"])
    p.respond(nxt, [("content-type", "text/event-stream")], sse_pieces("openai.chat", "ls"))
    assert p.ended(nxt) and p.body(nxt) == b"".join(sse_pieces("openai.chat", "ls"))
    # every byte the router sent is accounted to the agent (the reset stream's as padding, with the next frames)
    assert _data_lengths(p.raw_to_client) == p.server_fc and b"x.sh" not in p.raw_to_client
