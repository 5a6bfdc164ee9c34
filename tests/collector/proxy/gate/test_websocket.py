"""The WebSocket gate (the Responses API over wss://) on raw frames: responses on one socket judged one
by one, honest messages passed as the router compressed them, an injected call replaced, and every
message after a dropped compressed one sent uncompressed (the agent's inflater never saw the dropped one)."""

from __future__ import annotations

import json
import zlib

from analyzer.demo import formats
from collector.proxy.gate.http1 import Http1Gate
from collector.proxy.gate.websocket import frame
from tests.collector.proxy.gate.test_body import CTX, INJECTED, JUDGE, answer
from tests.collector.proxy.gate.test_http1 import run


def _ws_upgrade(extensions: str) -> tuple[bytes, bytes]:
    req = (b"GET /v1/responses HTTP/1.1\r\nhost: r\r\nupgrade: websocket\r\nconnection: Upgrade\r\n"
           b"sec-websocket-key: x\r\nsec-websocket-version: 13\r\n\r\n")
    resp = (f"HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: Upgrade\r\n"
            f"sec-websocket-accept: y\r\nsec-websocket-extensions: {extensions}\r\n\r\n").encode()
    return req, resp


def _ws_messages(command: str) -> list[bytes]:
    return [formats.dumps(d).encode() for _e, d in formats.responses_events(answer("openai.responses", command))]


def _deflated_frames(messages: list[bytes]) -> list[bytes]:
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    out = []
    for m in messages:
        data = c.compress(m) + c.flush(zlib.Z_SYNC_FLUSH)
        out.append(bytes([0xC1]) + frame(data[:-4])[1:])  # FIN + RSV1 + text
    return out


def _read_frames(data: bytes) -> list[tuple[int, bool, bytes]]:
    out, pos = [], 0
    while pos < len(data):
        b0, n = data[pos], data[pos + 1] & 0x7F
        pos += 2
        if n == 126:
            n, pos = int.from_bytes(data[pos : pos + 2], "big"), pos + 2
        elif n == 127:
            n, pos = int.from_bytes(data[pos : pos + 8], "big"), pos + 8
        out.append((b0 & 0x0F, bool(b0 & 0x40), data[pos : pos + n]))
        pos += n
    return out


def test_websocket_responses_verbatim_when_honest_blocked_when_injected() -> None:
    req, up = _ws_upgrade("permessage-deflate")
    close = bytes([0x88, 2]) + (1000).to_bytes(2, "big")
    # two responses on one socket: an honest one, then an injected one, then another honest one
    frames = (_deflated_frames(_ws_messages("ls") + _ws_messages(INJECTED) + _ws_messages("pwd")))
    server = up + b"".join(frames) + close
    g = Http1Gate(JUDGE, CTX)
    out = run(g, req, server, step=50)
    assert out.startswith(up)
    got = _read_frames(out[len(up) :])
    n = len(_ws_messages("ls"))
    assert [f for f in got[:n]] == [(1, True, fr[2:] if fr[1] < 126 else fr[4:]) for fr in frames[:n]]  # verbatim
    assert got[-1][0] == 8  # the close frame kept its place at the end
    inflater = zlib.decompressobj(-15)
    texts = []
    for _op, rsv1, payload in got[:-1]:
        texts.append(inflater.decompress(payload + b"\x00\x00\xff\xff") if rsv1 else payload)
    assert all(isinstance(json.loads(t), dict) for t in texts)  # one event per message
    joined = b"\n".join(texts)
    assert b"x.sh" not in joined and b"routerwatch blocked a tool call" in joined
    assert joined.count(b"\"response.completed\"") == 3 and b"pwd" in joined  # the last response arrived intact
    first_gen = next(i for i, t in enumerate(texts) if b"routerwatch blocked" in t)
    assert not any(rsv1 for _op, rsv1, _p in got[first_gen:-1])  # after a dropped compressed message: uncompressed
    assert any(rsv1 for _op, rsv1, _p in got[n:first_gen])  # before it: as the router compressed them
    actions = [j.decision.verdict.action for j in g.take_judged()]
    assert sorted(actions) == ["allow", "allow", "block"]
